"""Conversations survive a page reload: turns stored beside the LangGraph checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.conversations import (
    ConversationStore,
    new_conversation_id,
    turn_thread_id,
    valid_conversation_id,
)
from agents.schemas import AnswerBundle


def test_turns_are_kept_in_order_across_store_instances(tmp_path: Path) -> None:
    db = tmp_path / "threads.sqlite"
    conv = new_conversation_id()
    store = ConversationStore(db)
    assert store.next_turn(conv) == 1
    for turn, q in enumerate(("first?", "second?"), 1):
        store.add(conv, turn, AnswerBundle(question=q, thread_id=turn_thread_id(conv, turn)))
    store.close()

    again = ConversationStore(db)
    turns = again.turns(conv)
    assert [(t, b.question, b.thread_id) for t, b in turns] == [
        (1, "first?", f"{conv}-1"),
        (2, "second?", f"{conv}-2"),
    ]
    assert again.next_turn(conv) == 3
    assert again.turns(new_conversation_id()) == []


def test_conversation_ids_from_the_url_are_checked() -> None:
    assert valid_conversation_id(new_conversation_id())
    for bad in (None, "", "x", "../../etc", "a" * 40, "DROP TABLE"):
        assert not valid_conversation_id(bad)


def test_unreadable_turns_are_skipped(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "t.sqlite")
    store.add("abcdef12", 1, AnswerBundle(question="ok"))
    with store._conn:
        store._conn.execute("INSERT INTO geoscout_turns VALUES ('abcdef12', 2, 't', 'now', '{bad')")
    assert [b.question for _, b in store.turns("abcdef12")] == ["ok"]


def _mapped(question: str, n: int = 300) -> AnswerBundle:
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [-99.15 + i * 1e-4, 47.02]},
            "properties": {"evidence_id": "E1", "kind": "mask", "label": "Water"},
        }
        for i in range(n)
    ]
    return AnswerBundle(
        question=question, layers={"type": "FeatureCollection", "features": features}
    )


def test_map_layers_are_stored_once_and_read_back_unchanged(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "t.sqlite")
    bundle = _mapped("water?")
    store.add("abcdef12", 1, bundle)
    store.add("abcdef12", 2, bundle.model_copy(update={"question": "again?"}))
    rows = store._conn.execute("SELECT bundle FROM geoscout_turns").fetchall()
    assert all(len(text) < 2_000 for (text,) in rows)  # the layers are a reference
    (payloads,) = store._conn.execute("SELECT count(*) FROM geoscout_payloads").fetchone()
    assert payloads == 1
    store.close()
    turns = ConversationStore(tmp_path / "t.sqlite").turns("abcdef12")
    assert [b.question for _, b in turns] == ["water?", "again?"]
    assert turns[0][1] == bundle


def test_turns_stored_by_earlier_versions_still_open(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "t.sqlite")
    old = _mapped("old?")
    with store._conn:  # layers inline in the bundle JSON, as earlier versions stored them
        store._conn.execute(
            "INSERT INTO geoscout_turns VALUES ('abcdef12', 1, 't', 'now', ?)",
            (old.model_dump_json(),),
        )
    store.add("abcdef12", 2, _mapped("new?"))
    assert [b for _, b in store.turns("abcdef12")] == [old, _mapped("new?")]


def test_a_turn_whose_layers_are_lost_is_skipped_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ConversationStore(tmp_path / "t.sqlite")
    store.add("abcdef12", 1, _mapped("lost?"))
    store.add("abcdef12", 2, AnswerBundle(question="kept?"))
    with store._conn:
        store._conn.execute("DELETE FROM geoscout_payloads")
    with caplog.at_level("WARNING"):
        assert [b.question for _, b in store.turns("abcdef12")] == ["kept?"]
    assert "turn 1 of conversation abcdef12 cannot be read back" in caplog.text
    assert "map layers are missing" in caplog.text
    assert len(store.unreadable) == 1 and store.unreadable[0].startswith("turn 1: ")
