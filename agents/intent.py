"""The typed intent of one question: what is asked, about what, where, when, in which units.

Two parsers produce it (DESIGN.md "understand"): the deterministic parser
(:mod:`agents.parse`: gazetteer n-grams with fuzzy matching, multilingual lexicons) and the
embedded LLM as a schema-constrained semantic parser (:mod:`agents.llm_parse`), cross-checked
against the deterministic one (:mod:`agents.understanding`). The plan is compiled from it by
code (:mod:`agents.recipes`). Untrusted tool output never reaches either parser: the intent
is fixed from the user's words (and the previous turn's intent) only.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# What is asked. "measure": an amount (area, length, share); "count": how many;
# "locate": where / show me; "compare": two places or targets; "change": one target over two
# or more dates; "describe": what is in an image/area; "list_imagery": which scenes exist;
# "capabilities": what can you do / what data do you have; "out_of_scope": a topic no tool
# covers; "unknown": nothing recognised.
Task = Literal[
    "measure",
    "count",
    "locate",
    "compare",
    "change",
    "describe",
    "list_imagery",
    "capabilities",
    "out_of_scope",
    "unknown",
]

# Targets GeoScout's tools can measure. Spectral/ONNX segmentation: water, vegetation,
# cloud, cloud_shadow. OpenStreetMap: buildings, roads. A detector/VLM: objects (the query
# in ``Intent.objects``). "imagery": the scenes themselves (list / describe).
Target = Literal[
    "water", "vegetation", "cloud", "cloud_shadow", "buildings", "roads", "objects", "imagery"
]

# Units a user may ask a figure in (canonical keys; agents.units converts).
AreaUnit = Literal["km2", "ha", "acre", "mi2", "m2"]
LengthUnit = Literal["km", "mi", "m"]
Language = Literal["en", "fr", "es", "de"]

# Safety of the request, decided before any tool runs (agents.safety):
# "ok"; "person": locating, identifying, following or watching a private person, their home,
# vehicle or routine (including from a photo); "targeting": selecting or ranking places or
# infrastructure to attack, disable or damage; "crowd": surveillance of protesters,
# demonstrators or other groups of people to identify or follow them.
SafetyClass = Literal["ok", "person", "targeting", "crowd"]


class PlaceMention(BaseModel):
    """A place as the user wrote it and what the gazetteer made of it."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="As written in the question, e.g. 'accomac virginia'")
    name: str = Field(description="The name to geocode, e.g. 'Accomac, Virginia' (typos corrected)")
    label: str | None = Field(
        default=None, description="Gazetteer label, e.g. 'Accomac, Virginia, US'"
    )
    kind: Literal["city", "region", "country", "continent", "landmark", "unknown"] = "unknown"
    geonameid: int | None = None
    corrected: bool = Field(default=False, description="A fuzzy match fixed a typo")
    score: float = Field(default=1.0, ge=0.0, le=1.0)


class DateSpec(BaseModel):
    """One date or period the question names, as written and as an interval."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="As written, e.g. '2009', 'mai 2011', 'since 2009'")
    start: dt.date
    end: dt.date

    @property
    def label(self) -> str:
        """Short label for people and for stac_search's datetime: '2009', '2011-05', or a range."""
        if (
            self.start.month == 1
            and self.start.day == 1
            and self.end == dt.date(self.start.year, 12, 31)
        ):
            return str(self.start.year)
        if (
            self.start.day == 1
            and self.start.year == self.end.year
            and self.start.month == self.end.month
        ):
            return f"{self.start.year}-{self.start.month:02d}"
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


class Relation(BaseModel):
    """A spatial relation between the target and another layer: 'roads near the lakes',
    'buildings within 50 m of the river'."""

    model_config = ConfigDict(extra="forbid")

    predicate: Literal["intersects", "within", "within_distance"]
    other: Target
    distance_m: float | None = None


class Filters(BaseModel):
    """Conditions on the data the user set: cloud limit, object size, damage state."""

    model_config = ConfigDict(extra="forbid")

    max_cloud_pct: float | None = Field(default=None, ge=0, le=100)
    min_area_km2: float | None = Field(default=None, ge=0)
    max_area_km2: float | None = Field(default=None, ge=0)
    largest_n: int | None = Field(default=None, ge=1, description="'the 3 biggest lakes'")
    condition: Literal["destroyed", "damaged"] | None = Field(
        default=None, description="Buildings after a disaster"
    )
    platform: str | None = Field(default=None, description="landsat, sentinel-2, naip, drone, ...")
    max_gsd_m: float | None = None


class Intent(BaseModel):
    """What one question asks, in a form code can compile into a plan."""

    model_config = ConfigDict(extra="forbid")

    task: Task = "unknown"
    targets: list[Target] = Field(default_factory=list, description="Primary target first")
    objects: str | None = Field(default=None, description="Detector query: 'ships', 'cars'")
    topic: str | None = Field(
        default=None, description="Out-of-scope topic as a short phrase: 'air quality'"
    )
    places: list[PlaceMention] = Field(default_factory=list)
    coordinates: tuple[float, float] | None = Field(default=None, description="(lon, lat)")
    scale: Literal["auto", "central", "wide"] = "auto"
    radius_km: float | None = Field(default=None, gt=0, description="'within 10 km of ...'")
    this_area: bool = Field(default=False, description="Refers to a drawn area or given bbox")
    this_image: bool = Field(default=False, description="Refers to an uploaded image")
    on_image: bool = Field(
        default=False, description="Asks about what an image shows ('in the drone image')"
    )
    dates: list[DateSpec] = Field(default_factory=list, description="In the order written")
    every_year: bool = Field(default=False, description="'every year', 'each year', 'yearly'")
    relations: list[Relation] = Field(default_factory=list)
    filters: Filters = Field(default_factory=Filters)
    wants_share: bool = Field(default=False, description="A share / percentage is asked")
    area_unit: AreaUnit | None = None
    length_unit: LengthUnit | None = None
    language: Language = "en"
    safety: SafetyClass = "ok"
    safety_reason: str | None = None
    mentions_person: bool = Field(
        default=False, description="A person or group of people is the subject"
    )
    mentions_target: bool = Field(
        default=False, description="Infrastructure or a place is framed as something to harm"
    )
    unexplained: list[str] = Field(
        default_factory=list,
        description="Words of the question neither the lexicon nor the gazetteer accounts for",
    )
    followup: bool = Field(default=False, description="Refers to the previous question")
    inherited: list[str] = Field(
        default_factory=list, description="Fields taken from the previous turn: 'place', ..."
    )
    source: Literal["rules", "llm", "combined"] = "rules"
    notes: list[str] = Field(
        default_factory=list, description="What was assumed or corrected, for people"
    )

    @property
    def place(self) -> PlaceMention | None:
        return self.places[0] if self.places else None

    @property
    def target(self) -> Target | None:
        return self.targets[0] if self.targets else None

    def signature(self) -> dict[str, object]:
        """The fields that decide the plan (two wordings of one need compare equal)."""
        return {
            "task": self.task,
            "targets": sorted(self.targets),
            "objects": self.objects,
            "places": [p.label or p.name for p in self.places],
            "coordinates": self.coordinates,
            "dates": [(d.start.isoformat(), d.end.isoformat()) for d in self.dates],
            "relations": [r.model_dump() for r in self.relations],
            "filters": self.filters.model_dump(exclude_none=True),
            "area_unit": self.area_unit,
            "length_unit": self.length_unit,
            "wants_share": self.wants_share,
            "safety": self.safety,
        }
