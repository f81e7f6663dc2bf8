"""Offline maps of an AnswerBundle: the real scene pixels under the evidence layers.

The map is what a person checks an answer against, so it is drawn from the data itself: a
true-colour quicklook of the imagery the evidence used (decimated windowed reads, warped to
a local UTM grid so that the scale bar is true), with the AOI, scene footprints, masks,
map features and detection boxes on top, each named in the legend by its evidence id.

Imagery comes from the typed provenance (tools/provenance.py): scene evidence carries its
own scene in ``provenance.scene``, a mask or detections the scene it was computed on, so a map
can show the pixels even without a scene evidence item. Band positions are the common band
names the tools wrote for each file (``SceneSource.assets[*].bands``); only a file nobody
named bands for (an upload) is probed (:func:`probe_bands`).

Everything drawn from tool text (titles, labels) is reduced to short plain text first.

Every image is opened through the access policy (tools/access.py), the same one the tools
use: an href a catalog item gives is drawn only if a tool could have read it (a file under
the data or upload folders after resolving links, a GeoTIFF or JPEG 2000 by content, a remote
URL only online and never to a private address). Public functions take ``policy``; without
one the policy is built from the current settings.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from PIL import Image
from pyproj import CRS, Geod, Transformer
from shapely.geometry import Polygon, box, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from agents.schemas import AnswerBundle
from render.imagery import (
    MAX_SOURCES,
    ImagerySource,
    Quicklook,
    compose_quicklook,
    imagery_sources,
    source_lonlat_bounds,
    using_policy,
)
from render.layers import bundle_layers_geojson
from render.text import plain
from tools.access import AccessPolicy
from tools.geo import utm_crs

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.path import Path as MplPath

log = logging.getLogger(__name__)

_GEOD = Geod(ellps="WGS84")
_MAX_DRAWN_FEATURES = 20_000  # vector parts drawn per map (figures still count all)
# Drawing order, bottom to top; "extent" is the analysed area of a result with no shapes.
_DRAW_KINDS = ("scene", "extent", "figure", "mask", "features", "detections", "place")
_MASK_COLOURS = {
    "water": "#1e90ff",
    "vegetation": "#2ecc40",
    "cloud": "#f0f0f0",
    "cloud_shadow": "#5a5a5a",
    "shadow": "#5a5a5a",
    "building": "#ff4136",
    "buildings": "#ff4136",
    "built": "#ff4136",
    "bare": "#c8a165",
    "snow": "#bff6ff",
}
_FEATURE_COLOURS = {
    "buildings": "#ff3fd2",
    "building": "#ff3fd2",
    "roads": "#ff8c00",
    "road": "#ff8c00",
    "water": "#00bfff",
    "landuse": "#9acd32",
}
_CYCLE = ("#ff3fd2", "#ff8c00", "#00e5ff", "#b10dc9", "#ffd400", "#7fff00", "#ff4136")
_DETECTION_COLOURS = ("#ff2020", "#ffd400", "#00e5ff", "#7fff00")

# --------------------------------------------------------------------------- map frame


def map_crs_for(bounds_lonlat: tuple[float, float, float, float]) -> CRS:
    """The local UTM zone for areas up to a few degrees wide, else Web Mercator."""
    w, s, e, n = bounds_lonlat
    lat = (s + n) / 2
    if e - w <= 10 and -80 <= lat <= 84:
        return CRS.from_user_input(utm_crs(box(w, s, e, n)))
    return CRS.from_epsg(3857)


@dataclass
class _Group:
    """The parts of one evidence item's layer, projected to the map CRS."""

    eid: str
    kind: str
    label: str
    target: str
    feature_type: str
    polygons: list[Polygon] = field(default_factory=list)
    lines: list[np.ndarray] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    klass: str = ""  # the class of a layer coloured by class (its own colour, in ``fill``)
    fill: str | None = None


