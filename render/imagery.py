"""Imagery under the maps: which scenes to draw and their pixels on a map grid.

The scenes come from the typed provenance (tools/provenance.py): scene evidence carries its
own scene in ``provenance.scene``, a mask or detections the scene it was computed on, so a
map can show the pixels even without a scene evidence item. Band positions are the common
band names the tools wrote for each file (``SceneSource.assets[*].bands``); only a file
nobody named bands for (an upload) is probed (:func:`probe_bands`).

Every image is opened through the access policy (tools/access.py), the same one the tools
use, and read by the tools' raster access (:func:`tools.raster.read_for_display`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pyproj import CRS

from agents.schemas import AnswerBundle, Evidence
from render.text import plain
from tools.access import AccessPolicy
from tools.provenance import SceneSource
from tools.raster import read_for_display

if TYPE_CHECKING:
    from rasterio.io import DatasetReader


log = logging.getLogger(__name__)

MAX_SOURCES = 8  # scenes drawn under one map; more would only hide each other

# The access policy of the drawing in progress (set by the public entry points).
_POLICY: ContextVar[AccessPolicy | None] = ContextVar("geoscout_map_policy", default=None)


@contextlib.contextmanager
def using_policy(policy: AccessPolicy | None = None) -> Iterator[AccessPolicy]:
    """Draw under ``policy`` (else the one in use, else the settings' policy)."""
    current = policy or _POLICY.get()
    if current is None:
        from agents.uploads import default_access_policy

        current = default_access_policy()
    token = _POLICY.set(current)
    try:
        yield current
    finally:
        _POLICY.reset(token)


@contextlib.contextmanager
def _open_raster(href: str) -> Iterator[DatasetReader]:
    """The one way map drawing opens an image: through the access policy in use."""
    with using_policy() as policy, policy.open_raster(href) as ds:
        yield ds


# --------------------------------------------------------------------------- imagery


class BandRef(BaseModel):
    """One band of one file: an href GDAL can open and a 1-based band index."""

    model_config = ConfigDict(extra="forbid")

    href: str
    band: int = Field(ge=1)


class ImagerySource(BaseModel):
    """Pixels to draw under the map: three bands (red, green, blue) or one grey band."""

    model_config = ConfigDict(extra="forbid")

    channels: list[BandRef] = Field(min_length=1, max_length=3)
    label: str = ""
    evidence_id: str | None = None
    datetime: str | None = None
    attribution: str | None = None

    @property
    def mode(self) -> str:
        return "true colour" if len(self.channels) == 3 else "grey"

    def key(self) -> tuple[tuple[str, int], ...]:
        return tuple((c.href, c.band) for c in self.channels)

    @classmethod
    def from_href(
        cls, href: str | Path, label: str | None = None, *, policy: AccessPolicy | None = None
    ) -> ImagerySource:
        """A source from a raster file alone (an upload, a scene file with no band names).

        Opened under the access policy; the bands come from :func:`probe_bands`.
        """
        path = str(href)
        with using_policy(policy), _open_raster(path) as ds:
            idx = probe_bands(ds)
        return cls(
            channels=[BandRef(href=path, band=i) for i in idx],
            label=label or Path(path).name,
        )

    @classmethod
    def from_scene(cls, scene: SceneSource, ev: Evidence) -> ImagerySource | None:
        """The scene's red, green and blue bands (else panchromatic) by the band names the
        tools wrote; files without band names are probed; else one named band in grey."""
        files = scene.band_files()
        channels: list[BandRef] | None = None
        for wanted in (("red", "green", "blue"), ("pan",)):
            if all(c in files for c in wanted):
                channels = [BandRef(href=files[c][0], band=files[c][1]) for c in wanted]
                break
        if channels is None:
            channels = _probe_files(scene.unnamed_files())
        if channels is None:
            grey = next((b for b in ("red", "green", "blue", "nir") if b in files), None)
            channels = [BandRef(href=files[grey][0], band=files[grey][1])] if grey else None
        if channels is None:
            return None
        date = scene.datetime[:10] if scene.datetime else "date unknown"
        return cls(
            channels=channels,
            label=plain(f"{scene.stac_item_id}, {date}", 70),
            evidence_id=ev.id,
            datetime=scene.datetime,
            attribution=_scene_attribution(scene, ev),
        )


def probe_bands(ds: DatasetReader) -> list[int]:
    """Bands to draw of a file whose bands nobody named: its red/green/blue colour tags;
    else 1, 2, 3 for three bands or more (the order of aerial RGB and NAIP RGBN files);
    else band 1 in grey."""
    names = [ci.name for ci in ds.colorinterp]
    if all(c in names for c in ("red", "green", "blue")):
        return [names.index(c) + 1 for c in ("red", "green", "blue")]
    return [1, 2, 3] if ds.count >= 3 else [1]


def imagery_sources(
    bundle: AnswerBundle, *, policy: AccessPolicy | None = None
) -> list[ImagerySource]:
    """The scenes to draw, bottom first.

    When masks or detections name the scene they were computed on (``provenance.scene``),
    those scenes are drawn, oldest first so that the latest lies on top. Otherwise the
    scene evidence is drawn with the best-ranked (first in the ledger) on top. Only images
    the access policy allows are kept.
    """
    with using_policy(policy):
        return _imagery_sources(bundle)


def _imagery_sources(bundle: AnswerBundle) -> list[ImagerySource]:
    scene_evs = [ev for ev in bundle.evidence if ev.kind == "scene"]
    by_item = {ev.provenance.scene.stac_item_id: ev for ev in scene_evs if ev.provenance.scene}
    analysed: list[ImagerySource] = []
    for ev in bundle.evidence:
        scene = ev.provenance.scene
        if ev.kind == "scene" or scene is None:
            continue
        # The scene's own evidence names it best; the mask's copy is the fallback.
        match = by_item.get(scene.stac_item_id)
        owners = [(match.provenance.scene, match)] if match and match.provenance.scene else []
        for own_scene, owner in [*owners, (scene, ev)]:
            src = _safe_source(own_scene, owner)
            if src is not None:
                analysed.append(src)
                break
    if analysed:
        ordered = _unique(analysed)
        ordered.sort(key=lambda s: (s.datetime is not None, s.datetime or ""))
        return ordered[-MAX_SOURCES:]
    found = [
        src
        for src in (
            _safe_source(ev.provenance.scene, ev) for ev in scene_evs if ev.provenance.scene
        )
        if src is not None
    ]
    return list(reversed(_unique(found)[:MAX_SOURCES]))


def _unique(sources: list[ImagerySource]) -> list[ImagerySource]:
    seen: set[tuple[tuple[str, int], ...]] = set()
    out = []
    for src in sources:
        if src.key() not in seen:
            seen.add(src.key())
            out.append(src)
    return out


def _safe_source(scene: SceneSource | None, ev: Evidence) -> ImagerySource | None:
    if scene is None:
        return None
    try:
        return ImagerySource.from_scene(scene, ev)
    except Exception as exc:  # an unreadable href: the map goes on without it
        log.warning("imagery of %s cannot be opened: %s", ev.id, exc)
        return None


_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".vrt", ".png", ".jpg", ".jpeg")


