"""What osm_overlay looks for: feature words and OSM tags, and the layer to relate them to.

The loose ``features`` argument (a word, a ``key=value`` tag, a tag dict or a list) becomes
at most :data:`MAX_QUERIES` :class:`FeatureQuery` objects here, once; ``relate_to`` becomes
one lon/lat geometry. Tag keys and values are checked against a strict pattern, since they
reach Overpass queries and osmnx filters.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import shapely
from pydantic import BaseModel, ConfigDict
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import make_valid

from tools.geo import parse_bbox, to_rfc7946

# OSM keys that make a vector file an OSM-style source for generic tag queries; a bare one
# is also accepted as a feature word ("amenity": every feature carrying it).
OSM_KEYS = frozenset(
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

MAX_QUERIES = 5

TagValue = bool | str | list[str]
Predicate = Literal["intersects", "within", "within_distance"]

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


def tags_label(tags: dict[str, TagValue]) -> str:
    """Tags as people write them: "building", "amenity=school|college"."""
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
    return FeatureQuery(label=tags_label(tags), kind="tags", tags=tags)


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
            elif word in OSM_KEYS:  # a bare, well-known key: every feature carrying it
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
    if len(queries) > MAX_QUERIES:
        raise ValueError(f"at most {MAX_QUERIES} feature types per call")
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


def geometry_json(geom: BaseGeometry) -> dict[str, Any]:
    """RFC 7946 GeoJSON of any geometry, GeometryCollections included (part by part)."""
    if geom.geom_type == "GeometryCollection":
        return {
            "type": "GeometryCollection",
            "geometries": [to_rfc7946(g) for g in shapely.get_parts(geom)],
        }
    return to_rfc7946(geom)


PREDICATE_ALIASES: dict[str, Predicate] = {
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


def tag_values(value: TagValue) -> list[str]:
    """The values a tag filter accepts ([] for "any value")."""
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, list) else []


def merge_tags(queries: list[FeatureQuery]) -> dict[str, TagValue]:
    """One tag filter answering every query (osmnx semantics: any tag matches)."""
    merged: dict[str, TagValue] = {}
    for q in queries:
        for k, v in q.tags.items():
            old = merged.get(k)
            if old is True or v is True:
                merged[k] = True
            elif old is None:
                merged[k] = v
            else:
                merged[k] = sorted(set(tag_values(old)) | set(tag_values(v)))
    return merged


# The feature words measured with their own figures (building footprints, drivable road
# length) rather than as generic tag counts: what a question's target can ask of OSM.
MEASURED_FEATURES: frozenset[str] = frozenset(
    label for label, kind, _ in _ALIASES.values() if kind != "tags"
)