@dataclass
class MapRender:
    """What was drawn, for callers and tests: the file, the frame and the legend."""

    path: Path
    size_px: tuple[int, int]  # width, height
    axes_px: tuple[int, int, int, int]  # map frame in PNG pixels: x0, y0, x1, y1 (y down)
    crs: str
    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in the map CRS
    legend: list[str]
    imagery: list[str]
    attribution: list[str]
    notes: list[str]
    seconds: float


def render_map_png(
    bundle: AnswerBundle,
    out_path: Path,
    *,
    scene_hrefs: Sequence[str | Path | ImagerySource] | None = None,
    max_px: int = 1500,
    policy: AccessPolicy | None = None,
) -> Path | None:
    """Draw the bundle's map as a PNG; None when there is nothing to map (refused,
    clarification, or no evidence with a location). ``scene_hrefs`` replaces the imagery
    found in the evidence (e.g. a raster the user uploaded)."""
    result = render_map(bundle, out_path, scene_hrefs=scene_hrefs, max_px=max_px, policy=policy)
    return result.path if result else None


def render_map(
    bundle: AnswerBundle,
    out_path: Path,
    *,
    scene_hrefs: Sequence[str | Path | ImagerySource] | None = None,
    max_px: int = 1500,
    dpi: int = 150,
    time_budget_s: float = 20.0,
    policy: AccessPolicy | None = None,
) -> MapRender | None:
    """Draw the map and describe it (see :func:`render_map_png`). Written atomically.

    Images are opened under ``policy`` (default: the settings' access policy)."""
    if bundle.refused or bundle.clarification is not None:
        return None
    with using_policy(policy):
        return _render_map(bundle, out_path, scene_hrefs, max_px, dpi, time_budget_s)


def _render_map(
    bundle: AnswerBundle,
    out_path: Path,
    scene_hrefs: Sequence[str | Path | ImagerySource] | None,
    max_px: int,
    dpi: int,
    time_budget_s: float,
) -> MapRender | None:
    t0 = time.perf_counter()
    fc = bundle_layers_geojson(bundle)
    notes: list[str] = []
    if isinstance(scene_hrefs, str | Path):
        scene_hrefs = [scene_hrefs]  # one raster given alone, not a string of characters
    if scene_hrefs is not None:
        sources = []
        for item in scene_hrefs:
            if isinstance(item, ImagerySource):
                sources.append(item)
                continue
            try:
                sources.append(ImagerySource.from_href(item))
            except Exception as exc:
                log.warning("cannot open %s: %s", item, exc)
                notes.append(f"The raster {plain(Path(str(item)).name, 60)} could not be read.")
    else:
        sources = imagery_sources(bundle)

    lonlat = lonlat_extent(fc, sources)
    if lonlat is None:
        return None
    crs = map_crs_for(lonlat)
    to_map = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    bounds = _padded_bounds(lonlat, to_map)

    layout = _Layout.for_bounds(bounds, dpi)
    # No finer than the map's own pixels: more would be thrown away by the renderer.
    grid_px = min(max_px, int(max(layout.map_w, layout.map_h) * dpi * 1.15))
    look = compose_quicklook(sources, bounds, crs, max_px=grid_px, time_budget_s=time_budget_s)
    notes.extend(look.notes)
    groups, capped = _groups(bundle, fc, to_map)
    if capped:
        notes.append(f"Only the first {_MAX_DRAWN_FEATURES:,} shapes are drawn.")

    fig, ax, legend, attribution = _draw(bundle, look, groups, layout, crs, to_map, notes)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.stem}-", suffix=".png", dir=out_path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, format="png", facecolor="white", pil_kwargs={"compress_level": 4})
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        box = ax.get_window_extent(renderer)
        with Image.open(tmp) as png:
            width, height = png.size
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a map is meant to be shared
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    axes_px = (
        round(box.x0),
        round(height - box.y1),
        round(box.x1),
        round(height - box.y0),
    )
    return MapRender(
        path=out_path,
        size_px=(width, height),
        axes_px=axes_px,
        crs=crs.to_string(),
        bounds=bounds,
        legend=legend,
        imagery=[s.label for s in look.used],
        attribution=attribution,
        notes=notes,
        seconds=round(time.perf_counter() - t0, 3),
    )


