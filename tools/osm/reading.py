"""Reading osm_overlay's sources into one frame shape: geometry, ``osm_id``, tag columns.

OSM XML extracts are read with osmnx (PBF ones through pyosmium into the same reader),
vector files with pyogrio, Overpass through osmnx (cached under ``ctx.cache_dir``). Tag
text is untrusted data: it stays in the frame's columns and is never interpreted.
"""

from __future__ import annotations

import math
import tempfile
import threading
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
from shapely.geometry.base import BaseGeometry

from tools import access
from tools.access import AccessPolicy
from tools.base import GeoScoutToolError, ToolContext
from tools.geo import polygonal
from tools.osm.query import FeatureQuery, TagValue, merge_tags, tag_values
from tools.osm.sources import ID_COLUMNS, Source, check_vector_file

_PBF_CHECK_EVERY = 100_000  # elements between two checks of the time budget
_OVERPASS_LOCK = threading.Lock()  # osmnx settings are process-global


def empty_frame() -> gpd.GeoDataFrame:
    """A frame with no features, in the shape every reader returns."""
    return gpd.GeoDataFrame({"osm_id": pd.Series(dtype=object)}, geometry=[], crs="EPSG:4326")


def _from_osmnx(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """osmnx frames are indexed by (element, id); make that a plain 'way/123' column."""
    if gdf.empty:
        return empty_frame()
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
    polygon = polygonal(area)
    try:
        gdf = ox.features_from_xml(path, polygon=polygon, tags=tags)
    except InsufficientResponseError:
        return empty_frame()  # nothing matches: a valid answer (zero), not an error
    except (ET.ParseError, OSError, EOFError, ValueError) as exc:
        raise GeoScoutToolError(
            "bad_data",
            f"The OpenStreetMap extract {src.name} could not be read.",
            "Check that the file is complete OSM XML (.osm or .osm.bz2), or remove it.",
        ) from exc
    return _from_osmnx(gdf)


def _read_osm_pbf(
    src: Source, area: BaseGeometry, tags: dict[str, TagValue], policy: AccessPolicy
) -> gpd.GeoDataFrame:
    """A .osm.pbf extract read the way an XML one is: pyosmium writes the elements with the
    wanted keys inside the area's box (plus the nodes and ways they reference) as OSM XML,
    which osmnx reads, so both formats give the same features."""
    assert src.path is not None
    path = policy.local_path(src.path)
    policy.check_time("reading the OpenStreetMap extract")
    with tempfile.TemporaryDirectory(prefix="geoscout-osm-") as tmp:
        xml = Path(tmp) / "extract.osm"
        try:
            _pbf_to_xml(path, area, tags, xml, policy)
        except (RuntimeError, OSError, ValueError) as exc:  # libosmium's read errors
            raise GeoScoutToolError(
                "bad_data",
                f"The OpenStreetMap extract {src.name} could not be read.",
                "Check that the file is a complete OSM PBF file (.osm.pbf), or remove it.",
            ) from exc
        return _read_osm_xml(
            replace(src, path=xml), area, tags, AccessPolicy.build(data_dirs=[xml.parent])
        )


def _pbf_to_xml(
    path: Path, area: BaseGeometry, tags: dict[str, TagValue], out: Path, policy: AccessPolicy
) -> None:
    import osmium

    w, s, e, n = area.bounds

    def inside(loc: Any) -> bool:
        return bool(loc.valid()) and w <= loc.lon <= e and s <= loc.lat <= n

    keys = sorted(tags)
    processor = (
        osmium.FileProcessor(str(path)).with_locations().with_filter(osmium.filter.KeyFilter(*keys))
    )
    with osmium.BackReferenceWriter(str(out), ref_src=str(path), overwrite=True) as writer:
        for i, obj in enumerate(processor, 1):
            if isinstance(obj, osmium.osm.Node):
                keep = inside(obj.location)
            elif isinstance(obj, osmium.osm.Way):
                keep = any(inside(nd.location) for nd in obj.nodes)
            else:
                keep = True  # a relation's outline is built and clipped by osmnx
            if keep:
                writer.add(obj)
            if i % _PBF_CHECK_EVERY == 0:
                policy.check_time("reading the OpenStreetMap extract")


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
        return empty_frame()
    if frame.crs is None:
        frame = frame.set_crs("EPSG:4326")
    frame = frame.to_crs("EPSG:4326")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty].copy()
    ids = None
    for col in ID_COLUMNS:
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
            return empty_frame()
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


def read_source(
    src: Source, ctx: ToolContext, area: BaseGeometry, queries: list[FeatureQuery]
) -> gpd.GeoDataFrame:
    """The features of one source inside ``area`` answering any of the queries."""
    tags = merge_tags(queries)
    policy = AccessPolicy.from_context(ctx)
    if src.fmt == "osm_xml":
        return _read_osm_xml(src, area, tags, policy)
    if src.fmt == "osm_pbf":
        return _read_osm_pbf(src, area, tags, policy)
    if src.fmt == "overpass":
        return _read_overpass(ctx, area, tags)
    return _read_vector(src, area, policy)


def str_col(frame: pd.DataFrame, key: str) -> pd.Series:
    """A tag column as stripped text, "" where the tag is missing."""
    return frame[key].where(frame[key].notna(), "").astype(str).str.strip()


def match_query(frame: gpd.GeoDataFrame, query: FeatureQuery, src: Source) -> pd.Series:
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
        col = str_col(frame, key)
        if want is True:
            mask |= (col != "") & (col.str.lower() != "no")
        elif isinstance(want, str):
            mask |= col == want
        else:
            mask |= col.isin(tag_values(want))
    return mask
