"""Measuring OpenStreetMap features: the query geometry, the predicate, counts, lengths, areas.

Lengths and areas are measured in the local UTM zone (:func:`tools.geo.utm_crs`) on the
features clipped to the part of the query area that a source covers.

Road definition (documented so answers are reproducible): ``road_length_km`` counts the
streets a car may use, the highway classes in :data:`DRIVABLE_HIGHWAYS` (osmnx's "drive"
network classes: motorway .. residential, their links, living streets); service roads,
tracks, footways, paths, cycleways, pedestrian streets and steps are excluded there and are
included in ``all_highway_length_km``. Each OSM way is measured once, so a two-way street
counts once (OSM maps it as one way; no directed graph is involved).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry
from shapely.validation import make_valid

from tools.base import GeoScoutToolError, Quantity
from tools.geo import geodesic_area_km2, polygonal, utm_crs
from tools.numbers import sig
from tools.osm.query import FeatureQuery, Predicate, geometry_json
from tools.osm.reading import empty_frame, match_query, str_col
from tools.osm.sources import Source

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


_SIMPLIFY_DEG = 5e-6  # about 0.5 m: invisible on a map, shrinks traced outlines
_SIMPLIFY_MIN_VERTICES = 100


def to_crs(geom: BaseGeometry, crs: CRS) -> BaseGeometry:
    """A lon/lat geometry in ``crs``."""
    return gpd.GeoSeries([geom], crs="EPSG:4326").to_crs(crs).iloc[0]


def from_crs(geom: BaseGeometry, crs: CRS) -> BaseGeometry:
    """A geometry in ``crs`` back in lon/lat."""
    return gpd.GeoSeries([geom], crs=crs).to_crs("EPSG:4326").iloc[0]


def is_areal(geom: BaseGeometry) -> bool:
    """The geometry has polygon parts of non-zero area."""
    return not polygonal(geom).is_empty and polygonal(geom).area > 0


def lean(geom: BaseGeometry) -> BaseGeometry:
    """Lighter geometry for the map: simplify long outlines, keep 7 decimals (1 cm)."""
    if shapely.get_num_coordinates(geom) > _SIMPLIFY_MIN_VERTICES:
        geom = geom.simplify(_SIMPLIFY_DEG, preserve_topology=True)
    return shapely.transform(geom, lambda c: np.round(c, 7))


@dataclass
class Plan:
    """The geometry of one call, all EPSG:4326 except where named _utm."""

    query: BaseGeometry  # where to look
    reference: BaseGeometry  # what the predicate relates to
    related: BaseGeometry | None  # relate_to (clipped to aoi), when given
    utm: CRS


def plan_geometry(
    aoi: BaseGeometry | None,
    rel: BaseGeometry | None,
    predicate: Predicate,
    distance_m: float | None,
) -> Plan:
    """Where to look and what the predicate relates to: aoi ∩ relate_to, or the one given;
    for within_distance, the buffer around relate_to (else the aoi) measured in metres."""
    reference = rel if rel is not None else aoi
    assert reference is not None
    utm = utm_crs(reference if aoi is None else aoi)
    if predicate == "within_distance":
        assert distance_m is not None
        # 64 segments per quarter circle: the polygon misses the true circle by < 0.01%.
        reach = from_crs(to_crs(reference, utm).buffer(distance_m, quad_segs=64), utm)
        query = reach if aoi is None else reach.intersection(aoi)
    elif rel is not None and is_areal(rel):
        query = polygonal(rel) if aoi is None else polygonal(rel).intersection(aoi)
    elif aoi is not None:
        query = aoi
    else:
        raise GeoScoutToolError(
            "invalid_args",
            "relate_to is a point or a line, which has no area to look inside.",
            "Use predicate 'within_distance' with distance_m, or also give an aoi.",
        )
    query = polygonal(make_valid(query))
    if query.is_empty or query.area == 0:
        raise GeoScoutToolError(
            "no_data",
            "The area asked about and the layer to relate to do not overlap.",
            "Check that relate_to lies inside the aoi, or leave one of them out.",
        )
    related = None
    if rel is not None:
        related = rel if aoi is None else rel.intersection(aoi)
    return Plan(query=query, reference=reference, related=related, utm=utm)


def measure(
    frame: gpd.GeoDataFrame,
    query: FeatureQuery,
    plan: Plan,
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
    poly_union = polygonal(shapely.union_all(polys.values)) if len(polys) else shapely.Polygon()

    related_eff_utm = None
    if plan.related is not None and is_areal(plan.related):
        related_eff = polygonal(plan.related).intersection(covered)
        related_eff_utm = to_crs(related_eff, utm) if not related_eff.is_empty else None
        values["related_area_km2"] = Quantity(
            value=sig(geodesic_area_km2(polygonal(plan.related))), unit="km2"
        )

    def share() -> None:
        if related_eff_utm is None or related_eff_utm.area <= 0:
            return
        inside = poly_union.intersection(related_eff_utm).area if len(polys) else 0.0
        values["covered_share_pct"] = Quantity(
            value=sig(100.0 * inside / related_eff_utm.area),
            unit="%",
            note="share of the related layer (within the covered area) under these features",
        )

    if query.kind == "buildings":
        values["building_count"] = Quantity(value=len(frame), unit="count")
        area_m2 = float(poly_union.area)
        values["building_footprint_area_m2"] = Quantity(
            value=sig(area_m2), unit="m2", note="inside the area looked at; overlaps once"
        )
        values["building_footprint_area_km2"] = Quantity(value=sig(area_m2 / 1e6), unit="km2")
        share()
    elif query.kind == "roads":
        hw = (
            str_col(frame, "highway")
            if "highway" in frame.columns
            else pd.Series("", index=frame.index)
        )
        # Lines of a road layer without classes (e.g. SpaceNet labels) all count as roads.
        classless = (hw == "").to_numpy() & frame["_road_layer"].to_numpy(dtype=bool)
        drivable = is_line & (hw.isin(DRIVABLE_HIGHWAYS).to_numpy() | classless)
        values["road_length_km"] = Quantity(
            value=sig(float(clipped[drivable].length.sum()) / 1000.0),
            unit="km",
            note="streets for motor vehicles (motorway .. residential, links, living streets); each way once",
        )
        values["road_segment_count"] = Quantity(value=int(drivable.sum()), unit="count")
        values["all_highway_length_km"] = Quantity(
            value=sig(float(lines.length.sum()) / 1000.0),
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
            values["feature_area_km2"] = Quantity(value=sig(poly_union.area / 1e6), unit="km2")
            share()
        if len(lines):
            values["feature_length_km"] = Quantity(
                value=sig(float(lines.length.sum()) / 1000.0), unit="km"
            )
    return values, caveats


def feature_layer(frame: gpd.GeoDataFrame, query: FeatureQuery, cap: int) -> list[dict[str, Any]]:
    """The first ``cap`` selected features as GeoJSON Features for the map; tag text is
    carried as bounded properties, never read."""
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
            {"type": "Feature", "geometry": geometry_json(lean(geom)), "properties": props}
        )
    return feats


def outputs_geometry(geoms: list[BaseGeometry]) -> dict[str, Any]:
    """One light geometry of everything shown (polygons unioned), for later plan steps."""
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
    parts = [lean(p) for p in parts if not p.is_empty]
    if not parts:
        return {"type": "GeometryCollection", "geometries": []}
    if len(parts) == 1:
        return geometry_json(parts[0])
    return {"type": "GeometryCollection", "geometries": [geometry_json(p) for p in parts]}


Parts = list[tuple[Source, BaseGeometry]]


def assign_sources(
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
            part = polygonal(src.extent.intersection(query).difference(taken))
            if part.is_empty or part.area == 0:
                continue
            parts.append((src, part))
            taken = taken.union(part)
        per_query[q.label] = parts
    return per_query


def select(
    q: FeatureQuery,
    parts: Parts,
    frames: dict[str, gpd.GeoDataFrame],
    plan: Plan,
    predicate: Predicate,
    distance_m: float | None,
    related: BaseGeometry | None,
) -> gpd.GeoDataFrame:
    """Features of the query that meet the predicate, with geometry clipped to the covered
    part of the query area in column 'clipped'. ``frames`` holds each source's features
    by source name; ``related`` is the whole relate_to layer (lon/lat)."""
    ref_utm = to_crs(plan.reference, plan.utm) if predicate == "within_distance" else None
    selected: list[gpd.GeoDataFrame] = []
    for src, part in parts:
        frame = frames[src.name]
        if frame.empty:
            continue
        sub = frame[match_query(frame, q, src).to_numpy()]
        if q.kind == "buildings":
            sub = sub[sub.geom_type.isin(["Polygon", "MultiPolygon", "Point"])]
        elif q.kind == "roads":
            sub = sub[sub.geom_type.isin(["LineString", "MultiLineString"])]
        sub = sub[sub.intersects(part)]
        if predicate == "within":
            sub = sub[sub.covered_by(plan.reference)]
        elif predicate == "within_distance":
            assert ref_utm is not None and distance_m is not None
            dist = sub.to_crs(plan.utm).distance(ref_utm) if len(sub) else pd.Series(dtype=float)
            sub = sub[(dist <= distance_m).to_numpy()]
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
    sel = empty_frame()
    sel["clipped"] = gpd.GeoSeries([], crs="EPSG:4326")
    sel["_source"] = pd.Series(dtype=object)
    sel["_road_layer"] = pd.Series(dtype=bool)
    return sel
