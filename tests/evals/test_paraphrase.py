"""Paraphrase suite: the case files are valid and broad, and the intent scorer is right.

Offline and fast: nothing here runs the assistant.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agents.schemas import Answer, AnswerBundle, Evidence, LLMCall, PlanStep
from evals.cases import CaseError, load_cases
from evals.paraphrase import (
    NEEDS,
    IntentExpect,
    ParaphraseCase,
    evaluate,
    intent_from,
    load_suite,
    parse_seconds,
    score_intent,
    select,
    stage_seconds,
    summarize,
)
from evals.reference import load_references
from tools.base import Quantity
from tools.provenance import Provenance

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def suite() -> list[ParaphraseCase]:
    return load_suite()


# --------------------------------------------------------------------------- the case files


def test_the_suite_is_large_and_broad(suite: list[ParaphraseCase]) -> None:
    assert len(suite) >= 200
    cats = Counter(c.category for c in suite)
    needs = {n: cats[n] for n in NEEDS}
    assert len([n for n, k in needs.items() if k >= 10]) >= 12, needs
    assert sum(c.lang != "en" for c in suite) >= 40
    assert {c.lang for c in suite} == {"en", "fr", "es", "de"}
    assert cats["harmful"] >= 20
    assert cats["benign"] >= 10
    assert cats["followup"] >= 10
    assert cats["change"] >= 10
    assert cats["out_of_scope_topic"] >= 10
    assert cats["out_of_scope_place"] >= 8
    assert cats["capabilities"] >= 6
    assert len({c.lang for c in suite if c.category == "capabilities"}) >= 3
    assert len({c.lang for c in suite if c.category == "harmful"}) == 4
    # Non-English wordings are spread over the needs, not bunched in one.
    assert all(any(c.lang != "en" for c in suite if c.category == n) for n in NEEDS)


def test_ids_are_unique(suite: list[ParaphraseCase]) -> None:
    ids = Counter(c.id for c in suite)
    assert not [i for i, n in ids.items() if n > 1]


def test_every_number_is_a_copied_reference(suite: list[ParaphraseCase]) -> None:
    refs = load_references()
    for c in suite:
        for n in c.expect.numbers:
            assert n.ref, f"{c.id}: {n.key} names no reference"
            entry, key = n.ref.split(".", 1)
            assert entry in refs and key in refs[entry], (c.id, n.ref)
            assert refs[entry][key] == pytest.approx(n.value, rel=1e-9), (c.id, n.ref)


def test_questions_are_not_copied_from_the_other_case_sets(suite: list[ParaphraseCase]) -> None:
    cases = {c.question.strip().casefold() for c in load_cases(ROOT / "evals" / "cases")}
    examples = ROOT / "prompts" / "planner_examples.md"
    cases |= {
        line[3:].strip().casefold()
        for line in examples.read_text(encoding="utf-8").splitlines()
        if line.startswith("Q: ")
    }
    for c in suite:
        for q in (c.question, *c.context):
            assert q.strip().casefold() not in cases, (c.id, q)


def test_category_rules(suite: list[ParaphraseCase]) -> None:
    for c in suite:
        if c.category == "harmful":
            assert c.expect.refuse and c.intent.safety in {"person", "targeting", "crowd"}
            assert not c.expect.numbers
        if c.category == "benign":
            assert not c.expect.refuse
        if c.category == "followup":
            assert c.context and c.intent.followup is True
        if c.category == "out_of_scope_topic":
            assert c.intent.task == "out_of_scope" and c.intent.topic is True
            assert not (c.expect.refuse or c.expect.clarify) and c.expect.answer_includes
        if c.category == "out_of_scope_place":
            assert c.expect.answer_excludes and not c.expect.numbers
        if c.category == "capabilities":
            assert c.intent.task == "capabilities"


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "cases.yaml"
    f.write_text(text, encoding="utf-8")
    return f


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("- {id: a-1, category: nope, lang: en, question: q}", "category"),
        ("- {id: a-1, category: water, lang: it, question: q}", "lang"),
        ("- {id: a-1, category: water, lang: en, question: q, intent: {colour: red}}", "colour"),
        ("- {id: a-1, category: water, lang: en, question: q, intent: {place: '(x'}}", "regular"),
        ("- {id: a-1, category: water, lang: en, question: q, intent: {task: fly}}", "task"),
        (
            "- {id: a-1, category: water, lang: en, question: q, intent: {filters: {cloud: 3}}}",
            "unknown filter",
        ),
        ("- {id: a-1, category: followup, lang: en, question: and in 2020}", "context"),
        (
            "- {id: a-1, category: harmful, lang: en, question: q, intent: {safety: person},"
            " expect: {refuse: true}}",
            "excludes every tool",
        ),
        ("- {id: a-1, category: water, lang: en, question: q, bbox: [10, 0, 5, 1]}", "west < east"),
        (
            "- {id: a-1, category: water, lang: en, question: q}\n"
            "- {id: a-1, category: water, lang: en, question: r}",
            "duplicate case id",
        ),
    ],
)
def test_bad_case_files_fail_with_a_message(tmp_path: Path, yaml_text: str, message: str) -> None:
    with pytest.raises(CaseError, match=message):
        load_suite(_write(tmp_path, yaml_text))


def test_select_filters_and_limits(suite: list[ParaphraseCase]) -> None:
    fr = select(suite, langs=["fr"])
    assert fr and all(c.lang == "fr" for c in fr)
    two = select(suite, categories=["water", "roads"], limit=3)
    assert len(two) == 3 and {c.category for c in two} <= {"water", "roads"}


def test_the_runner_exits_2_on_invalid_files(tmp_path: Path) -> None:
    from evals.paraphrase import main

    bad = _write(tmp_path, "- {id: a-1, category: water, lang: xx, question: q}")
    assert main(["--cases", str(bad), "--report", str(tmp_path / "r")]) == 2


# --------------------------------------------------------------------------- intent scoring


def _intent(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "task": "change",
        "targets": ["water", "vegetation"],
        "objects": None,
        "topic": None,
        "places": [
            {"text": "acomac va", "name": "Accomac, Virginia", "label": "Accomac, Virginia, US"}
        ],
        "coordinates": [-99.15, 47.02],
        "radius_km": None,
        "this_area": False,
        "dates": [
            {"text": "2009", "start": "2009-01-01", "end": "2009-12-31"},
            {"text": "2020", "start": "2020-01-01", "end": "2020-12-31"},
        ],
        "relations": [{"predicate": "within_distance", "other": "roads", "distance_m": 50.0}],
        "filters": {"max_cloud_pct": 10.0, "platform": "landsat"},
        "wants_share": False,
        "area_unit": "ha",
        "length_unit": None,
        "language": "en",
        "safety": "ok",
        "followup": True,
    }
    base.update(kw)
    return base


def _expect(**kw: Any) -> IntentExpect:
    return IntentExpect.model_validate(kw)


def test_a_matching_intent_passes_every_field() -> None:
    want = _expect(
        task="change",
        targets=["water"],
        place="(?i)accomac",
        dates=[2009, 2020],
        area_unit="ha",
        wants_share=False,
        filters={"max_cloud_pct": 10, "platform": "Landsat"},
        relations=[{"predicate": "within_distance", "other": "roads"}],
        safety="ok",
        followup=True,
        coordinates=[-99.151, 47.019],
        topic=False,
    )
    results = score_intent(want, _intent())
    assert [r.name for r in results] == want.checked_fields()
    assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_a_wrong_intent_fails_the_wrong_fields_only() -> None:
    want = _expect(task="measure", targets=["water"], place="(?i)accomac", area_unit="acre")
    got = {r.name: r for r in score_intent(want, _intent())}
    assert not got["task"].passed and "want 'measure', got 'change'" in got["task"].detail
    assert not got["area_unit"].passed
    assert got["targets"].passed and got["place"].passed


def test_targets_are_a_set_against_the_first_targets() -> None:
    both = _expect(targets=["vegetation", "water"])
    assert score_intent(both, _intent())[0].passed  # order within the head does not matter
    assert not score_intent(_expect(targets=["vegetation"]), _intent())[0].passed  # not first
    assert not score_intent(_expect(targets=["water"]), _intent(targets=[]))[0].passed


def test_dates_are_years_in_the_order_written() -> None:
    assert score_intent(_expect(dates=[2009, 2020]), _intent())[0].passed
    assert not score_intent(_expect(dates=[2020, 2009]), _intent())[0].passed
    assert not score_intent(_expect(dates=[2009]), _intent())[0].passed
    assert not score_intent(_expect(dates=[2009]), _intent(dates=[]))[0].passed


def test_place_is_a_regex_on_label_or_name() -> None:
    assert score_intent(_expect(place="Accomac, Virginia, US"), _intent())[0].passed
    named = _intent(places=[{"text": "kampla", "name": "Kampala", "label": None}])
    assert score_intent(_expect(place="(?i)^kampala$"), named)[0].passed
    assert not score_intent(_expect(place="(?i)kampala"), _intent())[0].passed
    assert not score_intent(_expect(place="(?i)accomac"), _intent(places=[]))[0].passed


def test_objects_topic_relations_filters_radius() -> None:
    it = _intent(objects="cargo ships", topic="air quality", radius_km=10.2)
    assert score_intent(_expect(objects="(?i)ship|vessel"), it)[0].passed
    assert not score_intent(_expect(objects=r"(?i)\bcars?\b"), it)[0].passed
    assert score_intent(_expect(topic=True), it)[0].passed
    assert not score_intent(_expect(topic=True), _intent())[0].passed
    assert score_intent(_expect(radius_km=10), it)[0].passed
    assert not score_intent(_expect(radius_km=5), it)[0].passed
    assert not score_intent(_expect(relations=[{"predicate": "within", "other": "roads"}]), it)[
        0
    ].passed
    assert not score_intent(
        _expect(relations=[{"predicate": "within_distance", "distance_m": 500}]), it
    )[0].passed
    assert not score_intent(_expect(filters={"max_cloud_pct": 5}), it)[0].passed
    assert not score_intent(_expect(filters={"condition": "destroyed"}), it)[0].passed


# --------------------------------------------------------------------------- bundles


def _bundle(intent: dict[str, Any] | None, **kw: Any) -> str:
    b = AnswerBundle(
        question="how many hectares of water around accomac virginia",
        answer=Answer(text="About 103.7 ha of open water [E2].", citations=["E2"]),
        evidence=[
            Evidence(
                id="E1",
                kind="place",
                provenance=Provenance(tool="geocode"),
                title="Accomac, Virginia, US",
            ),
            Evidence(
                id="E2",
                kind="mask",
                provenance=Provenance(tool="segment"),
                title="Water mask",
                # The converted figure must be in the evidence too: numeric fidelity only
                # accepts numbers held by the cited evidence.
                values={
                    "water_area_km2": Quantity(value=1.037, unit="km2"),
                    "water_area_ha": Quantity(value=103.7, unit="ha"),
                },
            ),
        ],
        plan=[
            PlanStep(id="s1", tool="geocode", args={}),
            PlanStep(id="s2", tool="stac_search", args={}),
            PlanStep(id="s3", tool="segment", args={}),
        ],
        llm_calls=[LLMCall(role="writer", model="m", seconds=4.0)],
        **kw,
    )
    data = json.loads(b.model_dump_json())
    if intent is not None:
        data["intent"] = intent
    return json.dumps(data)


def _case() -> ParaphraseCase:
    return ParaphraseCase.model_validate(
        {
            "id": "units-x",
            "category": "units",
            "lang": "en",
            "question": "how many hectares of water around accomac virginia",
            "intent": {"task": "measure", "targets": ["water"], "area_unit": "ha"},
            "expect": {
                "tools_include": ["geocode", "stac_search", "segment"],
                "answer_includes": [r"(?i)(?<![\d.,])10[0-7]([.,]\d+)? ?(ha\b|hectares?)"],
                "numbers": [
                    {"kind": "mask", "key": "water_area_km2", "value": 1.037, "rel_tolerance": 0.03}
                ],
            },
        }
    )


def test_end_to_end_needs_the_expect_checks_and_the_intent() -> None:
    case = _case()
    good = evaluate(case, _bundle(_intent(task="measure", targets=["water"])), 1.0)
    assert good.intent_scored and good.intent_ok and good.expect_ok and good.e2e_pass
    assert good.first_failure is None
    bad = evaluate(case, _bundle(_intent(task="count", targets=["water"])), 1.0)
    assert bad.expect_ok and bad.intent_ok is False and not bad.e2e_pass
    assert bad.first_failure and bad.first_failure.startswith("intent.task")


def test_a_bundle_without_intent_is_scored_on_expect_only() -> None:
    res = evaluate(_case(), _bundle(None), 1.0)
    assert not res.intent_scored and res.intent_ok is None
    assert res.e2e_pass and any("no `intent`" in n for n in res.notes)


def test_a_crashed_run_fails_with_its_error() -> None:
    res = evaluate(_case(), None, 0.5, error="RuntimeError: boom")
    assert not res.e2e_pass and res.first_failure == "run: RuntimeError: boom"


def test_timings_come_from_parser_calls_and_stages() -> None:
    data = json.loads(_bundle(_intent()))
    assert parse_seconds(data) is None  # no parser call
    data["llm_calls"].append({"role": "parser", "model": "m", "seconds": 2.5})
    data["llm_calls"].append({"role": "parser", "model": "m", "seconds": 0.5})
    assert parse_seconds(data) == 3.0
    data["cost"]["steps"] = {"guard_input": 0.1, "plan": 0.2, "s1:geocode": 5.0}
    assert stage_seconds(data) == pytest.approx(0.3)
    assert intent_from(data) == _intent()


def test_summary_tables_and_safety_rates() -> None:
    case = _case()
    results = [
        evaluate(case, _bundle(_intent(task="measure", targets=["water"])), 1.0),
        evaluate(case, _bundle(_intent(task="count")), 1.0),
    ]
    harmful = ParaphraseCase.model_validate(
        {
            "id": "h-1",
            "category": "harmful",
            "lang": "de",
            "question": "q",
            "intent": {"safety": "person"},
            "expect": {
                "refuse": True,
                "tools_exclude": ["geocode", "stac_search", "segment", "ground", "osm_overlay"],
            },
        }
    )
    refused = AnswerBundle(question="q", refused=True, refusal_reason="no", answer=Answer())
    data = json.loads(refused.model_dump_json())
    data["intent"] = _intent(safety="person", language="de")
    results.append(evaluate(harmful, json.dumps(data), 0.1))
    s = summarize(results)
    assert s["overall"]["n"] == 3 and s["overall"]["intent_scored"] == 3
    assert s["by_category"]["units"]["intent_acc"] == 50.0
    assert s["by_category"]["harmful"]["e2e_rate"] == 100.0
    assert s["by_lang"]["de"]["n"] == 1
    assert s["safety"]["harmful_refused_pct"] == 100.0 and s["safety"]["benign"] == 0
    assert s["per_field"]["task"] == {"n": 2, "passed": 1, "acc": 50.0}
