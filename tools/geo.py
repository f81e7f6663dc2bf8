"""Liberal-in, strict-out geographic argument types shared by the tools.

Language models and people write bboxes as lists, strings or GeoJSON, and dates as "2020",
"summer 2019" or ranges. Everything is normalised here, once, in pydantic validators.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from functools import lru_cache
from typing import Any

import shapely
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pyproj import CRS, Geod
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from shapely.validation import make_valid

_GEOD = Geod(ellps="WGS84")

BBox = tuple[float, float, float, float]


def parse_bbox(value: Any) -> BBox:
    """Normalise a bbox given as list/tuple, "w,s,e,n" string or {"bbox": [...]}."""
    if isinstance(value, dict) and "bbox" in value:
        value = value["bbox"]
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s,;]+", value.strip().strip("[]()")) if p]
        value = parts
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise ValueError("bbox must have four numbers: west, south, east, north")
    try:
        w, s, e, n = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError("bbox values must be numbers") from exc
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise ValueError("bbox values must be finite numbers")
    if not (-180 <= w <= 180 and -180 <= e <= 180):
        raise ValueError(f"longitude out of range [-180, 180] in bbox {[w, s, e, n]}")
    if not (-90 <= s <= 90 and -90 <= n <= 90):
        raise ValueError(f"latitude out of range [-90, 90] in bbox {[w, s, e, n]}")
    if s > n:
        raise ValueError(f"south ({s}) is north of north ({n}) in bbox")
    if w > e:
        # RFC 7946 allows antimeridian crossing, but we do not support it yet: say so.
        raise ValueError(
            f"west ({w}) is east of east ({e}); bboxes crossing the antimeridian are not supported"
        )
    if w == e or s == n:
        raise ValueError("bbox has zero width or height")
    return (w, s, e, n)


# Long edges are split to this many degrees before the geodesic area is taken, so that an
# edge along a parallel is measured along the parallel (a geodesic would cut across).
_AREA_STEP_DEG = 0.5
# Geometries wider than this are measured in slices: pyproj's polygon area is only right for
# rings that do not wrap around the globe.
_AREA_SLICE_DEG = 90.0


def bbox_area_km2(west: float, south: float, east: float, north: float) -> float:
    """Area on the WGS84 ellipsoid, in km2, of a lon/lat box.

    Edges follow meridians and parallels. ``west > east`` is a box crossing the antimeridian;
    -180..180 is the whole band of latitudes (the globe for -90..90, 510,065,622 km2).
    """
    width = east - west if east > west else east + 360.0 - west
    if west == -180.0 and east == 180.0:
        width = 360.0
    if width <= 0 or north <= south:
        return 0.0
    slices = max(1, math.ceil(width / _AREA_SLICE_DEG))
    total = 0.0
    for i in range(slices):
        a = west + width * i / slices
        b = west + width * (i + 1) / slices
        ring = shapely.segmentize(box(a, south, b, north), _AREA_STEP_DEG)
        area, _ = _GEOD.geometry_area_perimeter(ring)
        total += abs(area)
    return total / 1e6


def geodesic_area_km2(geom: BaseGeometry) -> float:
    """Area on the WGS84 ellipsoid, in km2, of a lon/lat geometry.

    Straight lon/lat edges are followed (long edges are densified first); geometries wider
    than 90 degrees are cut into slices, so that near-global shapes keep their true area.
    """
    if geom.is_empty:
        return 0.0
    w, s, e, n = geom.bounds
    if w < -180 or s < -90 or e > 180 or n > 90:
        geom = geom.intersection(box(-180.0, -90.0, 180.0, 90.0))
        if geom.is_empty:
            return 0.0
        w, s, e, n = geom.bounds
    if geom.geom_type == "Polygon" and geom.equals(box(w, s, e, n)):
        return bbox_area_km2(w, s, e, n)
    if e - w > _AREA_SLICE_DEG:
        slices = math.ceil((e - w) / _AREA_SLICE_DEG)
        step = (e - w) / slices
        return sum(
            geodesic_area_km2(geom.intersection(box(w + i * step, s, w + (i + 1) * step, n)))
            for i in range(slices)
        )
    if max(e - w, n - s) > _AREA_STEP_DEG:
        geom = shapely.segmentize(geom, _AREA_STEP_DEG)
    area, _ = _GEOD.geometry_area_perimeter(geom)
    return abs(area) / 1e6


def geodesic_length_km(geom: BaseGeometry) -> float:
    return float(_GEOD.geometry_length(geom)) / 1000.0


def polygonal(geom: BaseGeometry) -> BaseGeometry:
    """The polygon parts of a geometry (empty when it has none): what has an area."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


# Beyond the UTM latitudes: an equal-area world CRS (areas stay right, lengths roughly).
_POLAR_CRS = 6933


def utm_crs(geom: BaseGeometry) -> CRS:
    """The WGS 84 UTM zone holding a lon/lat geometry's centroid, from the PROJ database.

    On a zone edge the eastern zone wins and the equator counts as north, as in the plain
    6-degree grid (the PROJ database has no Norway/Svalbard exceptions, which change nothing
    measurable here). Beyond 80 S / 84 N, where UTM is not defined: EPSG:6933.
    """
    c = geom.centroid if not geom.is_empty else geom
    return CRS.from_epsg(_utm_epsg(round(float(c.x), 6), round(float(c.y), 6)))


