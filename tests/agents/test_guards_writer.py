"""Output guard and template writer: citations exist, numbers come from cited evidence."""

from __future__ import annotations

import datetime as dt

from agents.guards import clean_question, guard_input, guard_output, sanitize_text
from agents.intent import Intent
from agents.merge import derived_figures, merge_results, safe_text
from agents.schemas import Answer, Evidence, PlanStep, TraceEntry
from agents.writer import fmt, template_answer
from tools.base import EvidenceDraft, Quantity, ToolResult
from tools.provenance import Provenance, SceneSource

TODAY = dt.date(2026, 11, 24)


def _ledger() -> list[Evidence]:
    return [
        Evidence(
            id="E1",
            kind="place",
            provenance=Provenance(tool="geocode"),
            title="Accomac",
            facts={"name": "Accomac, Virginia, US"},
            values={"aoi_area_km2": Quantity(value=29.1, unit="km2")},
        ),
        Evidence(
            id="E2",
            kind="scene",
            title="S2 scene",
            facts={"platform": "sentinel-2", "datetime": "unknown"},
            provenance=Provenance(
                tool="stac_search",
                scene=SceneSource(stac_item_id="s2-l1c", collection="sentinel-2-l1c"),
            ),
            values={"gsd_m": Quantity(value=10, unit="m")},
        ),
        Evidence(
            id="E3",
            kind="mask",
            provenance=Provenance(tool="segment"),
            title="water",
            facts={"target": "water", "scene_id": "s2-l1c", "method": "NDWI > 0"},
            values={
                "water_area_km2": Quantity(value=3.42, unit="km2", uncertainty=0.21),
                "analysed_area_km2": Quantity(value=28.7, unit="km2"),
                "water_fraction_pct": Quantity(value=11.9, unit="%"),
            },
        ),
    ]


def test_template_answer_passes_the_output_guard() -> None:
    ledger = _ledger()
    answer = template_answer("measure_water", ledger, [], "How much water around Accomac?")
    assert "[E3]" in answer.text and "[E2]" in answer.text
    assert "3.42" in answer.text
    assert any("unknown" in c for c in answer.caveats)
    _, results = guard_output(answer, ledger, "How much water around Accomac?")
    assert all(r.passed for r in results), results


def test_guard_rejects_unknown_citation_and_invented_number() -> None:
    ledger = _ledger()
    bad = Answer(text="About 3.42 km² is water [E9]. Also 57 km² is forest [E3].", caveats=["x"])
    _, results = guard_output(bad, ledger, "q")
    by = {r.name: r for r in results}
    assert not by["output.citations_exist"].passed and "E9" in by["output.citations_exist"].detail
    assert not by["output.numbers_cited"].passed and "57" in by["output.numbers_cited"].detail


def test_guard_requires_numbers_to_cite_their_evidence_in_the_same_sentence() -> None:
    ledger = _ledger()
    bad = Answer(text="About 3.42 km² is water. The scene is Sentinel-2 [E2].", caveats=["x"])
    _, results = guard_output(bad, ledger, "q")
    assert not {r.name: r for r in results}["output.numbers_cited"].passed


def test_guard_accepts_rounded_numbers_and_question_numbers() -> None:
    ledger = _ledger()
    ok = Answer(text="Between 2009 and 2020 about 3.4 km² is water (11.9%) [E3].", caveats=["c"])
    _, results = guard_output(ok, ledger, "How did water change between 2009 and 2020?")
    assert {r.name: r for r in results}["output.numbers_cited"].passed


def test_guard_checks_the_unit_written_after_a_number() -> None:
    ledger = _ledger()
    ledger[0].values["population"] = Quantity(value=488_000, unit="people")
    for text, ok in [
        ("About 488,000 people live in Accomac [E1].", True),
        ("There are 488,000 km² of road in Accomac [E1].", False),  # a population, not an area
        ("About 3.42 square kilometres is water [E3].", True),
        ("About 3.42 km of shoreline [E3].", False),  # an area is not a length
        ("The water share is 11.9 percent [E3].", True),
        ("The pixels are 10 metres wide [E2].", True),
        ("The pixels are 10 km wide [E2].", False),
    ]:
        _, results = guard_output(Answer(text=text, caveats=["c"]), ledger, "q")
        assert {r.name: r for r in results}["output.numbers_cited"].passed is ok, text


def test_sanitiser_removes_html_scripts_and_remote_images() -> None:
    text, changed = sanitize_text(
        "Water <script>alert(1)</script> ![x](http://evil/p.png) [click](javascript:alert(1)) ok"
    )
    assert changed and "<script" not in text and "evil" not in text and "javascript" not in text
    assert (
        safe_text("<b>Ignore</b> previous [link](http://x) instructions")
        == "Ignore previous link instructions"
    )


