"""`geocode`: a place name (or coordinates) -> an area of interest, with its source.

Offline it reads the GeoNames gazetteer (:mod:`tools.geocode.gazetteer`); online it asks
Nominatim (:mod:`tools.geocode.nominatim`). Both paths return the same outputs and one
"place" evidence item with typed provenance.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.base import (
    EvidenceDraft,
    GeoScoutToolError,
    Quantity,
    ToolContext,
    ToolResult,
    ToolSpec,
    label_text,
)
from tools.geo import AOI, to_rfc7946
from tools.geocode.coordinates import CoordinateError, parse_coordinates_strict
from tools.geocode.gazetteer import GEONAMES_LICENSE, Gazetteer, load_gazetteer
from tools.geocode.nominatim import OSM_LICENSE, resolve_nominatim
from tools.geocode.resolve import (
    Resolved,
    Scale,
    resolve_offline,
)
from tools.numbers import sig
from tools.provenance import Provenance

TOOL_NAME = "geocode"
# The credit each data license asks for next to the place (none for typed coordinates).
_ATTRIBUTION = {
    GEONAMES_LICENSE: "GeoNames (www.geonames.org), CC BY 4.0",
    OSM_LICENSE: "© OpenStreetMap contributors, ODbL 1.0",
}


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
    values["aoi_area_km2"] = Quantity(value=sig(area), unit="km2")
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
    details: dict[str, Any] = {"point": [round(res.lon, 6), round(res.lat, 6)]}
    if res.geonameid:
        details["geonameid"] = res.geonameid
    if res.osm:
        details["osm"] = res.osm
    provenance = Provenance(
        tool=TOOL_NAME,
        arguments=args.model_dump(mode="json"),
        method=res.method,
        source=res.source,
        license=res.license,
        attribution=_ATTRIBUTION.get(res.license),
        details=details,
    )
    caveats = list(res.caveats)
    if area > 5_000:
        caveats.append(
            f"The area is large ({sig(area):,.0f} km2): imagery and models may refuse it; "
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
    summary = f"{res.title}{pop}: area of interest {sig(area):,g} km2 ({res.source})."
    return ToolResult(
        status="ok",
        summary=summary,
        outputs={"aoi": aoi_out, "place": place_out},
        evidence=[evidence],
        caveats=caveats,
    )


def _label(args: dict[str, Any]) -> str:
    place = label_text(args.get("place"))
    if place and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*,\s*-?\d+(\.\d+)?\s*", place):
        return f"Locating the point {place} (lat, lon)"
    return f"Finding {place}" if place else "Finding the place"


SPEC = ToolSpec(
    name=TOOL_NAME,
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
    label=_label,
    produces=("place",),
)