def _probe_files(hrefs: list[str]) -> list[BandRef] | None:
    """Bands of the first file with red, green and blue; else band 1 of the first image."""
    grey: list[BandRef] | None = None
    for href in dict.fromkeys(hrefs):
        name = Path(href.split("?")[0]).name.lower()
        if "." in name and not name.endswith(_RASTER_SUFFIXES):
            continue  # an item JSON or a web page, not pixels
        try:
            channels = ImagerySource.from_href(href).channels
        except Exception as exc:
            log.info("not an image %s: %s", href, exc)
            continue
        if len(channels) == 3:
            return channels
        grey = grey or channels
    return grey


def _scene_attribution(scene: SceneSource, ev: Evidence) -> str:
    own = ev.provenance.attribution if ev.kind == "scene" else None
    for value in (own, ev.facts.get("attribution")):
        if value:
            return f"Imagery: {value}"
    what = scene.collection or scene.platform or ev.facts.get("collection") or "scene"
    lic = scene.license or ev.provenance.license or ev.facts.get("license")
    return f"Imagery: {what}" + (f" ({lic})" if lic and lic != "unknown" else "")


@dataclass
class Quicklook:
    """A stretched RGB composite on the map grid; NaN where no image covers the map."""

    rgb: np.ndarray  # (rows, cols, 3) float32 in [0, 1]
    extent: tuple[float, float, float, float]  # xmin, xmax, ymin, ymax in map units
    used: list[ImagerySource] = field(default_factory=list)
    mean_colours: list[tuple[float, float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def compose_quicklook(
    sources: Sequence[ImagerySource],
    bounds: tuple[float, float, float, float],
    crs: CRS | str,
    max_px: int = 1500,
    time_budget_s: float = 20.0,
    *,
    policy: AccessPolicy | None = None,
) -> Quicklook:
    """Warp the sources onto one grid over ``bounds`` (xmin, ymin, xmax, ymax in ``crs``).

    Each source is read through a window covering the map, decimated to about the map's
    resolution (overviews are used when the file has them), then reprojected; memory stays
    bounded by ``max_px`` whatever the size of the scene. Each source gets its own 2-98
    percentile stretch, the same for its three bands so that colours keep their balance.
    """
    from rasterio.transform import from_origin

    xmin, ymin, xmax, ymax = bounds
    res = max(xmax - xmin, ymax - ymin) / max(16, max_px)
    cols = max(1, math.ceil((xmax - xmin) / res))
    rows = max(1, math.ceil((ymax - ymin) / res))
    transform = from_origin(xmin, ymax, res, res)
    dst_crs = CRS.from_user_input(crs)
    canvas = np.full((rows, cols, 3), np.nan, dtype=np.float32)
    look = Quicklook(rgb=canvas, extent=(xmin, xmin + cols * res, ymax - rows * res, ymax))
    start = time.perf_counter()
    for src in list(sources)[:MAX_SOURCES]:
        name = f"{src.evidence_id} " if src.evidence_id else ""
        if time.perf_counter() - start > time_budget_s:
            look.notes.append(f"Imagery {name}not drawn: the time budget for the map was spent.")
            continue
        try:
            with using_policy(policy):
                layer = _warp_source(src, dst_crs, transform, cols, rows)
        except Exception as exc:  # unreadable file, no georeference, network: say so, go on
            log.warning("cannot draw imagery %s: %s", src.label, exc)
            look.notes.append(f"Imagery {name}could not be read, so it is not drawn.")
            continue
        if layer is None:
            look.notes.append(f"Imagery {name}does not cover the map area.")
            continue
        stretched = _stretch(layer)
        valid = ~np.isnan(stretched).any(axis=2)
        if not valid.any():
            look.notes.append(f"Imagery {name}has no valid pixels in the map area.")
            continue
        canvas[valid] = stretched[valid]
        look.used.append(src)
        mean = stretched[valid].mean(axis=0)
        look.mean_colours.append((float(mean[0]), float(mean[1]), float(mean[2])))
    return look


def _warp_source(
    src: ImagerySource, dst_crs: CRS, dst_transform: Any, cols: int, rows: int
) -> np.ndarray | None:
    """(rows, cols, 3) float32 of raw values on the map grid, NaN outside; None if disjoint.

    Each file is opened through the access policy in use and read by the tools' raster
    access (:func:`tools.raster.read_for_display`: the covered window only, at map size).
    """
    out = np.full((3, rows, cols), np.nan, dtype=np.float32)
    groups: dict[str, list[tuple[int, int]]] = {}  # href -> [(channel, band)]
    for ch, ref in enumerate(src.channels):
        groups.setdefault(ref.href, []).append((ch, ref.band))
    touched = False
    for href, pairs in groups.items():
        with _open_raster(href) as ds:
            planes = read_for_display(ds, [b for _, b in pairs], dst_crs, dst_transform, cols, rows)
        if planes is None:
            continue
        for (ch, _), plane in zip(pairs, planes, strict=True):
            out[ch] = plane
        touched = True
    if not touched:
        return None
    if len(src.channels) == 1:
        out[1] = out[0]
        out[2] = out[0]
    return np.moveaxis(out, 0, -1)


def _stretch(layer: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """One 2-98 percentile stretch for the three bands together, into [0, 1]."""
    valid = ~np.isnan(layer).any(axis=2)
    vals = layer[valid]
    if vals.size == 0:
        return layer
    step = max(1, len(vals) // 200_000)  # a sample is enough for percentiles
    lo, hi = np.percentile(vals[::step], [low, high])
    if not hi > lo:
        hi = lo + 1.0
    out = np.clip((layer - lo) / (hi - lo), 0.0, 1.0)
    out[~valid] = np.nan
    return out.astype(np.float32)


def source_lonlat_bounds(src: ImagerySource) -> tuple[float, float, float, float] | None:
    """The lon/lat bounds of a source's first file (opened under the access policy in use);
    None when it cannot be read or has no georeference."""
    from rasterio.warp import transform_bounds

    try:
        with _open_raster(src.channels[0].href) as ds:
            if ds.crs is None:
                return None
            b = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
            return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
    except Exception as exc:
        log.warning("cannot open %s: %s", src.label, exc)
        return None
