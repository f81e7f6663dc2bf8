"""osm_overlay: OpenStreetMap features in an area, related to another step's layer.

One code path for both profiles; only the source differs (:mod:`tools.osm.sources`): local
extracts and vector layers offline, Overpass online. The query area is aoi ∩ relate_to (or
the one given; for within_distance, the buffer around relate_to). Counts are of features
meeting the predicate; lengths and areas are measured (:mod:`tools.osm.measure`) on the
features clipped to the part of the query area that a source actually covers, and that
coverage is always reported: a small extract must never pass for a whole city. Tag text
(names, ...) is untrusted data: it is carried as layer properties only and never reaches
titles, summaries or facts.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any

import geopandas as gpd
import shapely
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from tools.base import (
    EvidenceDraft,
    GeoScoutToolError,
    IntentView,
    Quantity,
    ToolContext,
    ToolResult,
    ToolSpec,
    label_text,
)
from tools.geo import AOI, geodesic_area_km2
from tools.numbers import sig
from tools.osm.measure import (
    DRIVABLE_HIGHWAYS,
    Parts,
    Plan,
    assign_sources,
    feature_layer,
    measure,
    outputs_geometry,
    plan_geometry,
    select,
)
from tools.osm.query import (
    MAX_QUERIES,
    MEASURED_FEATURES,
    PREDICATE_ALIASES,
    FeatureQuery,
    Predicate,
    geometry_json,
    parse_features,
    relate_geometry,
    tags_label,
)
from tools.osm.reading import read_source
from tools.osm.sources import Source, local_sources, no_data_error
from tools.provenance import Provenance

TOOL_NAME = "osm_overlay"
_MAX_DISTANCE_M = 50_000.0

_ONE_FEATURE: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "examples": ["buildings", "roads", "water", "amenity=school"]},
        {"type": "object", "additionalProperties": {"type": ["string", "boolean"]}},
    ]
}
_FEATURES_SCHEMA: dict[str, Any] = {
    "anyOf": [_ONE_FEATURE, {"type": "array", "items": _ONE_FEATURE, "maxItems": MAX_QUERIES}]
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
        return geometry_json(relate_geometry(value))

    @field_validator("predicate", mode="before")
    @classmethod
    def _predicate(cls, value: Any) -> Any:
        if isinstance(value, str):
            key = re.sub(r"[\s\-]+", "_", value.strip().lower())
            if key in PREDICATE_ALIASES:
                return PREDICATE_ALIASES[key]
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
        name: read_source(src, ctx, shapely.union_all(areas), wanted)
        for name, (src, wanted, areas) in by_source.items()
    }


def _evidence(
    q: FeatureQuery,
    sel: gpd.GeoDataFrame,
    parts: Parts,
    args: OsmOverlayArgs,
    ctx: ToolContext,
    plan: Plan,
    key: str,
) -> EvidenceDraft:
    used = [s for s, _ in parts]
    covered = shapely.union_all([p for _, p in parts])
    values, caveats = measure(sel, q, plan, covered, any(s.road_layer for s in used))
    query_km2 = geodesic_area_km2(plan.query)
    coverage_km2 = geodesic_area_km2(covered)
    values["query_area_km2"] = Quantity(value=sig(query_km2), unit="km2")
    values["coverage_area_km2"] = Quantity(
        value=sig(coverage_km2), unit="km2", note="part of the query area the sources cover"
    )
    if coverage_km2 < 0.99 * query_km2:
        what = "online data" if ctx.profile == "online" else "local extract"
        verb = "cover" if len(used) > 1 else "covers"
        caveats.append(
            f"The {what}{'s' if len(used) > 1 else ''} {verb} {sig(coverage_km2):g} km2 of the "
            f"{sig(query_km2):g} km2 asked about; figures are for the covered part only."
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
        "osm_tags": tags_label(q.tags),
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
    pred_txt = (
        f"within {args.distance_m:g} m of"
        if args.distance_m is not None
        else ("inside" if args.predicate == "within" else "touching")
    )
    related_txt = args.relate_label or ("the related layer" if args.relate_to else "the area")
    prefix = "OpenStreetMap " if all(osm) else ""
    licenses = sorted({s.license for s in used})
    details: dict[str, Any] = {
        "profile": ctx.profile,
        "licenses": licenses,
        "osm_tags": tags_label(q.tags),
        "predicate": args.predicate,
        "distance_m": args.distance_m,
        "crs_for_measurement": plan.utm.to_string(),
    }
    if q.kind == "roads":
        details["drivable_highway_classes"] = sorted(DRIVABLE_HIGHWAYS)
    retrieved = (
        dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ctx.profile == "online" else None
    )
    provenance = Provenance(
        tool=TOOL_NAME,
        arguments=_args_for_provenance(args),
        method=(
            f"{q.label} ({tags_label(q.tags)}) {pred_txt} {related_txt}, clipped to the part of "
            f"the area the data cover, measured in {plan.utm.to_string()}"
        ),
        source="OpenStreetMap via Overpass" if ctx.profile == "online" else "local map extracts",
        license="; ".join(licenses),
        attribution=attribution,
        sources=[s.vector_source(retrieved) for s in used],
        details=details,
    )
    return EvidenceDraft(
        key=key,
        kind="features",
        title=f"{prefix}{q.label} {pred_txt} {related_txt}",
        values=values,
        geometry=geometry_json(plan.query),
        provenance=provenance,
        layer={
            "type": "FeatureCollection",
            "features": feature_layer(sel, q, cap) if len(sel) else [],
        },
        caveats=caveats,
        facts=facts,
    )


def run(args: OsmOverlayArgs, ctx: ToolContext) -> ToolResult:
    plan = plan_geometry(
        args.aoi.shape() if args.aoi is not None else None,
        shape(args.relate_to) if args.relate_to is not None else None,
        args.predicate,
        args.distance_m,
    )
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
    per_query = assign_sources(args.features, sources, plan.query)
    if not any(per_query.values()):
        raise no_data_error(candidates, args.features, plan.query.bounds)
    frames = _read_all(args.features, per_query, ctx)
    related = shape(args.relate_to) if args.relate_to is not None else None

    evidence: list[EvidenceDraft] = []
    caveats: list[str] = []
    shown: list[BaseGeometry] = []
    stats: dict[str, dict[str, float]] = {}
    for q in args.features:
        parts = per_query[q.label]
        if not parts:
            caveats.append(f"No source here holds {q.label}; nothing is reported for it.")
            continue
        sel = select(q, parts, frames, plan, args.predicate, args.distance_m, related)
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
        outputs={"features": outputs_geometry(shown), "stats": stats},
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


def _label(args: dict[str, Any]) -> str:
    what = label_text(args.get("features")) or "map features"
    return f"Mapping {what} from OpenStreetMap"


def _relevant(intent: IntentView) -> bool:
    """Questions about what OSM measures itself: building footprints, road lengths."""
    return bool(MEASURED_FEATURES.intersection(intent.targets))


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
    label=_label,
    relevant=_relevant,
    planner_hidden=frozenset({"relate_label"}),
    stated_only=frozenset({"distance_m"}),
    produces=("features",),
)
