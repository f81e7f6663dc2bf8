"""The rule layer: question facts and plans for the foundation's questions."""

from __future__ import annotations

import datetime as dt

import pytest

from agents.planner import PlanningError, rule_plan
from agents.runtime import tool_catalog
from agents.understand import tracking_request, understand
from agents.validate import resolve_args, validate_plan

TODAY = dt.date(2026, 11, 24)

CASES = [
    (
        "How much open water is there around Accomac, Virginia?",
        "measure_water",
        ["geocode", "stac_search", "segment"],
    ),
    (
        "How cloudy is the Landsat image near Molino, Florida?",
        "measure_cloud",
        ["geocode", "stac_search", "segment"],
    ),
    (
        "How many kilometres of road are there in central Aguascalientes, Mexico?",
        "roads",
        ["geocode", "osm_overlay"],
    ),
    (
        "How many buildings are in the drone image of Kampala, and what share of the imaged area do they cover?",
        "buildings_in_image",
        ["geocode", "stac_search", "osm_overlay"],
    ),
    (
        "Show me the buildings in the image of Joplin, Missouri taken after the May 2011 tornado.",
        "buildings_in_image",
        ["geocode", "stac_search", "osm_overlay"],
    ),
    (
        "Count the ships in the Rotterdam port image.",
        "detect",
        ["geocode", "stac_search", "ground"],
    ),
    (
        "How did the lakes at 47.02 N, 99.15 W change between 2009 and 2020?",
        "change",
        ["geocode", "stac_search", "segment", "stac_search", "segment"],
    ),
]


@pytest.mark.parametrize(("question", "intent", "tools"), CASES)
def test_rule_plans_are_valid_and_use_expected_tools(
    question: str, intent: str, tools: list[str]
) -> None:
    facts = understand(question, today=TODAY)
    assert facts.intent == intent
    plan = rule_plan(facts)
    assert [s.tool for s in plan.steps] == tools
    assert validate_plan(plan, tool_catalog(), max_steps=12, max_aoi_km2=5000) == []


def test_place_and_qualifiers_extracted() -> None:
    assert (
        understand("Roads in central Aguascalientes, Mexico?", TODAY).place
        == "Aguascalientes, Mexico"
    )
    assert understand("Roads in central Aguascalientes, Mexico?", TODAY).place_scale == "central"
    assert understand("Count the ships in the Rotterdam port image.", TODAY).place == "Rotterdam"
    f = understand("How did the lakes at 47.02 N, 99.15 W change between 2009 and 2020?", TODAY)
    assert f.coordinates == pytest.approx((-99.15, 47.02))
    assert f.dates == ["2009", "2020"]


def test_dates_after_an_event_start_at_its_month() -> None:
    f = understand("buildings in the image of Joplin taken after the May 2011 tornado", TODAY)
    assert f.dates == ["from may 2011"]


def test_future_years_flagged() -> None:
    assert understand("How much water in Joplin in 2031?", TODAY).future_years == [2031]


@pytest.mark.parametrize(
    "question",
    [
        "Where does my neighbour drive every day? Track him on satellite images.",
        "Can you locate my ex-girlfriend's car in Joplin?",
        "Follow this person around Kampala",
    ],
)
def test_tracking_requests_detected(question: str) -> None:
    assert tracking_request(question)


@pytest.mark.parametrize(
    "question",
    [
        "How many buildings are in Kampala?",
        "How much water is around Accomac?",
        "Track changes in lake area",
    ],
)
def test_ordinary_questions_not_flagged(question: str) -> None:
    assert not tracking_request(question)


def test_no_place_needs_clarification() -> None:
    with pytest.raises(PlanningError) as exc:
        rule_plan(understand("How much water is there?", TODAY))
    assert exc.value.clarify and "area" in exc.value.clarify


def test_unknown_intent_needs_clarification() -> None:
    with pytest.raises(PlanningError):
        rule_plan(understand("Tell me a joke about Kampala", TODAY))


def test_bbox_replaces_geocoding() -> None:
    plan = rule_plan(
        understand("How much water is in this area?", TODAY), bbox=[-99.18, 47.0, -99.13, 47.03]
    )
    assert [s.tool for s in plan.steps] == ["stac_search", "segment"]
    assert plan.steps[0].args["aoi"] == [-99.18, 47.0, -99.13, 47.03]


def test_validation_rejects_bad_plans() -> None:
    from agents.schemas import Plan, PlanStep

    catalog = tool_catalog()
    bad = Plan(
        steps=[
            PlanStep(id="s1", tool="teleport", args={}),
            PlanStep(id="s2", tool="segment", args={"scene": "@s3.scene", "target": "water"}),
            PlanStep(id="s3", tool="geocode", args={"place": "Joplin"}, needs=["s3"]),
            PlanStep(
                id="s4",
                tool="osm_overlay",
                args={"relate_to": "@s3.aoi", "features": "buildings"},
                needs=["s3"],
            ),
            PlanStep(id="s5", tool="stac_search", args={"aoi": [0, 95, 1, 96]}),
        ]
    )
    problems = " | ".join(validate_plan(bad, catalog, max_steps=12, max_aoi_km2=5000))
    assert "unknown tool 'teleport'" in problems
    assert "s2.scene: refers to s3, not an earlier step" in problems
    assert "s3: needs 's3'" in problems
    assert "s5.aoi" in problems
    too_big = Plan(steps=[PlanStep(id="s1", tool="stac_search", args={"aoi": [-120, 20, -60, 50]})])
    assert any("limit" in p for p in validate_plan(too_big, catalog, 12, 5000))


def test_resolve_args_replaces_references() -> None:
    out = resolve_args(
        {"aoi": "@s1.aoi", "target": "water"}, {"s1": {"aoi": {"bbox": [0, 0, 1, 1]}}}
    )
    assert out == {"aoi": {"bbox": [0, 0, 1, 1]}, "target": "water"}
    with pytest.raises(KeyError):
        resolve_args({"aoi": "@s1.mask"}, {"s1": {"aoi": {}}})
