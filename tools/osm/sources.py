"""Where osm_overlay's features come from: local extracts and layers, or Overpass.

* OSM extracts under ``ctx.data_dirs``: XML (``*.osm``, ``*.osm.bz2``, ``*.osm.xml``),
  scanned in one streaming pass through the access policy (decompressed size within the
  budget), and PBF (``*.osm.pbf``), scanned with pyosmium;
* vector files (GeoJSON / GeoPackage) that hold OSM-style tags or are clearly building or
  road layers (Microsoft footprints, SpaceNet labels);
* online: the Overpass server (one source whose extent is the query area).

Extents and timestamps are cached per file (by size and mtime) under ``ctx.cache_dir``.
Licenses come from the data folder's MANIFEST.tsv when it names the file, else OSM's.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Literal, cast

import numpy as np
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from tools.access import AccessPolicy
from tools.base import GeoScoutToolError, ToolContext
from tools.osm.query import OSM_KEYS, FeatureQuery
from tools.provenance import VectorSource

log = logging.getLogger(__name__)

OSM_ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0"
OSM_LICENSE = "ODbL-1.0 (OpenStreetMap contributors)"

ID_COLUMNS = ("osm_id", "osmid", "@id")
_DATE_COLUMNS = ("capture_dates_range", "capture_date", "timestamp", "osm_timestamp", "date")
_OSM_XML_SUFFIXES = (".osm", ".osm.bz2", ".osm.xml", ".osm.gz", ".osm.xml.bz2")
_OSM_PBF_SUFFIXES = (".osm.pbf",)
_VECTOR_SUFFIXES = (".geojson", ".gpkg")

_INDEX_VERSION = 4

_INDEX_LOCK = threading.Lock()
# A .osm.pbf scan checks the time budget every this many elements.
_PBF_CHECK_EVERY = 100_000

SourceFormat = Literal["osm_xml", "osm_pbf", "vector", "overpass"]


@dataclass(frozen=True)
class Source:
    """Where features come from: a local file or the Overpass server."""

    name: str  # display name: path relative to its data folder, or the server URL
    fmt: SourceFormat
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
        """Whether this source can hold features of the query (OSM data holds every tag)."""
        if self.fmt != "vector":
            return True
        if query.kind == "buildings":
            return self.building_layer or "building" in self.tag_keys
        if query.kind == "roads":
            return self.road_layer or "highway" in self.tag_keys
        return any(k in self.tag_keys for k in query.tags)

    def vector_source(self, retrieved: str | None = None) -> VectorSource:
        """The source for provenance: its display name, never its local path."""
        return VectorSource(
            name=self.name,
            format=self.fmt,
            timestamp=self.timestamp or "unknown",
            license=self.license,
            attribution=self.attribution,
            extent_bbox=[round(v, 6) for v in self.extent.bounds],
            server=self.name if self.fmt == "overpass" else None,
            retrieved=retrieved,
        )

    def describe(self) -> dict[str, Any]:
        """The source as a plain record, with its local path (for the coverage listing)."""
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


def scan_osm_pbf(path: Path, policy: AccessPolicy | None = None) -> dict[str, Any]:
    """Extent (the header's bounding box, else the node extent) and timestamps of an OSM PBF
    file, read with pyosmium. PBF blocks are at most 32 MiB once inflated (libosmium checks),
    so memory stays flat; the scan stops when the policy's time budget runs out."""
    import osmium

    policy = policy or AccessPolicy.build(data_dirs=[path.parent])
    real = str(policy.local_path(path))
    reader = osmium.io.Reader(real, osmium.osm.osm_entity_bits.NOTHING)
    try:
        header = reader.header()
    finally:
        reader.close()
    hbox = header.box()
    bounds: list[float] | None = None
    if hbox.valid():
        bounds = [
            hbox.bottom_left.lon,
            hbox.bottom_left.lat,
            hbox.top_right.lon,
            hbox.top_right.lat,
        ]
    header_ts = header.get("osmosis_replication_timestamp") or header.get("timestamp") or None
    max_ts = ""
    lon_min = lat_min = math.inf
    lon_max = lat_max = -math.inf
    n_nodes = 0
    for n_elements, obj in enumerate(osmium.FileProcessor(real), 1):
        ts = getattr(obj, "timestamp", None)
        if ts is not None and ts.timestamp() > 0:
            text = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
            max_ts = max(max_ts, text)
        if isinstance(obj, osmium.osm.Node) and obj.location.valid():
            n_nodes += 1
            lon, lat = obj.location.lon, obj.location.lat
            lon_min, lon_max = min(lon_min, lon), max(lon_max, lon)
            lat_min, lat_max = min(lat_min, lat), max(lat_max, lat)
        if n_elements % _PBF_CHECK_EVERY == 0:
            policy.check_time("scanning the OpenStreetMap extract")
    if bounds is None or not all(math.isfinite(v) for v in bounds):
        bounds = [lon_min, lat_min, lon_max, lat_max] if n_nodes else None
    return {
        "bounds": bounds,
        "timestamp": max_ts or header_ts,
        "timestamp_kind": "latest element edit" if max_ts else ("file" if header_ts else None),
        "generator": header.get("generator") or None,
        "nodes": n_nodes,
        "bytes": Path(real).stat().st_size,
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
    candidates = [f for f in fields if f in OSM_KEYS]
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
        "has_osm_ids": any(c in fields for c in ID_COLUMNS),
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
                    else "osm_pbf"
                    if low.endswith(_OSM_PBF_SUFFIXES)
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
        or (fmt in ("osm_xml", "osm_pbf") and not license_text)
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
                    scan = {"osm_xml": scan_osm_xml, "osm_pbf": scan_osm_pbf}.get(fmt, scan_vector)
                    meta = scan(path, policy)
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
    if fmt in ("osm_xml", "osm_pbf"):
        return Source(
            name=name,
            fmt="osm_pbf" if fmt == "osm_pbf" else "osm_xml",
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


def no_data_error(
    sources: list[Source], queries: list[FeatureQuery], query_bbox: tuple[float, ...]
) -> GeoScoutToolError:
    """The "no_data" error when no local source covers the area: how far the nearest are."""
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
        ".osm.bz2, .osm.pbf, or GeoJSON/GeoPackage with OSM tags) to the data folder, or use the online "
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