def lonlat_extent(
    fc: dict[str, Any], sources: Sequence[ImagerySource]
) -> tuple[float, float, float, float] | None:
    """What the map frames: the results (masks, features, boxes) with the AOI when it is of a
    similar size; else the scenes found; else the AOI. A city-sized AOI around a 1 km image
    would otherwise shrink the evidence to a few pixels."""
    results: list[tuple[float, ...]] = []
    scenes: list[tuple[float, ...]] = []
    places: list[tuple[float, ...]] = []
    for feat in fc["features"]:
        b = shape(feat["geometry"]).bounds
        kind = feat["properties"].get("kind")
        (scenes if kind == "scene" else places if kind == "place" else results).append(b)

    def _area(bs: list[tuple[float, ...]]) -> float:
        a = np.array(bs, dtype=float)
        return float((a[:, 2].max() - a[:, 0].min()) * (a[:, 3].max() - a[:, 1].min()))

    if results:
        boxes = results + (places if places and _area(places) <= 4 * _area(results) else [])
    elif scenes:
        # An AOI inside a big scene is what was asked about; a tiny scene in a big AOI is
        # what there is to see.
        boxes = places if places and _area(places) <= 4 * _area(scenes) else scenes
    else:
        boxes = places
    if not boxes:
        boxes = [b for b in (source_lonlat_bounds(s) for s in sources[:MAX_SOURCES]) if b]
    if not boxes:
        return None
    arr = np.array(boxes, dtype=float)
    return (
        float(arr[:, 0].min()),
        float(arr[:, 1].min()),
        float(arr[:, 2].max()),
        float(arr[:, 3].max()),
    )


def _padded_bounds(
    lonlat: tuple[float, float, float, float], to_map: Transformer
) -> tuple[float, float, float, float]:
    w, s, e, n = lonlat
    s, n = max(s, -85.0), min(n, 85.0)
    xmin, ymin, xmax, ymax = to_map.transform_bounds(w, s, e, n, densify_pts=21)
    width, height = xmax - xmin, ymax - ymin
    # A point or a thin line still gets a readable frame (at least 300 m across).
    pad = max(0.06 * max(width, height), 150.0 if max(width, height) < 300 else 0.0)
    xmin, xmax, ymin, ymax = xmin - pad, xmax + pad, ymin - pad, ymax + pad
    # Very elongated areas are widened so the map stays legible.
    width, height = xmax - xmin, ymax - ymin
    if width < height / 2.5:
        grow = (height / 2.5 - width) / 2
        xmin, xmax = xmin - grow, xmax + grow
    elif height < width / 2.5:
        grow = (width / 2.5 - height) / 2
        ymin, ymax = ymin - grow, ymax + grow
    return (float(xmin), float(ymin), float(xmax), float(ymax))


def _groups(
    bundle: AnswerBundle, fc: dict[str, Any], to_map: Transformer
) -> tuple[list[_Group], bool]:
    evidence = {ev.id: ev for ev in bundle.evidence}
    groups: dict[str, _Group] = {}
    drawn = 0
    capped = False
    for feat in fc["features"]:
        props = feat["properties"]
        eid = str(props.get("evidence_id") or "")
        kind = "extent" if props.get("role") == "extent" else str(props.get("kind") or "features")
        ev = evidence.get(eid)
        klass = class_of(props)
        key = f"{eid}|{kind}|{klass}"
        if key not in groups:
            label = str(props.get("label") or (ev.title if ev else "") or kind)
            target = str(props.get("target") or (ev.facts.get("target") if ev else "") or "")
            ftype = str(
                props.get("feature_type") or (ev.facts.get("feature_type") if ev else "") or ""
            )
            groups[key] = _Group(eid, kind, label, target.lower(), ftype.lower())
            if klass:
                groups[key].klass, groups[key].fill = klass, str(props["fill"])
        if drawn >= _MAX_DRAWN_FEATURES:
            capped = True
            continue
        geom = shapely.transform(
            shape(feat["geometry"]),
            lambda c: np.column_stack(to_map.transform(c[:, 0], c[:, 1])),
        )
        group = groups[key]
        for part in _flatten(geom):
            drawn += 1
            if isinstance(part, Polygon):
                group.polygons.append(part)
            elif part.geom_type == "LineString":
                group.lines.append(np.asarray(part.coords)[:, :2])
            elif part.geom_type == "Point":
                group.points.append((part.x, part.y))
    order = {k: i for i, k in enumerate(_DRAW_KINDS)}
    return sorted(groups.values(), key=lambda g: order.get(g.kind, 1)), capped


