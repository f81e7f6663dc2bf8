"""Plans compiled from intents: valid against the tool catalogue, every part of the question
either planned or said to be not done."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from agents.intent import DateSpec, Filters, Intent, PlaceMention, Relation
from agents.recipes import NotCovered, PlanningError, compile_plan
from agents.runtime import tool_catalog
from agents.validate import validate_plan

ACCOMAC = PlaceMention(text="accomac", name="Accomac, Virginia", label="Accomac, Virginia, US")


def year(y: int) -> DateSpec:
    return DateSpec(text=str(y), start=dt.date(y, 1, 1), end=dt.date(y, 12, 31))


def tools(intent: Intent, **kw: object) -> list[str]:
    plan = compile_plan(intent, **kw)  # type: ignore[arg-type]
    assert validate_plan(plan, tool_catalog(), 12, 5000) == []
    return [s.tool for s in plan.steps]


def test_measure_on_imagery() -> None:
    it = Intent(task="measure", targets=["water"], places=[ACCOMAC])
    assert tools(it) == ["geocode", "stac_search", "segment"]


def test_change_measures_every_date() -> None:
    it = Intent(
        task="change",
        targets=["water"],
        places=[ACCOMAC],
        dates=[year(2009), year(2015), year(2020)],
    )
    plan = compile_plan(it)
    searches = [s for s in plan.steps if s.tool == "stac_search"]
    assert [s.args["datetime"][:4] for s in searches] == ["2009", "2015", "2020"]
    assert sum(s.tool == "segment" for s in plan.steps) == 3


def test_every_year_is_bounded_and_said() -> None:
    it = Intent(
        task="change",
        targets=["water"],
        places=[ACCOMAC],
        dates=[year(2009), year(2020)],
        every_year=True,
    )
    plan = compile_plan(it)
    assert sum(s.tool == "segment" for s in plan.steps) == 2
    assert any(n.startswith("not done: every year") for n in plan.notes)


def test_relation_runs_both_parts() -> None:
    it = Intent(
        task="measure",
        targets=["roads", "water"],
        places=[ACCOMAC],
        relations=[Relation(predicate="within_distance", other="water", distance_m=100)],
    )
    plan = compile_plan(it)
    osm = next(s for s in plan.steps if s.tool == "osm_overlay")
    seg = next(s for s in plan.steps if s.tool == "segment")
    assert osm.args["relate_to"] == f"@{seg.id}.mask" and osm.args["distance_m"] == 100


def test_filters_reach_the_search() -> None:
    it = Intent(
        task="list_imagery",
        targets=["imagery"],
        places=[ACCOMAC],
        filters=Filters(max_cloud_pct=10, platform="landsat"),
    )
    plan = compile_plan(it)
    assert plan.steps[1].args["max_cloud"] == 10 and plan.steps[1].args["platform"] == "landsat"


def test_unsupported_parts_are_said() -> None:
    it = Intent(
        task="count",
        targets=["buildings"],
        places=[ACCOMAC],
        filters=Filters(condition="destroyed"),
    )
    plan = compile_plan(it)
    assert any("destroyed" in n for n in plan.notes)


def test_objects_carry_their_size_for_the_resolution_check() -> None:
    it = Intent(task="count", targets=["imagery"], objects="cars", places=[ACCOMAC])
    plan = compile_plan(it)
    ground = plan.steps[-1]
    assert ground.tool == "ground" and ground.args["min_object_m"] == 4.5


def test_capabilities_and_out_of_scope_use_coverage() -> None:
    assert tools(Intent(task="capabilities")) == ["coverage"]
    it = Intent(task="out_of_scope", topic="air quality", places=[ACCOMAC])
    assert tools(it) == ["geocode", "coverage"]


def test_no_area_asks_back_and_unknown_is_not_covered() -> None:
    with pytest.raises(PlanningError) as exc:
        compile_plan(Intent(task="measure", targets=["water"]))
    assert exc.value.clarify and "Which area" in exc.value.clarify
    with pytest.raises(NotCovered):
        compile_plan(Intent(task="unknown", places=[ACCOMAC]))


def test_drawn_area_and_upload() -> None:
    it = Intent(task="measure", targets=["water"], this_area=True)
    plan = compile_plan(it, bbox=[-99.18, 47.0, -99.13, 47.03])
    assert plan.steps[0].tool == "stac_search" and plan.steps[0].args["aoi"] == [
        -99.18,
        47.0,
        -99.13,
        47.03,
    ]
    it = Intent(task="measure", targets=["vegetation"], this_image=True)
    plan = compile_plan(it, raster=str(Path("/data/x.tif")))
    assert [s.tool for s in plan.steps] == ["segment"] and plan.steps[0].args[
        "raster"
    ] == "/data/x.tif"


def test_since_a_year_compares_it_with_the_latest_imagery() -> None:
    since = DateSpec(text="since 2009", start=dt.date(2009, 1, 1), end=dt.date(2026, 12, 2))
    plan = compile_plan(Intent(task="change", targets=["water"], places=[ACCOMAC], dates=[since]))
    searches = [s.args["datetime"] for s in plan.steps if s.tool == "stac_search"]
    assert searches == ["2009-01-01/2009-12-31", "2010-01-01/2026-12-02"]


def test_relation_between_two_map_layers() -> None:
    it = Intent(
        task="count",
        targets=["buildings", "roads"],
        places=[ACCOMAC],
        relations=[Relation(predicate="within_distance", other="roads", distance_m=100)],
    )
    plan = compile_plan(it)
    roads, buildings = [s for s in plan.steps if s.tool == "osm_overlay"]
    assert roads.args["features"] == "roads" and buildings.args["features"] == "buildings"
    assert buildings.args["relate_to"] == f"@{roads.id}.features"
    assert validate_plan(plan, tool_catalog(), 12, 5000) == []