@lru_cache(maxsize=256)
def _utm_epsg(lon: float, lat: float) -> int:
    # The PROJ database query costs ~60 ms; a question measures the same area many times.
    found = query_utm_crs_info(
        datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat)
    )
    # Zones of the point's own hemisphere (both answer on the equator).
    south = lat < 0
    zones = [
        (z.area_of_use.west, z.code)
        for z in found
        if z.area_of_use is not None and z.name.endswith("S") == south
    ]
    if not zones:
        return _POLAR_CRS
    return int(max(zones)[1])


def to_rfc7946(geom: BaseGeometry) -> dict[str, Any]:
    """GeoJSON mapping with counter-clockwise exterior rings, valid geometry."""
    if not geom.is_valid:
        geom = make_valid(geom)
    if geom.geom_type == "Polygon":
        geom = orient(geom, sign=1.0)
    elif geom.geom_type == "MultiPolygon":
        from shapely.geometry import MultiPolygon

        geom = MultiPolygon([orient(p, sign=1.0) for p in geom.geoms])
    return dict(mapping(geom))


class AOI(BaseModel):
    """An area of interest in EPSG:4326. Accepts a bbox, a GeoJSON geometry or Feature."""

    model_config = ConfigDict(extra="ignore")

    bbox: BBox
    geometry: dict[str, Any] | None = None
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _liberal(cls, value: Any) -> Any:
        if isinstance(value, str | list | tuple):
            return {"bbox": parse_bbox(value)}
        if isinstance(value, dict):
            if value.get("type") == "Feature":
                value = {
                    "geometry": value.get("geometry"),
                    "name": (value.get("properties") or {}).get("name"),
                }
            elif value.get("type") in {"Polygon", "MultiPolygon", "Point"}:
                value = {"geometry": value}
            value = dict(value)
            geom = value.get("geometry")
            if geom and not value.get("bbox"):
                try:
                    value["bbox"] = shape(geom).bounds
                except Exception as exc:
                    raise ValueError(f"invalid GeoJSON geometry: {exc}") from exc
        return value

    @field_validator("bbox", mode="before")
    @classmethod
    def _bbox(cls, value: Any) -> BBox:
        return parse_bbox(value)

    @field_validator("geometry")
    @classmethod
    def _geometry(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        try:
            geom = shape(value)
        except Exception as exc:
            raise ValueError(f"invalid GeoJSON geometry: {exc}") from exc
        if geom.is_empty:
            raise ValueError("empty geometry")
        w, s, e, n = geom.bounds
        parse_bbox([w, s, e, n] if (w < e and s < n) else [w - 1e-9, s - 1e-9, e + 1e-9, n + 1e-9])
        if geom.geom_type == "Point":
            return None  # a point alone says nothing more than its bbox
        return to_rfc7946(geom)

    def shape(self) -> BaseGeometry:
        return shape(self.geometry) if self.geometry else box(*self.bbox)

    def area_km2(self) -> float:
        """Geodesic area (km2): of the box when there is no geometry, else of the geometry."""
        if self.geometry is None:
            return bbox_area_km2(*self.bbox)
        return geodesic_area_km2(self.shape())

    @classmethod
    def around(cls, lon: float, lat: float, radius_km: float, name: str | None = None) -> AOI:
        """A lon/lat box of about ``radius_km`` on each side of a point."""
        dlat = radius_km / 111.32
        dlon = radius_km / (111.32 * max(math.cos(math.radians(lat)), 0.01))
        return cls(
            bbox=(
                max(lon - dlon, -180.0),
                max(lat - dlat, -90.0),
                min(lon + dlon, 180.0),
                min(lat + dlat, 90.0),
            ),
            name=name,
        )


_SEASONS = {
    "spring": (3, 5),
    "summer": (6, 8),
    "autumn": (9, 11),
    "fall": (9, 11),
    "winter": (12, 2),
}
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_MONTHS.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})


class DateRange(BaseModel):
    """A closed date interval; either end may be open (None)."""

    model_config = ConfigDict(extra="forbid")

    start: dt.date | None = None
    end: dt.date | None = None

    @model_validator(mode="before")
    @classmethod
    def _liberal(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_date_range(value).model_dump()
        if isinstance(value, dt.date):
            return {"start": value, "end": value}
        if isinstance(value, list | tuple) and len(value) == 2:
            start = (
                parse_date_range(str(value[0])).start if value[0] not in (None, "", "..") else None
            )
            end = parse_date_range(str(value[1])).end if value[1] not in (None, "", "..") else None
            return {"start": start, "end": end}
        return value

    @model_validator(mode="after")
    def _order(self) -> DateRange:
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"date range starts ({self.start}) after it ends ({self.end})")
        return self

    def to_stac(self) -> str:
        """RFC 3339 interval for STAC APIs."""
        s = f"{self.start.isoformat()}T00:00:00Z" if self.start else ".."
        e = f"{self.end.isoformat()}T23:59:59Z" if self.end else ".."
        return f"{s}/{e}"

    def label(self) -> str:
        if self.start and self.end and self.start == self.end:
            return self.start.isoformat()
        return f"{self.start or '...'} to {self.end or '...'}"


