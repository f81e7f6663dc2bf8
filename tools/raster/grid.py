"""Pixel grids and CRS geometry: ground metres per CRS unit, north-up grids, reprojection.

Metric projected CRSs (UTM and the like) are taken at face value; geographic and Mercator
CRSs are measured on the WGS84 ellipsoid, since there a CRS unit is not a ground distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from rasterio.crs import CRS
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

_GEOD = Geod(ellps="WGS84")
WGS84 = CRS.from_epsg(4326)

Bounds = tuple[float, float, float, float]  # left, bottom, right, top


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
