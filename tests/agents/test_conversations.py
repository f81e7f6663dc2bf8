"""Conversations survive a page reload: turns stored beside the LangGraph checkpoints."""

from __future__ import annotations

from pathlib import Path

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
