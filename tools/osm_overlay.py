"""osm_overlay: OpenStreetMap features in an area, related to another step's layer.

One code path for both profiles; only the source differs:

* offline: OSM XML extracts (``*.osm``, ``*.osm.bz2``, ``*.osm.xml``) read with osmnx, and
  vector files (GeoJSON / GeoPackage) that hold OSM-style tags or clearly building or road
  layers (Microsoft footprints, SpaceNet labels), all found under ``ctx.data_dirs``;
* online: Overpass through osmnx (cached under ``ctx.cache_dir``).

The query area is aoi ∩ relate_to (or the one given; for within_distance, the buffer around
relate_to). Counts are of features meeting the predicate; lengths and areas are measured in
the local UTM zone on the features clipped to the part of the query area that a source
actually covers, and that coverage is always reported: a small extract must never pass for
a whole city. Tag text (names, ...) is untrusted data: it is carried as layer properties only
and never reaches titles, summaries or facts.

Road definition (documented so answers are reproducible): ``road_length_km`` counts the
streets a car may use, the highway classes in :data:`DRIVABLE_HIGHWAYS` (osmnx's "drive"
network classes: motorway .. residential, their links, living streets); service roads,
tracks, footways, paths, cycleways, pedestrian streets and steps are excluded there and are
included in ``all_highway_length_km``. Each OSM way is measured once, so a two-way street
counts once (OSM maps it as one way; no directed graph is involved).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import math
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Annotated, Any, Literal, cast

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from pyproj import CRS
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import make_valid

from tools import access
from tools.access import AccessPolicy
from tools.base import (
    EvidenceDraft,
    GeoScoutToolError,
    Quantity,
    ToolContext,
    ToolResult,
    ToolSpec,
)
from tools.geo import AOI, geodesic_area_km2, parse_bbox, to_rfc7946

log = logging.getLogger(__name__)

TOOL_NAME = "osm_overlay"
OSM_ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0"
OSM_LICENSE = "ODbL-1.0 (OpenStreetMap contributors)"

# Streets for motor vehicles (osmnx "drive" classes). Everything else with a highway tag
# (service, track, footway, path, cycleway, pedestrian, steps, ...) only enters
# all_highway_length_km.
DRIVABLE_HIGHWAYS: frozenset[str] = frozenset(
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

# OSM keys that make a vector file an OSM-style source for generic tag queries.
_OSM_KEYS = frozenset(
    [
        "building",
        "highway",
        "natural",
        "waterway",
        "water",
        "landuse",
        "amenity",
        "leisure",
        "shop",
        "railway",
        "man_made",
        "tourism",
        "office",
        "power",
        "aeroway",
        "barrier",
        "place",
        "boundary",
        "historic",
        "military",
        "public_transport",
        "healthcare",
        "sport",
        "craft",
        "emergency",
    ]
)
_ID_COLUMNS = ("osm_id", "osmid", "@id")
_DATE_COLUMNS = ("capture_dates_range", "capture_date", "timestamp", "osm_timestamp", "date")
_OSM_XML_SUFFIXES = (".osm", ".osm.bz2", ".osm.xml", ".osm.gz", ".osm.xml.bz2")
_VECTOR_SUFFIXES = (".geojson", ".gpkg")
_MAX_QUERIES = 5
_MAX_DISTANCE_M = 50_000.0
_SIMPLIFY_DEG = 5e-6  # about 0.5 m: invisible on a map, shrinks traced outlines
_SIMPLIFY_MIN_VERTICES = 100
_INDEX_VERSION = 4
_OVERPASS_LOCK = threading.Lock()  # osmnx settings are process-global
_INDEX_LOCK = threading.Lock()

TagValue = bool | str | list[str]
Predicate = Literal["intersects", "within", "within_distance"]

# ---------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------

_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_:\-]{0,63}$")
_VALUE_RE = re.compile(r"^[^\x00-\x1f\"\\]{1,128}$")

_ALIASES: dict[str, tuple[str, str, dict[str, TagValue]]] = {}


def _alias(words: tuple[str, ...], label: str, kind: str, tags: dict[str, TagValue]) -> None:
    for w in words:
        _ALIASES[w] = (label, kind, tags)


_alias(
    ("building", "buildings", "house", "houses", "footprints", "building footprints"),
    "buildings",
    "buildings",
    {"building": True},
)
_alias(
    (
        "road",
        "roads",
        "street",
        "streets",
        "highway",
        "highways",
        "road network",
        "streets network",
    ),
    "roads",
    "roads",
    {"highway": True},
)
_alias(
    ("water", "waterbodies", "water bodies", "waterways"),
    "water",
    "tags",
    {"natural": "water", "waterway": True},
)
_alias(("landuse", "land use", "land_use"), "landuse", "tags", {"landuse": True})
_alias(("schools", "school"), "amenity=school", "tags", {"amenity": "school"})
_alias(("hospitals", "hospital"), "amenity=hospital", "tags", {"amenity": "hospital"})
_alias(("parks", "park"), "leisure=park", "tags", {"leisure": "park"})
_alias(("parking", "car parks"), "amenity=parking", "tags", {"amenity": "parking"})
_alias(("railways", "railway", "rail"), "railway=rail", "tags", {"railway": "rail"})


class FeatureQuery(BaseModel):
    """One normalised feature request: a label used in keys and text, a kind, OSM tags."""

    model_config = ConfigDict(extra="forbid")

    label: str
    kind: Literal["buildings", "roads", "tags"]
    tags: dict[str, TagValue]


def _check_key(key: str) -> str:
    key = key.strip()
    if not _KEY_RE.match(key):
        raise ValueError(f"{key!r} is not an OSM tag key (letters, digits, '_', ':', '-')")
    return key


def _check_value(value: str) -> str:
    value = value.strip()
    if not _VALUE_RE.match(value):
        raise ValueError(f"{value!r} is not a usable OSM tag value")
    return value


def _tags_label(tags: dict[str, TagValue]) -> str:
    parts = []
    for k, v in tags.items():
        if v is True:
            parts.append(k)
        elif isinstance(v, list):
            parts.append(f"{k}={'|'.join(v)}")
        else:
            parts.append(f"{k}={v}")
    return ",".join(parts)


def _query_from_tags(tags: dict[str, TagValue]) -> FeatureQuery:
    if list(tags) == ["building"] and tags["building"] is True:
        return FeatureQuery(label="buildings", kind="buildings", tags=tags)
    if list(tags) == ["highway"] and tags["highway"] is True:
        return FeatureQuery(label="roads", kind="roads", tags=tags)
    return FeatureQuery(label=_tags_label(tags), kind="tags", tags=tags)


def _parse_tag_dict(raw: dict[str, Any]) -> dict[str, TagValue]:
    tags: dict[str, TagValue] = {}
    for k, v in raw.items():
        key = _check_key(str(k))
        if v is True or v is None or (isinstance(v, str) and v.strip() in ("", "*", "yes|*")):
            tags[key] = True
        elif isinstance(v, str):
            vals = [_check_value(x) for x in re.split(r"[;|,]", v) if x.strip()]
            tags[key] = vals[0] if len(vals) == 1 else vals
        elif isinstance(v, list | tuple) and v and all(isinstance(x, str) for x in v):
            tags[key] = [_check_value(x) for x in v]
        else:
            raise ValueError(f"tag {key!r}: value must be true, a string or a list of strings")
    if not tags:
        raise ValueError("empty tag filter")
    return tags


def parse_features(value: Any) -> list[FeatureQuery]:
    """Normalise the loose ``features`` argument into at most five feature queries."""
    items = value if isinstance(value, list | tuple) else [value]
    queries: list[FeatureQuery] = []
    for item in items:
        if isinstance(item, FeatureQuery):
            q = item
        elif isinstance(item, dict) and {"label", "kind", "tags"} <= set(item):
            q = FeatureQuery.model_validate(item)
        elif isinstance(item, dict):
            q = _query_from_tags(_parse_tag_dict(item))
        elif isinstance(item, str):
            text = item.strip()
            word = re.sub(r"\s+", " ", text.lower())
            if word in _ALIASES:
                label, kind, tags = _ALIASES[word]
                q = FeatureQuery.model_validate({"label": label, "kind": kind, "tags": tags})
            elif "=" in text:
                k, v = text.split("=", 1)
                q = _query_from_tags(_parse_tag_dict({k: v}))
            elif word in _OSM_KEYS:  # a bare, well-known key: every feature carrying it
                q = _query_from_tags({word: True})
            else:
                raise ValueError(
                    f"unknown feature type {text!r}; use buildings, roads, water, landuse, "
                    "a tag such as 'amenity=school', or {'amenity': 'school'}"
                )
        else:
            raise ValueError("features must be a word, a 'key=value' tag, a tag dict or a list")
        if all(q.label != seen.label for seen in queries):
            queries.append(q)
    if not queries:
        raise ValueError("features is empty; say what to look for (e.g. buildings, roads)")
    if len(queries) > _MAX_QUERIES:
        raise ValueError(f"at most {_MAX_QUERIES} feature types per call")
    return queries


_GEOMETRY_TYPES = {
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
}


def relate_geometry(value: Any) -> BaseGeometry:
    """A lon/lat shapely geometry from a GeoJSON geometry, Feature, FeatureCollection, AOI
    or scene dict (unioned when there are several parts)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(
                "relate_to must be GeoJSON (a geometry, Feature or FeatureCollection)"
            ) from exc
    if not isinstance(value, dict):
        raise ValueError("relate_to must be GeoJSON (a geometry, Feature or FeatureCollection)")
    kind = value.get("type")
    raw: list[Any] = []
    if kind == "FeatureCollection":
        raw = [f.get("geometry") for f in value.get("features") or [] if isinstance(f, dict)]
    elif kind == "Feature":
        raw = [value.get("geometry")]
    elif kind in _GEOMETRY_TYPES:
        raw = [value]
    elif value.get("geometry"):
        raw = [value["geometry"]]  # an AOI or a scene: its footprint
    elif value.get("bbox") is not None:
        raw = [mapping(box(*parse_bbox(value["bbox"])))]
    else:
        raise ValueError("relate_to has no geometry")
    geoms: list[BaseGeometry] = []
    for g in raw:
        if not g:
            continue
        try:
            geom = shape(g)
        except Exception as exc:
            raise ValueError(f"relate_to holds an invalid GeoJSON geometry: {exc}") from exc
        if not geom.is_valid:
            geom = make_valid(geom)
        if not geom.is_empty:
            geoms.append(geom)
    if not geoms:
        raise ValueError("relate_to is empty")
    merged = shapely.union_all(geoms) if len(geoms) > 1 else geoms[0]
    w, s, e, n = merged.bounds
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise ValueError("relate_to must be in lon/lat degrees (EPSG:4326)")
    return merged