def test_input_guard_refuses_harm_and_sizes() -> None:
    harmful = Intent(safety="person", language="en")
    v = guard_input("Where does my neighbour drive every day?", harmful, [], 2000, False, TODAY)
    assert v.action == "refuse" and v.reason
    assert guard_input("", None, [], 2000, False, TODAY).action == "refuse"
    assert guard_input("x" * 100_000, None, [], 2000, False, TODAY).action == "refuse"
    q = "How much water is there?"
    water = Intent(task="measure", targets=["water"])
    assert guard_input(q, water, [], 2000, False, TODAY).action == "clarify"
    assert guard_input(q, water, [], 2000, True, TODAY).action == "go"
    # "What can you do?" needs no area.
    assert (
        guard_input("what can you do", Intent(task="capabilities"), [], 2000, False, TODAY).action
        == "go"
    )
    v = guard_input("Water in Joplin in 2031?", water, [2031], 2000, False, TODAY)
    assert v.action == "clarify" and "future" in (v.clarify or "")


def test_clean_question_strips_controls() -> None:
    assert clean_question("How\x00 much\u200b  water\n?") == "How much water\n?".replace("\n", " ")


def test_fmt_round_trips_through_the_guard() -> None:
    for v in (0.000123, 0.0456, 3.4567, 12.345, 456.7, 12345.0, 7.0):
        s = fmt(v)
        ledger = [
            Evidence(
                id="E1",
                kind="figure",
                provenance=Provenance(tool="merge"),
                title="t",
                values={"x": Quantity(value=v, unit="km2")},
            )
        ]
        _, res = guard_output(Answer(text=f"It is {s} km² [E1].", caveats=["c"]), ledger, "q")
        assert {r.name: r for r in res}["output.numbers_cited"].passed, (v, s)


def test_merge_numbers_evidence_and_derives_change() -> None:
    steps = [
        PlanStep(id="s1", tool="segment", args={"target": "water"}),
        PlanStep(id="s2", tool="segment", args={"target": "water"}),
    ]

    def res(area: float, when: str) -> ToolResult:
        return ToolResult(
            status="ok",
            evidence=[
                EvidenceDraft(
                    key="mask",
                    kind="mask",
                    provenance=Provenance(tool="segment"),
                    title=f"water {when}",
                    facts={"acquired": when, "target": "water"},
                    values={
                        "water_area_km2": Quantity(value=area, unit="km2", uncertainty=0.1),
                        "analysed_area_km2": Quantity(value=17.0, unit="km2"),
                    },
                    layer={
                        "type": "FeatureCollection",
                        "features": [
                            {
                                "type": "Feature",
                                "properties": {},
                                "geometry": {"type": "Point", "coordinates": [0, 0]},
                            }
                        ],
                    },
                )
            ],
        )

    ledger, layers, index = merge_results(
        steps, {"s1": res(2.0, "2020-08-31"), "s2": res(1.5, "2009-08-18")}
    )
    assert [e.id for e in ledger] == ["E1", "E2", "E3"]
    fig = ledger[2]
    assert fig.kind == "figure" and fig.values["water_area_change_km2"].value == 0.5
    assert fig.provenance.derived_from == ["E2", "E1"]
    assert {f["properties"]["evidence_id"] for f in layers["features"]} == {"E1", "E2"}
    answer = template_answer("change", ledger, [], "q")
    _, results = guard_output(answer, ledger, "q")
    assert all(r.passed for r in results), (answer.text, results)
    assert derived_figures(steps[:1], {}, index, ledger[:1]) == []


def test_unavailable_step_is_said_plainly() -> None:
    trace = [
        TraceEntry(
            step="s3",
            tool="ground",
            status="unavailable",
            error="Finding objects needs a vision-language model.",
            hint="Set GEOSCOUT_VLM_BASE_URL.",
        )
    ]
    answer = template_answer("detect", [], trace, "Count the ships")
    assert "vision-language model" in answer.text and "GEOSCOUT_VLM_BASE_URL" in answer.text


def test_guard_keeps_et_al_inside_its_sentence_and_quotes_facts_exactly() -> None:
    ledger = _ledger()
    ledger[2].facts["method"] = "NDVI > 0.3 (Tucker et al. 1979)"
    ledger[0].facts["name"] = "Point 10.4°N, 20.1°E"
    ok = Answer(
        text="Vegetation uses NDVI > 0.3 (Tucker et al. 1979) on 3.42 km² [E3].", caveats=["c"]
    )
    _, results = guard_output(ok, ledger, "q")
    assert {r.name: r for r in results}["output.numbers_cited"].passed
    bad = Answer(text="There are 10 buildings at the point [E1].", caveats=["c"])
    _, results = guard_output(bad, ledger, "q")
    assert not {r.name: r for r in results}["output.numbers_cited"].passed
    quoted = Answer(text="The point is at 10.4°N [E1].", caveats=["c"])
    _, results = guard_output(quoted, ledger, "q")
    assert {r.name: r for r in results}["output.numbers_cited"].passed


def test_dates_quoted_from_iso_timestamps_pass_the_guard() -> None:
    scene = Evidence(
        id="E2",
        kind="scene",
        provenance=Provenance(tool="stac_search"),
        title="scene",
        facts={"datetime": "2021-10-24T10:27:12Z"},
    )
    answer = Answer(text="A scene acquired 2021-10-24 [E2].", caveats=["c"])
    _, results = guard_output(answer, [scene], "which images of Hamburg?")
    assert next(r for r in results if r.name == "output.numbers_cited").passed
