"""Everything drawable of an AnswerBundle as one RFC 7946 GeoJSON FeatureCollection."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import make_valid

from agents.schemas import AnswerBundle, Evidence
from tools.geo import to_rfc7946

if TYPE_CHECKING:
    pass


log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- GeoJSON export


def bundle_layers_geojson(bundle: AnswerBundle, precision: int = 7) -> dict[str, Any]:
    """Everything drawable of a bundle as one RFC 7946 FeatureCollection.

    Lon/lat coordinates rounded to ``precision`` decimals, counter-clockwise exterior rings,
    no ``crs`` member, a ``bbox`` member. Evidence geometries that no layer feature carries
    are added, so the file holds every located piece of evidence exactly once.
    """
    features: list[dict[str, Any]] = []
    by_id = {ev.id: ev for ev in bundle.evidence}
    raw = bundle.layers.get("features") if isinstance(bundle.layers, dict) else None
    raw = [f for f in raw if isinstance(f, dict)] if isinstance(raw, list) else []
    counts: dict[str, int] = {}
    for feat in raw:
        eid = (feat.get("properties") or {}).get("evidence_id")
        if isinstance(eid, str):
            counts[eid] = counts.get(eid, 0) + 1
    seen: set[str] = set()
    for feat in raw:
        clean = _clean_feature(feat.get("geometry"), feat.get("properties"), precision)
        if clean is None:
            continue
        props = clean["properties"]
        eid = props.get("evidence_id")
        ev = by_id.get(eid) if isinstance(eid, str) else None
        if isinstance(eid, str):
            seen.add(eid)
            props.setdefault("kind", ev.kind if ev else "features")
        # A mask or feature search that found nothing leaves only its analysed area in the
        # layers: mark it, so that it is drawn as an outline and not as a found object.
        if ev is not None and counts.get(ev.id) == 1 and _is_extent_of(clean, ev, precision):
            props["role"] = "extent"
        features.append(clean)
    for ev in bundle.evidence:
        if ev.geometry is None or ev.id in seen:
            continue
        props = {"evidence_id": ev.id, "kind": ev.kind, "label": ev.title}
        if ev.kind in _RESULT_KINDS:
            props["role"] = "extent"
        clean = _clean_feature(ev.geometry, props, precision)
        if clean is not None:
            features.append(clean)
    out: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if features:
        bounds = np.array([shape(f["geometry"]).bounds for f in features])
        out["bbox"] = [
            round(float(bounds[:, 0].min()), precision),
            round(float(bounds[:, 1].min()), precision),
            round(float(bounds[:, 2].max()), precision),
            round(float(bounds[:, 3].max()), precision),
        ]
    return out


_RESULT_KINDS = ("mask", "detections", "features")


def _is_extent_of(feature: dict[str, Any], ev: Evidence, precision: int) -> bool:
    if ev.kind not in _RESULT_KINDS or ev.geometry is None:
        return False
    own = _clean_feature(ev.geometry, None, precision)
    return own is not None and own["geometry"] == feature["geometry"]


def _clean_feature(geometry: Any, properties: Any, precision: int) -> dict[str, Any] | None:
    """One RFC 7946 feature, or None when the geometry is missing, empty or not lon/lat."""
    if not isinstance(geometry, dict):
        return None
    try:
        geom = shape(geometry)
    except Exception:  # malformed GeoJSON from a tool: leave it out rather than fail
        return None
    if geom.is_empty:
        return None
    w, s, e, n = geom.bounds
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        log.warning("a layer feature is not in lon/lat degrees; it is left out of the export")
        return None
    geom = shapely.transform(geom, lambda c: np.round(c, precision))
    geom = _rfc7946_geometry(geom)
    if geom.is_empty:
        return None
    props = dict(properties) if isinstance(properties, dict) else {}
    return {"type": "Feature", "geometry": _json_geometry(geom), "properties": _json_safe(props)}


def _rfc7946_geometry(geom: BaseGeometry) -> BaseGeometry:
    if not geom.is_valid:
        geom = make_valid(geom)
    if geom.geom_type == "GeometryCollection":
        return shapely.geometrycollections([_rfc7946_geometry(g) for g in geom.geoms])
    return shape(to_rfc7946(geom))


def _json_geometry(geom: BaseGeometry) -> dict[str, Any]:
    """GeoJSON mapping with lists (not tuples) so that it compares and serialises plainly."""
    import json

    return dict(json.loads(shapely.to_geojson(geom)))


def _json_safe(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
