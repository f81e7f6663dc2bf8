"""Online geocoding with Nominatim (``ctx.nominatim_url``), giving the same :class:`Resolved`.

One search request (jsonv2, 5 results, polygons) with the deployment's user agent and HTTP
timeout; errors become coded tool errors (timeout, unreachable, HTTP 429 advice, unreadable
answer, not found, ambiguous when rivals of similar importance lie far apart). The place's
OpenStreetMap outline is kept (simplified to <= 500 vertices) when the scale is "auto".
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

import httpx
from pyproj import Geod
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from tools.base import (
    GeoScoutToolError,
    ToolContext,
)
from tools.geo import AOI, to_rfc7946
from tools.geocode.coordinates import parse_coordinates_strict
from tools.geocode.resolve import (
    MAX_CANDIDATES,
    MIN_RADIUS_KM,
    SCALE_FACTORS,
    Resolved,
    Scale,
    ambiguous_error,
    coordinates_aoi,
)

_GEOD = Geod(ellps="WGS84")

OSM_LICENSE = "ODbL-1.0; data © OpenStreetMap contributors"


def _simplify_to(geom: BaseGeometry, max_vertices: int = 500) -> BaseGeometry:
    """Simplify a polygon until it has at most max_vertices (keeps evidence small)."""

    def count(g: BaseGeometry) -> int:
        polys = getattr(g, "geoms", [g])
        return sum(len(p.exterior.coords) + sum(len(i.coords) for i in p.interiors) for p in polys)

    w, s, e, n = geom.bounds
    tol = max(e - w, n - s) / 2000.0
    out = geom
    while count(out) > max_vertices and tol < 10:
        out = geom.simplify(tol, preserve_topology=True)
        tol *= 2
    return out


_OSM_TYPE_RADIUS_KM = {"city": 10.0, "town": 5.0, "village": 2.0, "hamlet": 1.0, "suburb": 2.0}


def resolve_nominatim(text: str, scale: Scale, ctx: ToolContext) -> Resolved:
    coords = parse_coordinates_strict(text)
    if coords is not None:
        return coordinates_aoi(coords[0], coords[1], scale)
    url = ctx.nominatim_url.rstrip("/") + "/search"
    params: dict[str, str | int] = {
        "format": "jsonv2",
        "q": text,
        "limit": 5,
        "polygon_geojson": 1,
    }
    host = urlsplit(ctx.nominatim_url).netloc or ctx.nominatim_url
    try:
        resp = httpx.get(
            url,
            params=params,
            headers={"User-Agent": ctx.user_agent},
            timeout=ctx.limits.http_timeout_s,
        )
    except httpx.TimeoutException as exc:
        raise GeoScoutToolError(
            "timeout",
            f"The geocoding service at {host} did not answer in time.",
            hint="Try again later, or use the offline profile (GeoNames gazetteer).",
        ) from exc
    except httpx.HTTPError as exc:
        raise GeoScoutToolError(
            "service_unreachable",
            f"The geocoding service at {host} could not be reached.",
            hint="Check the network or GEOSCOUT_NOMINATIM_URL, or use the offline profile.",
        ) from exc
    if resp.status_code != 200:
        hint = (
            "Nominatim allows about one request per second; wait and try again."
            if resp.status_code == 429
            else "Try again later, or use the offline profile."
        )
        raise GeoScoutToolError(
            "service_unreachable",
            f"The geocoding service at {host} answered with HTTP {resp.status_code}.",
            hint=hint,
        )
    try:
        results = resp.json()
        if not isinstance(results, list):
            raise ValueError("not a list")
        parsed = [_nominatim_item(r) for r in results]
    except (ValueError, KeyError, TypeError) as exc:
        raise GeoScoutToolError(
            "bad_data",
            f"The geocoding service at {host} sent an answer that could not be read.",
            hint="Check that GEOSCOUT_NOMINATIM_URL points to a Nominatim server.",
        ) from exc
    if not parsed:
        raise GeoScoutToolError(
            "not_found",
            f"Nominatim found no place called “{text}”.",
            hint="Check the spelling, add the country, give coordinates or draw the area on the map.",
        )
    top = parsed[0]
    rivals = [
        p
        for p in parsed[1:]
        if p["importance"] >= 0.8 * top["importance"]
        and p["display_name"] != top["display_name"]
        and _km_between(p["lon"], p["lat"], top["lon"], top["lat"]) > 25.0
    ]
    if rivals:
        raise ambiguous_error(text, [p["display_name"] for p in [top, *rivals]][:MAX_CANDIDATES])
    return _nominatim_resolved(top, scale, host, len(parsed))


def _nominatim_item(r: dict[str, Any]) -> dict[str, Any]:
    s, n, w, e = (float(v) for v in r["boundingbox"])
    return {
        "lat": float(r["lat"]),
        "lon": float(r["lon"]),
        "importance": float(r.get("importance") or 0.0),
        "display_name": str(r.get("display_name") or r.get("name") or "")[:300],
        "name": str(r.get("name") or "")[:200],
        "bbox": (w, s, e, n),
        "geojson": r.get("geojson"),
        "osm_type": str(r.get("osm_type") or ""),
        "osm_id": r.get("osm_id"),
        "type": str(r.get("addresstype") or r.get("type") or ""),
        "licence": str(r.get("licence") or ""),
    }


def _km_between(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    _, _, dist = _GEOD.inv(lon1, lat1, lon2, lat2)
    return float(dist) / 1000.0


def _nominatim_resolved(item: dict[str, Any], scale: Scale, host: str, n_results: int) -> Resolved:
    lon, lat = item["lon"], item["lat"]
    w, s, e, n = item["bbox"]
    geom: BaseGeometry | None = None
    gj = item.get("geojson")
    if isinstance(gj, dict) and gj.get("type") in {"Polygon", "MultiPolygon"}:
        try:
            geom = _simplify_to(shape(gj))
        except Exception:  # an unreadable polygon: the bbox still works
            geom = None
    name = item["name"] or item["display_name"].split(",")[0]
    extent_km = math.sqrt(
        max(
            AOI(
                bbox=(w, s, e, n)
                if (w < e and s < n)
                else (lon - 1e-4, lat - 1e-4, lon + 1e-4, lat + 1e-4)
            ).area_km2(),
            0.0,
        )
    )
    method: str
    if geom is not None and scale == "auto":
        aoi = AOI.model_validate({"geometry": to_rfc7946(geom), "name": name})
        method = "the place's OpenStreetMap outline from Nominatim (simplified to <= 500 vertices)"
    elif extent_km >= 1.0:
        if scale == "auto":
            aoi = AOI(bbox=(w, s, e, n), name=name)
            method = "the bounding box Nominatim gives for the place"
        else:
            radius = max(MIN_RADIUS_KM, extent_km / 2 * SCALE_FACTORS[scale])
            aoi = AOI.around(lon, lat, radius, name=name)
            method = f"box of {radius:.1f} km around the Nominatim point ({scale} scale of the place's {extent_km:.1f} km extent)"
    else:
        base = _OSM_TYPE_RADIUS_KM.get(item["type"], 2.0)
        radius = max(MIN_RADIUS_KM, base * SCALE_FACTORS[scale])
        aoi = AOI.around(lon, lat, radius, name=name)
        method = f"box of {radius:g} km around the Nominatim point (OSM type {item['type'] or 'unknown'})"
    osm = {"osm_type": item["osm_type"], "osm_id": item["osm_id"], "type": item["type"]}
    caveats = []
    if n_results > 1:
        caveats.append(f"Nominatim returned {n_results} results; the most important one was used.")
    return Resolved(
        kind="osm",
        name=name,
        title=item["display_name"] or name,
        lon=lon,
        lat=lat,
        aoi=aoi,
        geometry=aoi.geometry,
        source=f"Nominatim ({host})",
        license=OSM_LICENSE,
        method=method,
        osm=osm,
        caveats=caveats,
    )
