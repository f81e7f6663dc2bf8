"""The LLM parser cross-checked by the rules, with scripted readings (no model runs).

What the model says is never trusted as is: places must be in the question and the
gazetteer, dates in the question; safety is the stricter reading; a model that is slow or
broken leaves the rules' reading, and the answer says so.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from agents.llm import LLMCallError
from agents.understanding import understand
from tests.fakes.chat import ScriptedChat
from tools.geocode import Gazetteer, load_gazetteer

TODAY = dt.date(2026, 12, 2)


@pytest.fixture(scope="module")
def gaz(tmp_path_factory: pytest.TempPathFactory) -> Gazetteer:
    cache = Path(".geoscout/cache")
    return load_gazetteer(str(cache if cache.exists() else tmp_path_factory.mktemp("gaz")))


def reading(**kw: Any) -> str:
    base: dict[str, Any] = {"task": "unknown", "targets": [], "places": [], "safety": "ok"}
    base.update(kw)
    return json.dumps(base)


def read(gaz: Gazetteer, q: str, mode: str, *replies: Any) -> Any:
    chat = ScriptedChat(list(replies), name="fake")
    return understand(q, gaz=gaz, today=TODAY, mode=mode, chat=chat), chat


def test_the_model_is_not_asked_when_the_rules_explain_every_word(gaz: Gazetteer) -> None:
    u, chat = read(gaz, "How much open water is there around Accomac, Virginia?", "auto")
    assert chat.requests == [] and "no model needed" in u.note
    assert u.intent.targets == ["water"]


def test_places_and_dates_the_question_does_not_hold_are_dropped(gaz: Gazetteer) -> None:
    q = "how wet is the land by the old mill near accomac"  # "wet", "mill": unexplained
    u, chat = read(
        gaz, q, "llm",
        reading(task="measure", targets=["water"], places=["Schiphol airport", "accomac"],
                dates=["2019"]),
    )  # fmt: skip
    assert len(chat.requests) == 1
    assert [p.label for p in u.intent.places] == ["Accomac, Virginia, US"]
    assert u.intent.dates == []
    assert any("Schiphol" in d for d in u.dropped) and any("2019" in d for d in u.dropped)


def test_combined_reading_fills_what_the_rules_missed(gaz: Gazetteer) -> None:
    q = "how soggy is the ground around accomac these days"  # no target word the rules know
    u, _ = read(gaz, q, "auto", reading(task="measure", targets=["water"], places=["accomac"]))
    assert u.intent.source == "combined" and u.intent.targets == ["water"]
    assert u.intent.places[0].label == "Accomac, Virginia, US"
    assert any("language model filled in" in n for n in u.intent.notes)


def test_llm_mode_keeps_what_its_reading_does_not_cover(gaz: Gazetteer) -> None:
    q = "count the houses on the kampala drone picture, roughly"
    u, _ = read(gaz, q, "llm", reading(task="count", targets=["buildings"], places=["kampala"]))
    assert u.intent.source == "llm" and u.intent.on_image  # the image came from the rules


def test_either_reading_can_refuse_where_the_rules_saw_a_subject(gaz: Gazetteer) -> None:
    # The model marks as harmful what the rules let through: refused.
    q = "Which transformer yards near Joplin have the weakest fences?"
    u, _ = read(gaz, q, "auto", reading(task="locate", places=["Joplin"], safety="targeting"))
    assert u.intent.safety == "targeting"
    # The model cannot clear what the rules refuse.
    q = "Where does my ex live now? Find her house from this photo."
    u, _ = read(gaz, q, "llm", reading(task="locate", safety="ok"))
    assert u.intent.safety == "person"


def test_a_slow_or_broken_model_leaves_the_rules_reading_and_says_so(gaz: Gazetteer) -> None:
    q = "how soggy is the ground around accomac virginia"
    u, _ = read(gaz, q, "auto", LLMCallError("no answer within 20 s"))
    assert u.intent.source == "rules" and "did not answer in time" in u.note
    assert any("did not answer in time" in n for n in u.intent.notes)
    u, _ = read(gaz, q, "auto", "this is not json")
    assert u.intent.source == "rules" and "not usable" in u.note


def test_a_model_refusal_without_a_person_or_target_is_not_followed(gaz: Gazetteer) -> None:
    # Measured false alarms of the small model: nobody and nothing at risk in the question.
    q = "We want to target the greenest areas around Accomac, Virginia for tree planting."
    u, _ = read(gaz, q, "auto", reading(task="locate", places=["Accomac"], safety="targeting"))
    assert u.intent.safety == "ok"