def _geometry_json(geom: BaseGeometry) -> dict[str, Any]:
    if geom.geom_type == "GeometryCollection":
        return {
            "type": "GeometryCollection",
            "geometries": [to_rfc7946(g) for g in shapely.get_parts(geom)],
        }
    return to_rfc7946(geom)


_PREDICATE_ALIASES: dict[str, Predicate] = {
    "intersects": "intersects",
    "intersect": "intersects",
    "overlaps": "intersects",
    "touching": "intersects",
    "in": "intersects",
    "within": "within",
    "inside": "within",
    "contained": "within",
    "contained_in": "within",
    "within_distance": "within_distance",
    "dwithin": "within_distance",
    "distance": "within_distance",
    "near": "within_distance",
    "nearby": "within_distance",
    "close_to": "within_distance",
}


_ONE_FEATURE: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "examples": ["buildings", "roads", "water", "amenity=school"]},
        {"type": "object", "additionalProperties": {"type": ["string", "boolean"]}},
    ]
}
_FEATURES_SCHEMA: dict[str, Any] = {
    "anyOf": [_ONE_FEATURE, {"type": "array", "items": _ONE_FEATURE, "maxItems": _MAX_QUERIES}]
}


class OsmOverlayArgs(BaseModel):
    """Arguments of osm_overlay; loose input is normalised here, once."""

    model_config = ConfigDict(extra="ignore")

    aoi: AOI | None = Field(default=None, description="Area to look in (bbox, GeoJSON or AOI)")
    # The schema shows the loose forms a planner should write, not the normalised model.
    features: Annotated[list[FeatureQuery], WithJsonSchema(_FEATURES_SCHEMA)] = Field(
        description="buildings, roads, water, landuse, 'key=value' tags, tag dicts, or a list"
    )
    relate_to: dict[str, Any] | None = Field(
        default=None,
        description="GeoJSON (EPSG:4326) of another layer, e.g. a scene footprint or a mask",
    )
    predicate: Predicate = "intersects"
    distance_m: float | None = Field(default=None, description="metres, for within_distance")
    relate_label: str | None = Field(default=None, description="what relate_to is, for the text")

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: Any) -> list[FeatureQuery]:
        return parse_features(value)

    @field_validator("relate_to", mode="before")
    @classmethod
    def _relate(cls, value: Any) -> dict[str, Any] | None:
        if value is None or value == {}:
            return None
        return _geometry_json(relate_geometry(value))

    @field_validator("predicate", mode="before")
    @classmethod
    def _predicate(cls, value: Any) -> Any:
        if isinstance(value, str):
            key = re.sub(r"[\s\-]+", "_", value.strip().lower())
            if key in _PREDICATE_ALIASES:
                return _PREDICATE_ALIASES[key]
        return value

    @field_validator("relate_label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = re.sub(r"[\x00-\x1f<>`*_#\[\]{}|\\]", " ", value)
        text = re.sub(r"\s+", " ", text).strip()[:80]
        return text or None

    @model_validator(mode="after")
    def _consistent(self) -> OsmOverlayArgs:
        if self.aoi is None and self.relate_to is None:
            raise ValueError("give an area (aoi) or a layer to relate to (relate_to), or both")
        if self.distance_m is not None and "predicate" not in self.model_fields_set:
            self.predicate = "within_distance"  # a distance alone means "within that distance"
        if self.predicate == "within_distance":
            if self.distance_m is None:
                raise ValueError("predicate within_distance needs distance_m (metres)")
            if not (0 < self.distance_m <= _MAX_DISTANCE_M) or not math.isfinite(self.distance_m):
                raise ValueError(f"distance_m must be > 0 and at most {_MAX_DISTANCE_M:.0f} m")
        elif self.distance_m is not None:
            raise ValueError("distance_m only applies to predicate within_distance")
        return self


# ---------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where features come from: a local file or the Overpass server."""

    name: str  # display name: path relative to its data folder, or the server URL
    fmt: Literal["osm_xml", "vector", "overpass"]
    extent: BaseGeometry  # EPSG:4326; where the source claims complete data
    path: Path | None = None
    timestamp: str | None = None
    license: str = OSM_LICENSE
    attribution: str = OSM_ATTRIBUTION
    tag_keys: frozenset[str] = frozenset()  # vector files: tag columns holding values
    building_layer: bool = False  # vector files: every feature is a building
    road_layer: bool = False  # vector files: every feature is a road
    has_osm_ids: bool = False

    @property
    def priority(self) -> int:
        """Lower wins where sources overlap, so no feature is counted twice."""
        if self.fmt != "vector":
            return 0
        return 1 if self.has_osm_ids else 2

    def answers(self, query: FeatureQuery) -> bool:
        if self.fmt != "vector":
            return True
        if query.kind == "buildings":
            return self.building_layer or "building" in self.tag_keys
        if query.kind == "roads":
            return self.road_layer or "highway" in self.tag_keys
        return any(k in self.tag_keys for k in query.tags)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "format": self.fmt,
            "timestamp": self.timestamp or "unknown",
            "license": self.license,
            "attribution": self.attribution,
            "extent_bbox": [round(v, 6) for v in self.extent.bounds],
        }
        if self.path is not None:
            d["path"] = str(self.path)
        return d


def scan_osm_xml(path: Path, policy: AccessPolicy | None = None) -> dict[str, Any]:
    """Extent (the <bounds> element, else the node extent) and timestamps of an OSM XML file,
    in one streaming pass, read through the access policy (inside the folders, decompressed
    size within the budget: a bz2 bomb stops at the budget, it does not fill the memory)."""
    policy = policy or AccessPolicy.build(data_dirs=[path.parent])
    bounds: list[float] | None = None
    root_ts: str | None = None
    generator: str | None = None
    max_ts = ""
    lon_min = lat_min = math.inf
    lon_max = lat_max = -math.inf
    n_nodes = n_elements = 0
    with policy.open_binary(path) as fh:
        context = ET.iterparse(cast(IO[bytes], fh), events=("start", "end"))
        root: ET.Element | None = None
        for event, elem in context:
            if event == "start":
                if root is None:
                    root = elem
                    generator = elem.get("generator")
                    root_ts = elem.get("timestamp")
                elif elem.tag == "bounds" and bounds is None:
                    try:
                        bounds = [
                            float(elem.get(k, "nan"))
                            for k in ("minlon", "minlat", "maxlon", "maxlat")
                        ]
                    except ValueError:
                        bounds = None
                continue
            if elem.tag in ("node", "way", "relation"):
                ts = elem.get("timestamp")
                if ts and ts > max_ts:
                    max_ts = ts
                if elem.tag == "node":
                    try:
                        lon, lat = float(elem.get("lon", "nan")), float(elem.get("lat", "nan"))
                    except ValueError:
                        lon = lat = math.nan
                    if math.isfinite(lon) and math.isfinite(lat):
                        n_nodes += 1
                        lon_min, lon_max = min(lon_min, lon), max(lon_max, lon)
                        lat_min, lat_max = min(lat_min, lat), max(lat_max, lat)
                elem.clear()
                n_elements += 1
                if root is not None and n_elements % 10_000 == 0:
                    root.clear()  # keep memory flat on large extracts
        size = int(getattr(fh, "consumed", 0))
    if bounds is None or not all(math.isfinite(v) for v in bounds):
        bounds = [lon_min, lat_min, lon_max, lat_max] if n_nodes else None
    return {
        "bounds": bounds,
        "timestamp": max_ts or root_ts or None,
        "timestamp_kind": "latest element edit" if max_ts else ("file" if root_ts else None),
        "generator": generator,
        "nodes": n_nodes,
        "bytes": size,
    }


_VECTOR_MAGIC = {".gpkg": (b"SQLite format 3\x00",), ".geojson": (b"{",)}


def check_vector_file(path: Path, policy: AccessPolicy) -> Path:
    """A vector file GDAL may open: inside the folders, and its first bytes those of its
    format. GDAL picks its driver from the content, so a ``.geojson`` that is really an OGR
    VRT (which can read any file or URL) must be refused before GDAL sees it."""
    real = policy.local_path(path)
    suffix = next((s for s in _VECTOR_MAGIC if real.name.lower().endswith(s)), None)
    try:
        with real.open("rb") as fh:
            head = fh.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as exc:
        raise GeoScoutToolError("bad_data", f"the file {real.name!r} cannot be read") from exc
    if suffix is None or not head.startswith(_VECTOR_MAGIC[suffix]):
        raise GeoScoutToolError(
            "bad_data",
            f"the file {real.name!r} is not the GeoJSON or GeoPackage its name says",
            "re-export it as GeoJSON or GeoPackage, or remove it from the data folder",
        )
    return real


def scan_vector(path: Path, policy: AccessPolicy | None = None) -> dict[str, Any]:
    """Extent, tag columns that hold values, and whether a vector file is an OSM-style or a
    building / road layer."""
    import pyogrio

    path = check_vector_file(path, policy or AccessPolicy.build(data_dirs=[path.parent]))

    info = pyogrio.read_info(path)
    fields = [str(f) for f in info.get("fields", [])]
    crs = info.get("crs") or "EPSG:4326"
    total = info.get("total_bounds")
    if total is None or not all(np.isfinite(total)):
        return {"bounds": None}
    from pyproj import Transformer

    w, s, e, n = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform_bounds(*total)
    candidates = [f for f in fields if f in _OSM_KEYS]
    date_cols = [f for f in fields if f.lower() in _DATE_COLUMNS]
    tag_keys: list[str] = []
    timestamp = None
    if candidates or date_cols:
        frame = pyogrio.read_dataframe(path, columns=candidates + date_cols, read_geometry=False)
        for col in candidates:
            values = frame[col].dropna().astype(str).str.strip()
            if ((values != "") & (values.str.lower() != "no")).any():
                tag_keys.append(col)
        if date_cols:
            # Footprint layers say when their imagery was captured: worth stating, since
            # e.g. 2020 footprints describe a town after, not before, a 2011 disaster.
            dates = sorted({str(v) for v in frame[date_cols[0]].dropna() if str(v).strip()})
            if dates:
                shown = ", ".join(dates[:3]) + (
                    f" (+{len(dates) - 3} more)" if len(dates) > 3 else ""
                )
                timestamp = f"{date_cols[0]}: {shown}"
    gtype = str(info.get("geometry_type") or "")
    stem = path.name.lower()
    building_layer = "building" in tag_keys or (
        ("building" in stem or "footprint" in stem) and "Polygon" in gtype
    )
    road_layer = "highway" in tag_keys or (
        ("road" in stem or "street" in stem) and "LineString" in gtype
    )
    return {
        "bounds": [w, s, e, n],
        "tag_keys": sorted(tag_keys),
        "has_osm_ids": any(c in fields for c in _ID_COLUMNS),
        "building_layer": building_layer,
        "road_layer": road_layer,
        "geometry_type": gtype,
        "features": int(info.get("features") or 0),
        "crs": str(crs),
        "timestamp": timestamp,
    }


def _iter_candidate_files(
    data_dirs: tuple[Path, ...], policy: AccessPolicy | None = None
) -> Iterator[tuple[Path, Path, str]]:
    """(file, its data folder, format) for every OSM XML or vector file under the folders;
    a link that leads out of the folders is skipped (its target is never read)."""
    policy = policy or AccessPolicy.build(data_dirs=data_dirs)
    seen: set[Path] = set()
    for root in data_dirs:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(filenames):
                low = fname.lower()
                fmt = (
                    "osm_xml"
                    if low.endswith(_OSM_XML_SUFFIXES)
                    else "vector"
                    if low.endswith(_VECTOR_SUFFIXES)
                    else None
                )
                if fmt is None:
                    continue
                path = Path(dirpath) / fname
                try:
                    real = path.resolve()
                except (OSError, RuntimeError):
                    continue
                if not policy.is_inside(real):
                    log.warning("osm_overlay: %s links outside the data folders; skipped", path)
                    continue
                if real in seen:
                    continue
                seen.add(real)
                yield path, root, fmt


def _index_path(ctx: ToolContext) -> Path:
    return Path(ctx.cache_dir) / "osm_overlay" / "sources.json"


def _load_index(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        if data.get("version") == _INDEX_VERSION and isinstance(data.get("files"), dict):
            return dict(data["files"])
    except (OSError, ValueError):
        pass
    return {}


def _save_index(path: Path, files: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"version": _INDEX_VERSION, "files": files}))
        tmp.replace(path)
    except OSError as exc:  # a read-only cache only costs speed
        log.info("osm_overlay: cannot write the source index %s: %s", path, exc)


@lru_cache(maxsize=16)
def _manifest(path: Path, mtime_ns: int) -> dict[str, str]:
    """MANIFEST.tsv of a data folder: relative file path -> license and provenance."""
    out: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            name = (row.get("file") or "").strip()
            lic = (row.get("license_and_provenance") or row.get("license") or "").strip()
            if name and lic:
                out[name] = lic
    return out


def _license_for(path: Path, policy: AccessPolicy | None = None) -> str | None:
    for parent in list(path.parents)[:4]:
        if policy is not None and not policy.is_inside(parent.resolve()):
            break  # a MANIFEST above the data folders is not the data's
        manifest = parent / "MANIFEST.tsv"
        if manifest.is_file():
            try:
                table = _manifest(manifest, manifest.stat().st_mtime_ns)
            except (OSError, csv.Error, UnicodeDecodeError):
                return None
            return table.get(path.relative_to(parent).as_posix())
    return None


def _attribution(fmt: str, license_text: str, has_osm_ids: bool) -> str:
    low = license_text.lower()
    if (
        "openstreetmap" in low
        or (fmt == "osm_xml" and not license_text)
        or (not license_text and has_osm_ids)
    ):
        return OSM_ATTRIBUTION
    if "microsoft" in low:
        return "Microsoft US Building Footprints, ODbL 1.0"
    if "spacenet" in low:
        return "SpaceNet labels, CC-BY-SA-4.0"
    return license_text or "unknown license: check the file's origin before publishing"


def local_sources(ctx: ToolContext) -> list[Source]:
    """Every local source under ctx.data_dirs; extents are cached per file by mtime."""
    index_file = _index_path(ctx)
    policy = AccessPolicy.from_context(ctx)
    with _INDEX_LOCK:
        index = _load_index(index_file)
        fresh: dict[str, Any] = {}  # only files still present, so the index never goes stale
        changed = False
        sources: list[Source] = []
        for path, root, fmt in _iter_candidate_files(ctx.data_dirs, policy):
            try:
                st = path.stat()
            except OSError:
                continue
            key = str(path.resolve())
            entry = index.get(key)
            if not (
                entry
                and entry.get("mtime_ns") == st.st_mtime_ns
                and entry.get("size") == st.st_size
            ):
                try:
                    meta = (
                        scan_osm_xml(path, policy)
                        if fmt == "osm_xml"
                        else scan_vector(path, policy)
                    )
                except Exception as exc:  # an unreadable file is skipped, not fatal
                    log.warning("osm_overlay: skipping unreadable %s: %s", path, exc)
                    meta = {"bounds": None, "error": str(exc)[:200]}
                entry = {"mtime_ns": st.st_mtime_ns, "size": st.st_size, "fmt": fmt, "meta": meta}
                changed = True
            fresh[key] = entry
            src = _source_from_meta(path, root, fmt, entry["meta"], policy)
            if src is not None:
                sources.append(src)
        if changed or set(fresh) != set(index):
            _save_index(index_file, fresh)
    return sources


def _source_from_meta(
    path: Path, root: Path, fmt: str, meta: dict[str, Any], policy: AccessPolicy | None = None
) -> Source | None:
    bounds = meta.get("bounds")
    if not bounds:
        return None
    w, s, e, n = (float(v) for v in bounds)
    if not (w < e and s < n):
        return None
    try:
        name = path.relative_to(root).as_posix()
    except ValueError:
        name = path.name
    license_text = _license_for(path, policy) or ""
    if fmt == "osm_xml":
        return Source(
            name=name,
            fmt="osm_xml",
            extent=box(w, s, e, n),
            path=path,
            timestamp=meta.get("timestamp"),
            license=license_text or OSM_LICENSE,
            attribution=_attribution(fmt, license_text, True),
        )
    tag_keys = frozenset(meta.get("tag_keys") or [])
    building_layer = bool(meta.get("building_layer"))
    road_layer = bool(meta.get("road_layer"))
    has_ids = bool(meta.get("has_osm_ids"))
    if not (building_layer or road_layer or tag_keys or has_ids):
        return None  # not an OSM-style layer: other tools may use it, this one cannot
    return Source(
        name=name,
        fmt="vector",
        extent=box(w, s, e, n),
        path=path,
        timestamp=meta.get("timestamp"),
        license=license_text or ("ODbL-1.0 (OpenStreetMap contributors)" if has_ids else "unknown"),
        attribution=_attribution(fmt, license_text, has_ids),
        tag_keys=tag_keys,
        building_layer=building_layer,
        road_layer=road_layer,
        has_osm_ids=has_ids,
    )


# ---------------------------------------------------------------------------------------
# Reading features (all sources end up as one frame shape: geometry, osm_id, tag columns)
# ---------------------------------------------------------------------------------------


def _tag_values(value: TagValue) -> list[str]:
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, list) else []


def _merge_tags(queries: list[FeatureQuery]) -> dict[str, TagValue]:
    merged: dict[str, TagValue] = {}
    for q in queries:
        for k, v in q.tags.items():
            old = merged.get(k)
            if old is True or v is True:
                merged[k] = True
            elif old is None:
                merged[k] = v
            else:
                merged[k] = sorted(set(_tag_values(old)) | set(_tag_values(v)))
    return merged


def _empty_frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"osm_id": pd.Series(dtype=object)}, geometry=[], crs="EPSG:4326")


def _from_osmnx(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """osmnx frames are indexed by (element, id); make that a plain 'way/123' column."""
    if gdf.empty:
        return _empty_frame()
    frame = gdf.reset_index()
    if "element" in frame.columns and "id" in frame.columns:
        frame["osm_id"] = frame["element"].astype(str) + "/" + frame["id"].astype(str)
        frame = frame.drop(columns=["element", "id"])
    elif "osmid" in frame.columns:
        frame["osm_id"] = frame["osmid"].astype(str)
    else:
        frame["osm_id"] = None
    out = gpd.GeoDataFrame(frame, geometry="geometry")
    return out.set_crs("EPSG:4326", allow_override=True)


def _read_osm_xml(
    src: Source,
    area: BaseGeometry,
    tags: dict[str, TagValue],
    policy: AccessPolicy | None = None,
) -> gpd.GeoDataFrame:
    import osmnx as ox
    from osmnx._errors import InsufficientResponseError

    assert src.path is not None
    policy = policy or AccessPolicy.build(data_dirs=[src.path.parent])
    # Checked again at read time: the file must still be inside the folders (its decompressed
    # size was checked against the budget when it was scanned, keyed by size and mtime).
    path = policy.local_path(src.path)
    policy.check_time("reading the OpenStreetMap extract")
    polygon = _polygonal(area)
    try:
        gdf = ox.features_from_xml(path, polygon=polygon, tags=tags)
    except InsufficientResponseError:
        return _empty_frame()  # nothing matches: a valid answer (zero), not an error
    except (ET.ParseError, OSError, EOFError, ValueError) as exc:
        raise GeoScoutToolError(
            "bad_data",
            f"The OpenStreetMap extract {src.name} could not be read.",
            "Check that the file is complete OSM XML (.osm or .osm.bz2), or remove it.",
        ) from exc
    return _from_osmnx(gdf)


def _read_vector(
    src: Source, area: BaseGeometry, policy: AccessPolicy | None = None
) -> gpd.GeoDataFrame:
    assert src.path is not None
    path = check_vector_file(src.path, policy or AccessPolicy.build(data_dirs=[src.path.parent]))
    try:
        mask = gpd.GeoSeries([area.envelope], crs="EPSG:4326")
        frame = gpd.read_file(path, mask=mask, engine="pyogrio")
    except Exception as exc:
        raise GeoScoutToolError(
            "bad_data",
            f"The vector file {src.name} could not be read.",
            "Check that it is valid GeoJSON or GeoPackage, or remove it from the data folder.",
        ) from exc
    if frame.empty:
        return _empty_frame()
    if frame.crs is None:
        frame = frame.set_crs("EPSG:4326")
    frame = frame.to_crs("EPSG:4326")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty].copy()
    ids = None
    for col in _ID_COLUMNS:
        if col in frame.columns:
            ids = frame[col].map(_id_text)
            break
    frame["osm_id"] = ids if ids is not None else None
    return frame


def _id_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def _preflight_overpass(ctx: ToolContext) -> None:
    """Fail fast (seconds, not osmnx's 60 s back-off) when the server cannot be reached."""
    import httpx

    url = ctx.overpass_url.rstrip("/") + "/status"
    policy = AccessPolicy.from_context(ctx)
    policy.check_url(url, endpoint=True)
    try:
        access.run_with_retry(
            policy,
            lambda: httpx.get(
                url,
                timeout=policy.timeout(10.0),
                headers={"User-Agent": ctx.user_agent},
                follow_redirects=False,
            ),
            (httpx.ConnectError,),
        )
    except httpx.TransportError as exc:
        raise GeoScoutToolError(
            "service_unreachable",
            f"The Overpass server at {ctx.overpass_url} could not be reached.",
            "Check the network or GEOSCOUT_OVERPASS_URL, or use the offline profile with a "
            "local OpenStreetMap extract.",
        ) from exc


def _read_overpass(
    ctx: ToolContext, area: BaseGeometry, tags: dict[str, TagValue]
) -> gpd.GeoDataFrame:
    import osmnx as ox
    import requests
    from osmnx._errors import InsufficientResponseError, ResponseStatusCodeError

    _preflight_overpass(ctx)
    w, s, e, n = area.bounds
    with _OVERPASS_LOCK:
        ox.settings.overpass_url = ctx.overpass_url.rstrip("/")
        ox.settings.cache_folder = str(Path(ctx.cache_dir) / "osmnx")
        ox.settings.use_cache = True
        ox.settings.requests_timeout = AccessPolicy.from_context(ctx).timeout()
        ox.settings.http_user_agent = ctx.user_agent
        ox.settings.log_console = False
        try:
            gdf = ox.features_from_bbox(bbox=(w, s, e, n), tags=tags)
        except InsufficientResponseError:
            return _empty_frame()
        except requests.exceptions.Timeout as exc:
            raise GeoScoutToolError(
                "timeout",
                "The Overpass server did not answer in time.",
                "Try a smaller area or fewer feature types, or try again later.",
            ) from exc
        except (requests.exceptions.RequestException, ResponseStatusCodeError) as exc:
            raise GeoScoutToolError(
                "service_unreachable",
                f"The Overpass server at {ctx.overpass_url} refused or failed the query.",
                "Try again later, or use the offline profile with a local extract.",
            ) from exc
    frame = _from_osmnx(gdf)
    return frame[frame.intersects(area)] if not frame.empty else frame


def _read_source(
    src: Source, ctx: ToolContext, area: BaseGeometry, queries: list[FeatureQuery]
) -> gpd.GeoDataFrame:
    tags = _merge_tags(queries)
    policy = AccessPolicy.from_context(ctx)
    if src.fmt == "osm_xml":
        return _read_osm_xml(src, area, tags, policy)
    if src.fmt == "overpass":
        return _read_overpass(ctx, area, tags)
    return _read_vector(src, area, policy)


def _str_col(frame: pd.DataFrame, key: str) -> pd.Series:
    return frame[key].where(frame[key].notna(), "").astype(str).str.strip()


def _match(frame: gpd.GeoDataFrame, query: FeatureQuery, src: Source) -> pd.Series:
    """Rows of frame that the query selects (osmnx semantics: any tag matches)."""
    if frame.empty:
        return pd.Series(False, index=frame.index)
    if src.fmt == "vector":
        if query.kind == "buildings" and src.building_layer and "building" not in src.tag_keys:
            return pd.Series(True, index=frame.index)
        if query.kind == "roads" and src.road_layer and "highway" not in src.tag_keys:
            return pd.Series(True, index=frame.index)
    mask = pd.Series(False, index=frame.index)
    for key, want in query.tags.items():
        if key not in frame.columns:
            continue
        col = _str_col(frame, key)
        if want is True:
            mask |= (col != "") & (col.str.lower() != "no")
        elif isinstance(want, str):
            mask |= col == want
        else:
            mask |= col.isin(_tag_values(want))
    return mask


# ---------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------


def utm_crs(geom: BaseGeometry) -> CRS:
    """The WGS 84 UTM zone holding the geometry's centre (the plain 6-degree grid: the
    Norway/Svalbard exceptions change nothing measurable here)."""
    c = geom.centroid if not geom.is_empty else geom
    lon, lat = float(c.x), float(c.y)
    if not -80.0 <= lat <= 84.0:
        return CRS.from_epsg(6933)  # beyond UTM: equal-area, good for areas
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _to_crs(geom: BaseGeometry, crs: CRS) -> BaseGeometry:
    return gpd.GeoSeries([geom], crs="EPSG:4326").to_crs(crs).iloc[0]


def _from_crs(geom: BaseGeometry, crs: CRS) -> BaseGeometry:
    return gpd.GeoSeries([geom], crs=crs).to_crs("EPSG:4326").iloc[0]


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """The polygon parts of a geometry (osmnx wants a Polygon or MultiPolygon)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _is_areal(geom: BaseGeometry) -> bool:
    return not _polygonal(geom).is_empty and _polygonal(geom).area > 0


def _sig(x: float, digits: int = 3) -> float:
    if x == 0 or not math.isfinite(x):
        return 0.0
    return float(round(x, digits - 1 - math.floor(math.log10(abs(x)))))


def _lean(geom: BaseGeometry) -> BaseGeometry:
    """Lighter geometry for the map: simplify long outlines, keep 7 decimals (1 cm)."""
    if shapely.get_num_coordinates(geom) > _SIMPLIFY_MIN_VERTICES:
        geom = geom.simplify(_SIMPLIFY_DEG, preserve_topology=True)
    return shapely.transform(geom, lambda c: np.round(c, 7))


# ---------------------------------------------------------------------------------------
# The tool
# ---------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """The geometry of one call, all EPSG:4326 except where named _utm."""

    query: BaseGeometry  # where to look
    reference: BaseGeometry  # what the predicate relates to
    related: BaseGeometry | None  # relate_to (clipped to aoi), when given
    utm: CRS


def _plan_geometry(args: OsmOverlayArgs) -> _Plan:
    aoi = args.aoi.shape() if args.aoi is not None else None
    rel = shape(args.relate_to) if args.relate_to is not None else None
    reference = rel if rel is not None else aoi
    assert reference is not None
    utm = utm_crs(reference if aoi is None else aoi)
    if args.predicate == "within_distance":
        assert args.distance_m is not None
        # 64 segments per quarter circle: the polygon misses the true circle by < 0.01%.
        reach = _from_crs(_to_crs(reference, utm).buffer(args.distance_m, quad_segs=64), utm)
        query = reach if aoi is None else reach.intersection(aoi)
    elif rel is not None and _is_areal(rel):
        query = _polygonal(rel) if aoi is None else _polygonal(rel).intersection(aoi)
    elif aoi is not None:
        query = aoi
    else:
        raise GeoScoutToolError(
            "invalid_args",
            "relate_to is a point or a line, which has no area to look inside.",
            "Use predicate 'within_distance' with distance_m, or also give an aoi.",
        )
    query = _polygonal(make_valid(query))
    if query.is_empty or query.area == 0:
        raise GeoScoutToolError(
            "no_data",
            "The area asked about and the layer to relate to do not overlap.",
            "Check that relate_to lies inside the aoi, or leave one of them out.",
        )
    related = None
    if rel is not None:
        related = rel if aoi is None else rel.intersection(aoi)
    return _Plan(query=query, reference=reference, related=related, utm=utm)


def _no_data_error(
    sources: list[Source], queries: list[FeatureQuery], query_bbox: tuple[float, ...]
) -> GeoScoutToolError:
    what = ", ".join(q.label for q in queries)
    # The sources that could answer these queries elsewhere; all of them if none can. Their
    # distance is said, not their names: "kampala/osm_buildings.geojson" in an answer about
    # Lagos would read as an answer from Kampala (the coverage tool lists what exists).
    sources = [s for s in sources if any(s.answers(q) for q in queries)] or sources
    if sources:
        area = box(*query_bbox[:4])
        km = sorted(_km_apart(area, s.extent) for s in sources)
        near = ", then ".join(f"about {v:,.0f} km" for v in km[:3])
        avail = f"The nearest local map data is {near} away."
    else:
        avail = "No local extract was found in the data folders."
    return GeoScoutToolError(
        "no_data",
        f"No local OpenStreetMap extract covers the area asked about for {what}.",
        f"{avail} Ask “what data do you have?” for the places covered, add an extract (.osm, "
        ".osm.bz2, or GeoJSON/GeoPackage with OSM tags) to the data folder, or use the online "
        "profile (GEOSCOUT_PROFILE=online) to query OpenStreetMap through Overpass.",
    )


def _km_apart(a: BaseGeometry, b: BaseGeometry) -> float:
    """Geodesic distance between the nearest points of two lon/lat shapes (0 when they meet)."""
    from pyproj import Geod
    from shapely.ops import nearest_points

    if a.intersects(b):
        return 0.0
    p, q = nearest_points(a, b)
    return float(Geod(ellps="WGS84").inv(p.x, p.y, q.x, q.y)[2]) / 1000.0


def _measure(
    frame: gpd.GeoDataFrame,
    query: FeatureQuery,
    plan: _Plan,
    covered: BaseGeometry,
    any_road_layer: bool,
) -> tuple[dict[str, Quantity], list[str]]:
    """Counts, lengths, areas and shares of the selected features; clipped geometry is in
    the column 'clipped'."""
    utm = plan.utm
    values: dict[str, Quantity] = {}
    caveats: list[str] = []
    # Classify by the feature's own geometry; measure its clipped part (which may come back
    # as a GeometryCollection where it runs along the edge: length and area still add up).
    clipped = gpd.GeoSeries(frame["clipped"], crs="EPSG:4326").to_crs(utm)
    gtypes = frame.geometry.geom_type
    is_poly = gtypes.isin(["Polygon", "MultiPolygon"]).to_numpy()
    is_line = gtypes.isin(["LineString", "MultiLineString"]).to_numpy()
    polys = clipped[is_poly]
    lines = clipped[is_line]
    poly_union = _polygonal(shapely.union_all(polys.values)) if len(polys) else shapely.Polygon()

    related_eff_utm = None
    if plan.related is not None and _is_areal(plan.related):
        related_eff = _polygonal(plan.related).intersection(covered)
        related_eff_utm = _to_crs(related_eff, utm) if not related_eff.is_empty else None
        values["related_area_km2"] = Quantity(
            value=_sig(geodesic_area_km2(_polygonal(plan.related))), unit="km2"
        )

    def share() -> None:
        if related_eff_utm is None or related_eff_utm.area <= 0:
            return
        inside = poly_union.intersection(related_eff_utm).area if len(polys) else 0.0
        values["covered_share_pct"] = Quantity(
            value=_sig(100.0 * inside / related_eff_utm.area),
            unit="%",
            note="share of the related layer (within the covered area) under these features",
        )

    if query.kind == "buildings":
        values["building_count"] = Quantity(value=len(frame), unit="count")
        area_m2 = float(poly_union.area)
        values["building_footprint_area_m2"] = Quantity(
            value=_sig(area_m2), unit="m2", note="inside the area looked at; overlaps once"
        )
        values["building_footprint_area_km2"] = Quantity(value=_sig(area_m2 / 1e6), unit="km2")
        share()
    elif query.kind == "roads":
        hw = (
            _str_col(frame, "highway")
            if "highway" in frame.columns
            else pd.Series("", index=frame.index)
        )
        # Lines of a road layer without classes (e.g. SpaceNet labels) all count as roads.
        classless = (hw == "").to_numpy() & frame["_road_layer"].to_numpy(dtype=bool)
        drivable = is_line & (hw.isin(DRIVABLE_HIGHWAYS).to_numpy() | classless)
        values["road_length_km"] = Quantity(
            value=_sig(float(clipped[drivable].length.sum()) / 1000.0),
            unit="km",
            note="streets for motor vehicles (motorway .. residential, links, living streets); each way once",
        )
        values["road_segment_count"] = Quantity(value=int(drivable.sum()), unit="count")
        values["all_highway_length_km"] = Quantity(
            value=_sig(float(lines.length.sum()) / 1000.0),
            unit="km",
            note="every highway line, including service roads, tracks, footways, paths, cycleways",
        )
        if any_road_layer and classless.any():
            caveats.append(
                "A road layer without road classes was used; all its lines count as drivable roads."
            )
    else:
        values["feature_count"] = Quantity(value=len(frame), unit="count")
        if len(polys):
            values["feature_area_km2"] = Quantity(value=_sig(poly_union.area / 1e6), unit="km2")
            share()
        if len(lines):
            values["feature_length_km"] = Quantity(
                value=_sig(float(lines.length.sum()) / 1000.0), unit="km"
            )
    return values, caveats


def _layer(frame: gpd.GeoDataFrame, query: FeatureQuery, cap: int) -> list[dict[str, Any]]:
    keys = [k for k in dict.fromkeys(["name", *query.tags, "highway"]) if k in frame.columns]
    head = frame.head(cap)
    feats: list[dict[str, Any]] = []
    for geom, rec in zip(
        head.geometry, head[["_source", "osm_id", *keys]].to_dict("records"), strict=True
    ):
        props: dict[str, Any] = {"source": rec["_source"], "feature_type": query.label}
        if isinstance(rec.get("osm_id"), str) and rec["osm_id"]:
            props["osm_id"] = rec["osm_id"]
        for k in keys:
            v = rec.get(k)
            if isinstance(v, str) and v.strip():
                props[k] = v[:300]  # untrusted text: carried as data, bounded, never read
        feats.append(
            {"type": "Feature", "geometry": _geometry_json(_lean(geom)), "properties": props}
        )
    return feats


def _outputs_geometry(geoms: list[BaseGeometry]) -> dict[str, Any]:
    polys = [g for g in geoms if g.geom_type in ("Polygon", "MultiPolygon")]
    lines = [g for g in geoms if g.geom_type in ("LineString", "MultiLineString")]
    points = [g for g in geoms if g.geom_type in ("Point", "MultiPoint")]
    parts: list[BaseGeometry] = []
    if polys:
        parts.append(shapely.union_all(polys).simplify(_SIMPLIFY_DEG / 2, preserve_topology=True))
    if lines:
        parts.append(shapely.multilinestrings(list(shapely.get_parts(lines))))
    if points:
        parts.append(shapely.multipoints(list(shapely.get_parts(points))))
    parts = [_lean(p) for p in parts if not p.is_empty]
    if not parts:
        return {"type": "GeometryCollection", "geometries": []}
    if len(parts) == 1:
        return _geometry_json(parts[0])
    return {"type": "GeometryCollection", "geometries": [_geometry_json(p) for p in parts]}


def _args_for_provenance(args: OsmOverlayArgs) -> dict[str, Any]:
    """The arguments, with a large relate_to geometry summarised rather than copied."""
    dumped = args.model_dump(mode="json", exclude_none=True)
    dumped["features"] = [q.label for q in args.features]
    if args.relate_to is not None:
        geom = shape(args.relate_to)
        n = int(shapely.get_num_coordinates(geom))
        if n > 200:
            dumped["relate_to"] = {
                "type": args.relate_to.get("type"),
                "bbox": [round(v, 6) for v in geom.bounds],
                "vertices": n,
            }
    return dumped


Parts = list[tuple[Source, BaseGeometry]]


def _assign_sources(
    queries: list[FeatureQuery], sources: list[Source], query: BaseGeometry
) -> dict[str, Parts]:
    """For each query, the sources that answer it and the part of the query area each covers.

    A lower-priority source only fills what higher-priority ones leave uncovered, so a
    building present in both an OSM extract and a footprint layer is counted once.
    """
    per_query: dict[str, Parts] = {}
    for q in queries:
        taken: BaseGeometry = shapely.Polygon()
        parts: Parts = []
        for src in sorted(sources, key=lambda s: (s.priority, s.name)):
            if not src.answers(q):
                continue
            part = _polygonal(src.extent.intersection(query).difference(taken))
            if part.is_empty or part.area == 0:
                continue
            parts.append((src, part))
            taken = taken.union(part)
        per_query[q.label] = parts
    return per_query


def _read_all(
    queries: list[FeatureQuery], per_query: dict[str, Parts], ctx: ToolContext
) -> dict[str, gpd.GeoDataFrame]:
    """Read each source once, for all the queries it answers, over the parts it covers."""
    by_source: dict[str, tuple[Source, list[FeatureQuery], list[BaseGeometry]]] = {}
    for q in queries:
        for src, part in per_query[q.label]:
            entry = by_source.setdefault(src.name, (src, [], []))
            entry[1].append(q)
            entry[2].append(part)
    return {
        name: _read_source(src, ctx, shapely.union_all(areas), wanted)
        for name, (src, wanted, areas) in by_source.items()
    }


def _select(
    q: FeatureQuery,
    parts: Parts,
    frames: dict[str, gpd.GeoDataFrame],
    args: OsmOverlayArgs,
    plan: _Plan,
) -> gpd.GeoDataFrame:
    """Features of the query that meet the predicate, with geometry clipped to the covered
    part of the query area in column 'clipped'."""
    ref_utm = _to_crs(plan.reference, plan.utm) if args.predicate == "within_distance" else None
    related = shape(args.relate_to) if args.relate_to is not None else None
    selected: list[gpd.GeoDataFrame] = []
    for src, part in parts:
        frame = frames[src.name]
        if frame.empty:
            continue
        sub = frame[_match(frame, q, src).to_numpy()]
        if q.kind == "buildings":
            sub = sub[sub.geom_type.isin(["Polygon", "MultiPolygon", "Point"])]
        elif q.kind == "roads":
            sub = sub[sub.geom_type.isin(["LineString", "MultiLineString"])]
        sub = sub[sub.intersects(part)]
        if args.predicate == "within":
            sub = sub[sub.covered_by(plan.reference)]
        elif args.predicate == "within_distance":
            assert ref_utm is not None and args.distance_m is not None
            dist = sub.to_crs(plan.utm).distance(ref_utm) if len(sub) else pd.Series(dtype=float)
            sub = sub[(dist <= args.distance_m).to_numpy()]
        elif related is not None:
            sub = sub[sub.intersects(related)]
        if sub.empty:
            continue
        sub = sub.copy()
        # Volunteer-mapped polygons are sometimes self-intersecting; repair before clipping.
        sub["geometry"] = sub.geometry.make_valid()
        sub["clipped"] = sub.geometry.intersection(make_valid(part))
        sub["_source"] = src.name
        sub["_road_layer"] = src.fmt == "vector" and src.road_layer
        selected.append(sub)
    if selected:
        return gpd.GeoDataFrame(
            pd.concat(selected, ignore_index=True), geometry="geometry", crs="EPSG:4326"
        )
    sel = _empty_frame()
    sel["clipped"] = gpd.GeoSeries([], crs="EPSG:4326")
    sel["_source"] = pd.Series(dtype=object)
    sel["_road_layer"] = pd.Series(dtype=bool)
    return sel


def _evidence(
    q: FeatureQuery,
    sel: gpd.GeoDataFrame,
    parts: Parts,
    args: OsmOverlayArgs,
    ctx: ToolContext,
    plan: _Plan,
    key: str,
) -> EvidenceDraft:
    used = [s for s, _ in parts]
    covered = shapely.union_all([p for _, p in parts])
    values, caveats = _measure(sel, q, plan, covered, any(s.road_layer for s in used))
    query_km2 = geodesic_area_km2(plan.query)
    coverage_km2 = geodesic_area_km2(covered)
    values["query_area_km2"] = Quantity(value=_sig(query_km2), unit="km2")
    values["coverage_area_km2"] = Quantity(
        value=_sig(coverage_km2), unit="km2", note="part of the query area the sources cover"
    )
    if coverage_km2 < 0.99 * query_km2:
        what = "online data" if ctx.profile == "online" else "local extract"
        verb = "cover" if len(used) > 1 else "covers"
        caveats.append(
            f"The {what}{'s' if len(used) > 1 else ''} {verb} {_sig(coverage_km2):g} km2 of the "
            f"{_sig(query_km2):g} km2 asked about; figures are for the covered part only."
        )
    osm = [s.fmt != "vector" or "openstreetmap" in s.attribution.lower() for s in used]
    if any(osm):
        caveats.append(
            "OpenStreetMap is mapped by volunteers: a feature missing from it may still exist "
            "on the ground."
        )
    for s in used:
        if s.fmt == "vector" and s.building_layer and q.kind == "buildings" and not s.has_osm_ids:
            caveats.append(f"{s.name} is a building footprint layer ({s.license}), not OSM.")
    cap = max(1, ctx.limits.max_features)
    if len(sel) > cap:
        caveats.append(
            f"The map shows the first {cap} of {len(sel)} features; figures count all of them."
        )

    timestamps = {s.name: (s.timestamp or "unknown") for s in used}
    attribution = "; ".join(dict.fromkeys(s.attribution for s in used))
    facts = {
        "feature_type": q.label,
        "osm_tags": _tags_label(q.tags),
        "predicate": args.predicate,
        "sources": ", ".join(s.name for s in used),
        "data_timestamp": (
            next(iter(timestamps.values()))
            if len(timestamps) == 1
            else "; ".join(f"{k}: {v}" for k, v in timestamps.items())
        ),
        "attribution": attribution,
        "measured_in": plan.utm.to_string(),
    }
    if args.relate_label:
        facts["related_to"] = args.relate_label
    if args.distance_m is not None:
        facts["distance_m"] = f"{args.distance_m:g}"
    provenance: dict[str, Any] = {
        "tool": TOOL_NAME,
        "arguments": _args_for_provenance(args),
        "profile": ctx.profile,
        "sources": [s.describe() for s in used],
        "attribution": attribution,
        "licenses": sorted({s.license for s in used}),
        "predicate": args.predicate,
        "distance_m": args.distance_m,
        "crs_for_measurement": plan.utm.to_string(),
    }
    if q.kind == "roads":
        provenance["drivable_highway_classes"] = sorted(DRIVABLE_HIGHWAYS)
    if ctx.profile == "online":
        provenance["server"] = ctx.overpass_url
        provenance["retrieved"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pred_txt = (
        f"within {args.distance_m:g} m of"
        if args.distance_m is not None
        else ("inside" if args.predicate == "within" else "touching")
    )
    related_txt = args.relate_label or ("the related layer" if args.relate_to else "the area")
    prefix = "OpenStreetMap " if all(osm) else ""
    return EvidenceDraft(
        key=key,
        kind="features",
        title=f"{prefix}{q.label} {pred_txt} {related_txt}",
        values=values,
        geometry=_geometry_json(plan.query),
        provenance=provenance,
        layer={"type": "FeatureCollection", "features": _layer(sel, q, cap) if len(sel) else []},
        caveats=caveats,
        facts=facts,
    )


def run(args: OsmOverlayArgs, ctx: ToolContext) -> ToolResult:
    plan = _plan_geometry(args)
    query_km2 = geodesic_area_km2(plan.query)
    if query_km2 > ctx.limits.max_aoi_km2:
        raise GeoScoutToolError(
            "too_large",
            f"The area asked about is {query_km2:,.0f} km2; the limit is "
            f"{ctx.limits.max_aoi_km2:,.0f} km2.",
            "Ask about a smaller area (a town or a district), or relate to a smaller layer.",
        )
    if ctx.profile == "online":
        candidates = [Source(name=ctx.overpass_url, fmt="overpass", extent=plan.query)]
    else:
        candidates = local_sources(ctx)
    sources = [s for s in candidates if s.extent.intersects(plan.query)]
    per_query = _assign_sources(args.features, sources, plan.query)
    if not any(per_query.values()):
        raise _no_data_error(candidates, args.features, plan.query.bounds)
    frames = _read_all(args.features, per_query, ctx)

    evidence: list[EvidenceDraft] = []
    caveats: list[str] = []
    shown: list[BaseGeometry] = []
    stats: dict[str, dict[str, float]] = {}
    for q in args.features:
        parts = per_query[q.label]
        if not parts:
            caveats.append(f"No source here holds {q.label}; nothing is reported for it.")
            continue
        sel = _select(q, parts, frames, args, plan)
        slug = re.sub(r"[^A-Za-z0-9_.:\-]+", "_", q.label)
        key = "features" if len(args.features) == 1 else f"features:{slug}"
        draft = _evidence(q, sel, parts, args, ctx, plan, key)
        evidence.append(draft)
        shown.extend(sel.geometry.head(max(1, ctx.limits.max_features)).tolist())
        stats[q.label] = {k: v.value for k, v in draft.values.items()}

    related_txt = args.relate_label or ("the related layer" if args.relate_to else "the area")
    return ToolResult(
        status="ok",
        summary=_summary(evidence, related_txt),
        outputs={"features": _outputs_geometry(shown), "stats": stats},
        evidence=evidence,
        caveats=caveats,
    )


def _summary(evidence: list[EvidenceDraft], related_txt: str) -> str:
    """Built only from numbers and our own labels: tag text never reaches it."""
    parts = []
    for ev in evidence:
        v = {k: q.value for k, q in ev.values.items()}
        label = ev.facts.get("feature_type", "features")
        if "building_count" in v:
            txt = f"{int(v['building_count'])} buildings ({v['building_footprint_area_m2']:g} m2 of footprint)"
        elif "road_length_km" in v:
            txt = (
                f"{v['road_length_km']:g} km of drivable roads in {int(v['road_segment_count'])} "
                f"ways ({v['all_highway_length_km']:g} km of all paths and roads)"
            )
        else:
            txt = f"{int(v['feature_count'])} {label} features"
        if "covered_share_pct" in v:
            txt += f", covering {v['covered_share_pct']:g}% of {related_txt}"
        txt += f"; data cover {v['coverage_area_km2']:g} of {v['query_area_km2']:g} km2"
        parts.append(txt)
    return "Map features: " + " | ".join(parts) + "."


SPEC = ToolSpec(
    name=TOOL_NAME,
    args_schema=OsmOverlayArgs,
    run=run,
    description=(
        "OpenStreetMap features (buildings, roads, water, landuse or any OSM tag) in an area "
        "or related to another step's layer: counts, lengths, areas, overlap share, coverage "
        "of the data, attribution."
    ),
    prompt_fragment=(
        "osm_overlay(aoi?, features, relate_to?, predicate?, distance_m?, relate_label?): "
        "OpenStreetMap features. features: 'buildings', 'roads', 'water', 'landuse', a tag "
        "'amenity=school' or {'amenity': 'school'}, or a list of them. aoi: an area "
        "(@step.aoi). relate_to: another step's geometry (@step.mask, @step.scene footprint) "
        "to relate features to; predicate: intersects (default), within, or within_distance "
        "with distance_m in metres (up to 50000). Needs aoi or relate_to. Returns building "
        "counts and footprint area, drivable road length, feature counts, the share of "
        "relate_to covered by the features, and how much of the area the OSM data covers."
    ),
    outputs={"features": "geometry", "stats": "stats"},
    accepts={
        "aoi": ("aoi", "geometry", "scene"),
        "relate_to": ("geometry", "boxes", "aoi", "scene"),
    },
)
