"""Quicklooks: an 8-bit true-colour picture of a scene or file, in EPSG:4326, for maps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from affine import Affine
from numpy.typing import NDArray
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds

from tools.base import ToolContext
from tools.geo import AOI, SceneRef
from tools.raster.files import scene_from_raster
from tools.raster.grid import WGS84
from tools.raster.read import missing_bands_error, read_bands


class Quicklook(NamedTuple):
    rgb: NDArray[np.uint8]  # (rows, cols, 3), black where there is no data
    bounds: tuple[float, float, float, float]  # west, south, east, north
    crs: str  # always "EPSG:4326"


def _stretch(a: NDArray[np.float32], ok: NDArray[np.bool_]) -> NDArray[np.uint8]:
    if not ok.any():
        return np.zeros(a.shape, dtype=np.uint8)
    lo, hi = np.percentile(a[ok], [2, 98])
    span = float(hi - lo) or 1.0
    out = np.clip((np.nan_to_num(a) - lo) / span * 255.0, 0, 255).astype(np.uint8)
    out[~ok] = 0
    return out


def read_quicklook(
    scene_or_path: SceneRef | str | Path,
    bbox4326: Sequence[float] | None = None,
    max_size: int = 1024,
    ctx: ToolContext | None = None,
) -> Quicklook:
    """True-colour picture (2-98 % stretch; single band as grey) in EPSG:4326.

    Files are opened under the access policy of ``ctx`` (without one: the sample data
    only); nothing bypasses it.
    """
    context = ctx or ToolContext()
    if isinstance(scene_or_path, SceneRef):
        scene = scene_or_path
    else:
        scene, _ = scene_from_raster(scene_or_path, context)
    have = scene.available_bands()
    names = ["red", "green", "blue"] if {"red", "green", "blue"} <= have else None
    if names is None:
        single = next((b for b in ("pan", "nir", "red", "green", "blue") if b in have), None)
        if single is None:
            raise missing_bands_error(scene, ["red", "green", "blue"], "a quicklook")
        names = [single]
    aoi = AOI.model_validate({"bbox": list(bbox4326)}) if bbox4326 is not None else None
    stack = read_bands(scene, names, context, aoi=aoi, max_dim=max_size, purpose="a quicklook")
    ok = stack.valid
    layers = [_stretch(stack.bands[b], ok) for b in names]
    if len(layers) == 1:
        layers = layers * 3

    # Reproject to EPSG:4326 with about the same number of pixels.
    g = stack.grid
    w, s, e, n = transform_bounds(g.crs, WGS84, *g.bounds, densify_pts=21)
    ratio = (e - w) * math.cos(math.radians((s + n) / 2)) / max(n - s, 1e-12)
    cols = max(1, min(max_size, round(math.sqrt(g.width * g.height * ratio))))
    rows = max(1, min(max_size, round(cols / ratio)))
    dst_t = Affine((e - w) / cols, 0.0, w, 0.0, -(n - s) / rows, n)
    alpha = ok.astype(np.uint8) * 255
    out = np.zeros((4, rows, cols), dtype=np.uint8)
    for i, layer in enumerate([*layers, alpha]):
        reproject(
            layer,
            out[i],
            src_transform=g.transform,
            src_crs=g.crs,
            dst_transform=dst_t,
            dst_crs=WGS84,
            resampling=Resampling.bilinear if i < 3 else Resampling.nearest,
        )
    rgb = np.moveaxis(out[:3], 0, -1).copy()
    rgb[out[3] == 0] = 0
    return Quicklook(rgb, (w, s, e, n), "EPSG:4326")