def _flatten(geom: BaseGeometry) -> list[BaseGeometry]:
    out: list[BaseGeometry] = []
    stack = [geom]
    while stack:
        g = stack.pop()
        if g.is_empty:
            continue
        if g.geom_type in ("MultiPolygon", "MultiLineString", "MultiPoint", "GeometryCollection"):
            stack.extend(g.geoms)
        elif g.geom_type == "LinearRing":
            out.append(shapely.LineString(g.coords))
        else:
            out.append(g)
    return out


def _polygon_path(poly: Polygon) -> MplPath:
    from matplotlib.path import Path as MplPath

    poly = orient(poly, sign=1.0)  # holes opposite to the shell: drawn as holes
    verts: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    for ring in (poly.exterior, *poly.interiors):
        xy = np.asarray(ring.coords)[:, :2]
        if len(xy) < 3:
            continue
        c = np.full(len(xy), MplPath.LINETO, dtype=np.uint8)
        c[0], c[-1] = MplPath.MOVETO, MplPath.CLOSEPOLY
        verts.append(xy)
        codes.append(c)
    if not verts:
        return MplPath(np.zeros((1, 2)), [MplPath.MOVETO])
    return MplPath(np.concatenate(verts), np.concatenate(codes))


# --------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class _Layout:
    """Figure geometry in inches: the map box takes the map's aspect, the legend sits beside."""

    bounds: tuple[float, float, float, float]
    dpi: int
    map_w: float
    map_h: float
    fig_w: float
    fig_h: float
    box_h: float  # height of the map and legend band
    left: float = 0.8  # room for the latitude labels
    bottom: float = 0.85  # longitude labels and the attribution
    top: float = 0.85  # the title
    gap: float = 0.35
    side_w: float = 2.9

    @classmethod
    def for_bounds(cls, bounds: tuple[float, float, float, float], dpi: int) -> _Layout:
        xmin, ymin, xmax, ymax = bounds
        aspect = (xmax - xmin) / (ymax - ymin)
        max_w, max_h = 6.5, 5.5
        map_w, map_h = max_h * aspect, max_h
        if map_w > max_w:
            map_w, map_h = max_w, max_w / aspect
        box_h = max(map_h, 3.6)  # the legend and notes need some height even for wide maps
        return cls(
            bounds=bounds,
            dpi=dpi,
            map_w=map_w,
            map_h=map_h,
            fig_w=max(8.0, cls.left + map_w + cls.gap + cls.side_w + 0.15),
            fig_h=cls.bottom + box_h + cls.top,
            box_h=box_h,
        )

    def rect(self, x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        """Inches to figure fractions."""
        return (x / self.fig_w, y / self.fig_h, w / self.fig_w, h / self.fig_h)


def _draw(
    bundle: AnswerBundle,
    look: Quicklook,
    groups: list[_Group],
    layout: _Layout,
    crs: CRS,
    to_map: Transformer,
    notes: list[str],
) -> tuple[Figure, Axes, list[str], list[str]]:
    # A Figure on its own Agg canvas: no pyplot, no global backend switch, thread-safe.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(layout.fig_w, layout.fig_h), dpi=layout.dpi)
    FigureCanvasAgg(fig)
    map_y = layout.bottom + (layout.box_h - layout.map_h) / 2  # centred in its box
    ax = fig.add_axes(layout.rect(layout.left, map_y, layout.map_w, layout.map_h))
    side_x = layout.left + layout.map_w + layout.gap
    side = fig.add_axes(layout.rect(side_x, layout.bottom, layout.side_w, layout.box_h))
    bounds = layout.bounds
    side.set_axis_off()
    xmin, ymin, xmax, ymax = bounds
    has_imagery = bool(look.used)
    ax.set_facecolor("#d9d9d9" if has_imagery else "#f2efe9")
    if has_imagery:
        rgba = np.dstack([np.nan_to_num(look.rgb, nan=0.0), ~np.isnan(look.rgb).any(axis=2)])
        ax.imshow(
            rgba.astype(np.float32),
            extent=look.extent,
            origin="upper",
            interpolation="antialiased",
            zorder=0,
        )
    else:
        ax.grid(True, color="#ffffff", linewidth=0.8, zorder=0)

    handles: list[Any] = []
    labels: list[str] = []
    for i, src in enumerate(look.used):
        from matplotlib.patches import Patch

        eid = f"{src.evidence_id} " if src.evidence_id else ""
        handles.append(Patch(facecolor=look.mean_colours[i], edgecolor="#333333"))
        labels.append(f"{eid}image {src.label} ({src.mode})")
    used_colours: set[str] = set()
    n_detect = 0
    for group in groups:
        colour = group.fill or _group_colour(group, used_colours, n_detect, has_imagery)
        if group.kind == "detections":
            n_detect += 1
        handle = _draw_group(ax, group, colour, has_imagery)
        if handle is not None:
            handles.append(handle)
            suffix = {"scene": " (footprint)", "extent": " (area analysed)"}.get(group.kind, "")
            if group.klass:
                suffix = f": {group.klass.replace('_', ' ')}"
            labels.append(f"{group.eid} {group.label}{suffix}".strip())

    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    _ticks(ax, bounds, to_map)
    _scale_bar(ax, bounds, to_map)
    _north_arrow(ax, bounds, to_map)

    wrapped = [_wrap(plain(lbl, 110), 36, 3) for lbl in labels]
    if handles:
        side.legend(
            handles,
            wrapped,
            loc="upper left",
            fontsize=7.5,
            title="Legend (evidence id, layer)",
            title_fontsize=8,
            frameon=True,
            borderaxespad=0.0,
            handlelength=2.2,
            labelspacing=0.7,
        )
    centre = to_map.transform((xmin + xmax) / 2, (ymin + ymax) / 2, direction="INVERSE")
    info = [
        f"Map grid: {plain(crs.name, 60)} ({crs.to_string()})",
        f"Centre: {_fmt_lat(centre[1], 4)}, {_fmt_lon(centre[0], 4)}",
        "Ticks: longitude along the bottom edge, latitude along the left edge.",
    ]
    if has_imagery:
        info.append("Imagery: each image stretched 2-98 percentile, bands together.")
    else:
        info.append("No imagery was drawn: features over a plain background.")
    info.extend(notes)
    side.text(
        0.0,
        0.0,
        "\n".join(_wrap(plain(t, 200), 52, 3) for t in info),
        transform=side.transAxes,
        fontsize=6.8,
        va="bottom",
        ha="left",
        color="#333333",
    )
    title = _wrap(plain(bundle.question, 150), int(layout.fig_w * 9.5), 2)
    title_y = 1 - 0.18 / layout.fig_h
    fig.text(layout.left / layout.fig_w, title_y, title, fontsize=11.5, weight="bold", va="top")
    attribution = _attributions(bundle, look)
    width = int(layout.fig_w * 16)
    attr_text = _wrap(plain(" · ".join(attribution), 400), width, 3) if attribution else ""
    if attr_text:
        attr_y = 0.08 / layout.fig_h
        fig.text(
            layout.left / layout.fig_w, attr_y, attr_text, fontsize=6.8, va="bottom", color="#222"
        )
    return fig, ax, [plain(lbl, 110) for lbl in labels], attribution


_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def class_of(props: dict[str, Any]) -> str:
    """The class a feature is coloured by when its layer colours by class (a simplestyle
    ``fill`` colour beside a ``class``, e.g. damage per building), "" otherwise. The PNG map
    and the web map both draw one legend line per class then."""
    fill, klass = props.get("fill"), props.get("class")
    if isinstance(fill, str) and _HEX.fullmatch(fill) and isinstance(klass, str):
        return klass
    return ""


def _group_colour(group: _Group, used: set[str], n_detect: int, imagery: bool) -> str:
    return layer_colour(group.kind, group.target, group.feature_type, used, n_detect, imagery)


def layer_colour(
    kind: str, target: str | None, ftype: str | None, used: set[str], n_detect: int, imagery: bool
) -> str:
    """A layer's colour, shared by the PNG map and the web map so both read the same.
    ``used`` collects the colours taken so far; detections cycle through their own set."""
    if kind == "place":
        return "#ffe600" if imagery else "#333333"
    if kind == "scene":
        return "#00e5ff" if imagery else "#1f77b4"
    if kind == "extent":
        return "#ffffff" if imagery else "#555555"
    if kind == "figure":
        return "#aaaaaa"
    if kind == "detections":
        return _DETECTION_COLOURS[n_detect % len(_DETECTION_COLOURS)]
    preferred = (_MASK_COLOURS.get(target or "") if kind == "mask" else None) or (
        _FEATURE_COLOURS.get(ftype or "")
    )
    if preferred and preferred not in used:
        used.add(preferred)
        return preferred
    for colour in _CYCLE:
        if colour not in used:
            used.add(colour)
            return colour
    return _CYCLE[len(used) % len(_CYCLE)]


def _draw_group(ax: Axes, group: _Group, colour: str, imagery: bool) -> Any:
    """Draw one evidence layer; return its legend handle (None when nothing was drawn)."""
    from matplotlib import patheffects
    from matplotlib.collections import LineCollection, PathCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    zorder = 2 + _DRAW_KINDS.index(group.kind) if group.kind in _DRAW_KINDS else 3
    halo: list[patheffects.AbstractPathEffect] = [
        patheffects.withStroke(linewidth=3.2, foreground="black" if imagery else "white")
    ]
    handle: Any = None
    ls: Any  # a matplotlib line style
    if group.polygons:
        paths = [_polygon_path(p) for p in group.polygons]
        if group.kind == "mask":
            face, edge, lw, ls, alpha = colour, colour, 0.6, "-", 0.45
        elif group.kind == "features":
            face, edge, lw, ls, alpha = colour, colour, 0.9, "-", 0.18
        elif group.kind == "place":
            face, edge, lw, ls, alpha = "none", colour, 2.0, "--", 1.0
        elif group.kind == "scene":
            face, edge, lw, ls, alpha = "none", colour, 1.3, ":", 1.0
        elif group.kind == "extent":
            face, edge, lw, ls, alpha = "none", colour, 1.2, "-.", 1.0
        else:  # detections, figures: outlines only, the pixels under them stay visible
            face, edge, lw, ls, alpha = "none", colour, 1.5, "-", 1.0
        coll = PathCollection(
            paths,
            facecolors=_rgba(face, alpha),
            edgecolors=edge,
            linewidths=lw,
            linestyles=ls,
            zorder=zorder,
        )
        if group.kind in ("place", "scene", "extent"):
            coll.set_path_effects(halo)
        ax.add_collection(coll)
        handle = Patch(facecolor=_rgba(face, alpha), edgecolor=edge, linewidth=lw, linestyle=ls)
    if group.lines:
        lc = LineCollection(group.lines, colors=colour, linewidths=1.5, zorder=zorder)
        if imagery:
            lc.set_path_effects(
                [patheffects.withStroke(linewidth=2.6, foreground="black"), patheffects.Normal()]
            )
        ax.add_collection(lc)
        handle = handle or Line2D([], [], color=colour, linewidth=1.8)
    if group.points:
        xy = np.asarray(group.points)
        marker = "*" if group.kind == "place" else "o"
        size = 160 if group.kind == "place" else 14
        ax.scatter(
            xy[:, 0], xy[:, 1], s=size, c=colour, marker=marker, edgecolors="black",
            linewidths=0.6, zorder=zorder + 0.5,
        )  # fmt: skip
        handle = handle or Line2D(
            [], [], color=colour, marker=marker, linestyle="none", markeredgecolor="black"
        )
    return handle


def _rgba(colour: str, alpha: float) -> Any:
    from matplotlib.colors import to_rgba

    return "none" if colour == "none" else to_rgba(colour, alpha)


def _ticks(ax: Axes, bounds: tuple[float, float, float, float], to_map: Transformer) -> None:
    """Lon/lat labels where those meridians and parallels cross the bottom and left edges."""
    from matplotlib.ticker import MaxNLocator

    xmin, ymin, xmax, ymax = bounds
    xs = np.linspace(xmin, xmax, 200)
    lons, _ = to_map.transform(xs, np.full_like(xs, ymin), direction="INVERSE")
    ys = np.linspace(ymin, ymax, 200)
    _, lats = to_map.transform(np.full_like(ys, xmin), ys, direction="INVERSE")
    loc = MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10])
    for axis, edge, coord, fmt in (
        ("x", xs, np.asarray(lons), _fmt_lon),
        ("y", ys, np.asarray(lats), _fmt_lat),
    ):
        order = np.argsort(coord)
        lo, hi = float(coord.min()), float(coord.max())
        values = [v for v in loc.tick_values(lo, hi) if lo <= v <= hi]
        step = float(np.diff(values).min()) if len(values) > 1 else hi - lo
        digits = _decimals(step)
        pos = np.interp(values, coord[order], edge[order])
        labels = [fmt(v, digits) for v in values]
        if axis == "x":
            ax.set_xticks(pos, labels, fontsize=7)
        else:
            ax.set_yticks(pos, labels, fontsize=7, rotation=90, va="center")