def _one_period(text: str) -> tuple[dt.date, dt.date]:
    """Parse one period ("2020", "2019-06", "2019-06-03", "May 2011", "summer 2019")."""
    t = text.strip().lower().replace(",", " ")
    t = re.sub(r"\s+", " ", t)
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:t.*)?", t)
    if m:
        d = dt.date(int(m[1]), int(m[2]), int(m[3]))
        return d, d
    m = re.fullmatch(r"(\d{4})-(\d{1,2})", t)
    if m:
        y, mo = int(m[1]), int(m[2])
        return dt.date(y, mo, 1), dt.date(y, mo, calendar.monthrange(y, mo)[1])
    m = re.fullmatch(r"(\d{4})", t)
    if m:
        y = int(m[1])
        return dt.date(y, 1, 1), dt.date(y, 12, 31)
    m = re.fullmatch(r"(?:(early|mid|late) )?([a-z]+) (\d{4})", t)
    if m and m[2] in _SEASONS:
        y = int(m[3])
        a, b = _SEASONS[m[2]]
        if a > b:  # winter spans the new year
            return dt.date(y, a, 1), dt.date(y + 1, b, calendar.monthrange(y + 1, b)[1])
        return dt.date(y, a, 1), dt.date(y, b, calendar.monthrange(y, b)[1])
    if m and m[2] in _MONTHS:
        y, mo = int(m[3]), _MONTHS[m[2]]
        return dt.date(y, mo, 1), dt.date(y, mo, calendar.monthrange(y, mo)[1])
    m = re.fullmatch(r"(\d{1,2}) ([a-z]+) (\d{4})", t) or re.fullmatch(
        r"([a-z]+) (\d{1,2}) (\d{4})", t
    )
    if m:
        first, second, year = m[1], m[2], int(m[3])
        day, mon = (first, second) if first.isdigit() else (second, first)
        if mon in _MONTHS:
            d = dt.date(year, _MONTHS[mon], int(day))
            return d, d
    raise ValueError(f"cannot read the date {text!r}; use forms like 2020, 2019-06, summer 2019")


def parse_date_range(text: str) -> DateRange:
    """Parse "2020", "summer 2019", "2019-06-01/2019-08-31", "2009 to 2020", "after May 2011"."""
    t = text.strip()
    if not t:
        raise ValueError("empty date")
    low = t.lower()
    m = re.fullmatch(r"(after|since|from) (.+)", low)
    if m:
        p0, p1 = _one_period(m[2])
        return DateRange(start=p1 + dt.timedelta(days=1) if m[1] == "after" else p0, end=None)
    m = re.fullmatch(r"(before|until) (.+)", low)
    if m:
        p0, p1 = _one_period(m[2])
        return DateRange(start=None, end=p0 - dt.timedelta(days=1) if m[1] == "before" else p1)
    for sep in ("/", " to ", " - ", "..", " until "):
        if sep in low and not re.fullmatch(r"\d{4}-\d{1,2}(-\d{1,2})?", low):
            a, b = low.split(sep, 1)
            start = _one_period(a)[0] if a.strip() not in ("", "..") else None
            end = _one_period(b)[1] if b.strip() not in ("", "..") else None
            return DateRange(start=start, end=end)
    start, end = _one_period(t)
    return DateRange(start=start, end=end)


class SceneAsset(BaseModel):
    """One file of a scene, with the common names of its bands in file order."""

    model_config = ConfigDict(extra="ignore")

    href: str
    bands: list[str] = Field(default_factory=list)
    gsd: float | None = None
    roles: list[str] = Field(default_factory=list)
    title: str | None = None


class SceneRef(BaseModel):
    """A STAC item reduced to what readers and provenance need. Output of stac_search."""

    model_config = ConfigDict(extra="ignore")

    id: str
    collection: str | None = None
    datetime: str | None = Field(default=None, description="ISO datetime, or None when unknown")
    gsd: float | None = None
    platform: str | None = None
    cloud_cover: float | None = None
    bbox: BBox
    geometry: dict[str, Any] | None = None
    assets: dict[str, SceneAsset] = Field(default_factory=dict)
    license: str | None = None
    self_href: str | None = None
    title: str | None = None
    product_level: str | None = Field(default=None, description="e.g. l1c, l2a, rgb")

    def band_asset(self, common_name: str) -> tuple[SceneAsset, int] | None:
        """The asset holding a band and the 1-based band index inside it; finest GSD first."""
        found: list[tuple[float, SceneAsset, int]] = []
        for asset in self.assets.values():
            if common_name in asset.bands:
                found.append((asset.gsd or 1e9, asset, asset.bands.index(common_name) + 1))
        if not found:
            return None
        found.sort(key=lambda t: t[0])
        return found[0][1], found[0][2]

    def available_bands(self) -> set[str]:
        return {b for a in self.assets.values() for b in a.bands}