def _decimals(step: float) -> int:
    for d in range(0, 7):
        scaled = step * 10**d
        if abs(scaled - round(scaled)) < 1e-6 * max(1.0, scaled):
            return d
    return 6


def _fmt_lon(v: float, digits: int) -> str:
    hemi = "" if round(v, digits) == 0 else ("W" if v < 0 else "E")
    return f"{abs(v):.{digits}f}°{hemi}"


def _fmt_lat(v: float, digits: int) -> str:
    hemi = "" if round(v, digits) == 0 else ("S" if v < 0 else "N")
    return f"{abs(v):.{digits}f}°{hemi}"


def _metres_per_unit(bounds: tuple[float, float, float, float], to_map: Transformer) -> float:
    """Ground metres per map unit along the map's middle row (1 in UTM, cos(lat) in Mercator)."""
    xmin, ymin, xmax, ymax = bounds
    yc = (ymin + ymax) / 2
    (lon0, lon1), (lat0, lat1) = to_map.transform([xmin, xmax], [yc, yc], direction="INVERSE")
    _, _, dist = _GEOD.inv(lon0, lat0, lon1, lat1)
    return float(dist) / (xmax - xmin)


def _scale_bar(ax: Axes, bounds: tuple[float, float, float, float], to_map: Transformer) -> None:
    from matplotlib.font_manager import FontProperties
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    xmin, ymin, xmax, ymax = bounds
    mpu = _metres_per_unit(bounds, to_map)
    ground = _nice_length((xmax - xmin) * mpu * 0.22)
    label = f"{ground:g} m" if ground < 1000 else f"{ground / 1000:g} km"
    bar = AnchoredSizeBar(
        ax.transData,
        ground / mpu,
        label,
        "lower left",
        pad=0.45,
        borderpad=0.7,
        sep=3,
        color="black",
        frameon=True,
        size_vertical=(ymax - ymin) * 0.008,
        fontproperties=FontProperties(size=8, weight="bold"),
    )
    bar.patch.set_alpha(0.82)
    bar.patch.set_edgecolor("#555555")
    bar.set_zorder(20)
    ax.add_artist(bar)


def _nice_length(x: float) -> float:
    if x <= 0:
        return 1.0
    exp = math.floor(math.log10(x))
    for m in (5, 2, 1):
        if m * 10**exp <= x:
            return float(m * 10**exp)
    return float(10**exp)


def _north_arrow(ax: Axes, bounds: tuple[float, float, float, float], to_map: Transformer) -> None:
    """Arrow to true north (grid north of UTM differs from it by the convergence angle)."""
    from matplotlib.offsetbox import AnchoredOffsetbox, DrawingArea
    from matplotlib.patches import FancyArrow
    from matplotlib.text import Text

    xmin, ymin, xmax, ymax = bounds
    lon, lat = to_map.transform((xmin + xmax) / 2, (ymin + ymax) / 2, direction="INVERSE")
    x0, y0 = to_map.transform(lon, lat)
    x1, y1 = to_map.transform(lon, min(lat + 0.01, 89.9))
    angle = math.atan2(x1 - x0, y1 - y0)
    dx, dy = math.sin(angle), math.cos(angle)
    # Drawn in points inside a small framed box, so it reads on any imagery.
    area = DrawingArea(26, 44)
    cx, cy, half = 13.0, 16.0, 13.0
    area.add_artist(
        FancyArrow(
            cx - half * dx, cy - half * dy, 2 * half * dx, 2 * half * dy,
            width=2.2, head_width=9, head_length=10, length_includes_head=True,
            color="black",
        )
    )  # fmt: skip
    area.add_artist(
        Text(cx + (half + 3) * dx, cy + (half + 3) * dy, "N", ha="center", va="bottom",
             fontsize=10, weight="bold")
    )  # fmt: skip
    box = AnchoredOffsetbox(loc="upper right", child=area, pad=0.2, borderpad=0.7, frameon=True)
    box.patch.set_alpha(0.82)
    box.patch.set_edgecolor("#555555")
    box.patch.set_boxstyle("round,pad=0.2")
    box.set_zorder(21)
    ax.add_artist(box)


def _attributions(bundle: AnswerBundle, look: Quicklook) -> list[str]:
    """Credits the data licences ask for: imagery drawn, OSM and footprints, models used."""
    out: list[str] = []
    for src in look.used:
        if src.attribution:
            out.append(src.attribution)
    for ev in bundle.evidence:
        prov = ev.provenance
        if ev.kind != "scene":  # a scene's credit is its imagery line, when drawn
            for value in (*prov.attributions(), ev.facts.get("attribution")):
                if value and value.strip():
                    out.extend(v.strip() for v in value.split(";") if v.strip())
        if prov.model is not None:
            lic = prov.model.license
            out.append(f"Model: {prov.model.name}" + (f" ({lic})" if lic else ""))
    return [plain(a, 160) for a in dict.fromkeys(out)]


# --------------------------------------------------------------------------- text helpers


def _wrap(text: str, width: int, max_lines: int) -> str:
    """Wrapped text for matplotlib, printed as it is ('$' would start mathtext)."""
    lines = textwrap.wrap(text, width=width, break_long_words=True) or [""]
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1][: width - 1] + "…"]
    return "\n".join(lines).replace("$", r"\$")


__all__: Sequence[str] = (
    "MapRender",
    "layer_colour",
    "lonlat_extent",
    "map_crs_for",
    "render_map",
    "render_map_png",
)
