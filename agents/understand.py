"""Reading a plain-words question into structured facts, without any model.

Used by the input guard (is there a place? is it about tracking people?) and by the rule
planner. Deliberately conservative: when unsure, it leaves a field empty so that the guard
asks instead of guessing.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, Field

Target = Literal["water", "vegetation", "cloud"]

_TARGET_WORDS: dict[str, tuple[str, ...]] = {
    "water": (
        r"open water",
        r"water",
        r"lakes?",
        r"ponds?",
        r"reservoirs?",
        r"flood(?:ed|ing)?",
        r"wetlands?",
        r"potholes?",
    ),
    "vegetation": (
        r"vegetation",
        r"green(?:ery| cover| space)?",
        r"forests?",
        r"trees",
        r"ndvi",
        r"crops?",
        r"grass(?:land)?",
    ),
    "cloud": (r"cloud(?:s|y|iness| cover)?", r"overcast"),
}
# Objects that need a detector / VLM (grounding).
_OBJECT_WORDS = (
    "ships",
    "ship",
    "boats",
    "boat",
    "vessels",
    "vessel",
    "cars",
    "car",
    "vehicles",
    "vehicle",
    "trucks",
    "truck",
    "planes",
    "plane",
    "aircraft",
    "airplanes",
    "containers",
    "cranes",
    "swimming pools",
    "pools",
    "solar panels",
    "tanks",
    "damaged roofs",
    "tents",
)
_PLATFORMS = {
    "landsat": r"\blandsat\b",
    "sentinel-2": r"\bsentinel[- ]?2\b|\bsentinel\b",
    "naip": r"\bnaip\b",
    "drone": r"\bdrone\b|\buav\b",
    "aerial": r"\baerial\b|\bairborne\b",
    "worldview": r"\bworldview\b|\bmaxar\b",
}
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
# Words that start capitalised phrases but are not places.
_NOT_PLACES = {
    "how",
    "what",
    "which",
    "where",
    "when",
    "who",
    "why",
    "show",
    "count",
    "find",
    "is",
    "are",
    "was",
    "were",
    "does",
    "do",
    "did",
    "can",
    "could",
    "please",
    "tell",
    "give",
    "list",
    "map",
    "measure",
    "compare",
    "i",
    "the",
    "a",
    "an",
    "landsat",
    "sentinel",
    "sentinel-2",
    "naip",
    "ndwi",
    "ndvi",
    "osm",
    "openstreetmap",
    "stac",
    "worldview",
    "maxar",
    "in",
    "on",
    "of",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "track",
    "this",
    "that",
    "my",
    "there",
    "here",
    "e",
}


class QuestionFacts(BaseModel):
    """What the rule layer understood of a question."""

    text: str
    place: str | None = None
    place_scale: Literal["auto", "central", "wide"] = "auto"
    coordinates: tuple[float, float] | None = Field(default=None, description="(lon, lat)")
    targets: list[Target] = Field(default_factory=list)
    objects: str | None = None
    wants_roads: bool = False
    wants_buildings: bool = False
    wants_share: bool = False
    wants_change: bool = False
    mentions_image: bool = False
    platform: str | None = None
    dates: list[str] = Field(default_factory=list, description="Periods, liberal date strings")
    future_years: list[int] = Field(default_factory=list)
    intent: str = "unknown"


def _has(text: str, pattern: str) -> bool:
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def extract_place(text: str) -> tuple[str | None, Literal["auto", "central", "wide"]]:
    """Find the place phrase: capitalised words after a preposition, with ", Region" qualifiers."""
    scale: Literal["auto", "central", "wide"] = "auto"
    if re.search(r"\b(central|downtown|centre of|center of|city cent(?:re|er))\b", text, re.I):
        scale = "central"
    elif re.search(r"\b(greater|whole region|wider area|metropolitan)\b", text, re.I):
        scale = "wide"
    word = r"[A-Z][\w'’.-]*(?:-[A-Z][\w'’]*)?"
    phrase = rf"{word}(?:\s+(?:de|del|la|le|du|of|am|an|upon|sur)?\s*{word})*"
    qualified = rf"({phrase}(?:\s*,\s*{phrase}){{0,2}})"
    preps = r"(?:in|around|near|of|at|over|for|across|outside|inside|from|about|by)"
    candidates: list[str] = []
    for m in re.finditer(
        rf"\b{preps}\s+(?:the\s+)?(?:(?:central|downtown|greater|northern|southern|eastern|western)\s+)?{qualified}",
        text,
    ):
        candidates.append(m.group(1))
    # "the Rotterdam port image", "Kampala's buildings": a capitalised word used as adjective.
    for m in re.finditer(
        rf"\bthe\s+{qualified}\s+(?:port|harbou?r|image|scene|area|region|city|town|lakes?|airport)\b",
        text,
    ):
        candidates.append(m.group(1))
    for m in re.finditer(qualified, text):
        candidates.append(m.group(1))
    for cand in candidates:
        cleaned = _clean_place(cand)
        if cleaned:
            return cleaned, scale
    return None, scale


def _clean_place(cand: str) -> str | None:
    parts = [p.strip() for p in cand.split(",")]
    kept: list[str] = []
    for part in parts:
        words = part.split()
        while words and words[0].lower().strip(".") in _NOT_PLACES:
            words = words[1:]
        while words and words[-1].lower().strip(".") in _NOT_PLACES:
            words = words[:-1]
        if words:
            kept.append(" ".join(words))
        elif not kept:
            continue
        else:
            break
    if not kept:
        return None
    place = ", ".join(kept).strip(" .,'’")
    if len(place) < 2 or place.lower() in _NOT_PLACES:
        return None
    return place


def _dates(text: str, today: dt.date) -> tuple[list[str], list[int]]:
    periods: list[str] = []
    low = text.lower()
    # "after the May 2011 tornado": the event day is unknown here, so start at the month.
    m = re.search(
        rf"\b(after|since|following)\s+(?:the\s+)?(?:({_MONTHS})\s+)?((?:19|20)\d\d)\b", low
    )
    if m:
        month = m.group(2)
        periods.append(f"from {month} {m.group(3)}" if month else f"from {m.group(3)}")
    m = re.search(rf"\bbefore\s+(?:the\s+)?(?:({_MONTHS})\s+)?((?:19|20)\d\d)\b", low)
    if m and not periods:
        periods.append(f"before {m.group(1) + ' ' if m.group(1) else ''}{m.group(2)}")
    if not periods:
        for m in re.finditer(
            rf"\b(?:(spring|summer|autumn|fall|winter|{_MONTHS})\s+)?((?:19|20)\d\d)\b", low
        ):
            periods.append(f"{m.group(1)} {m.group(2)}" if m.group(1) else m.group(2))
    years = [int(y) for y in re.findall(r"\b((?:19|20)\d\d)\b", low)]
    future = sorted({y for y in years if y > today.year})
    return periods, future


def understand(text: str, today: dt.date | None = None) -> QuestionFacts:
    """Structured facts from a question (pure function, no I/O except the coordinate parser)."""
    from tools.geocode import parse_coordinates

    today = today or dt.date.today()
    facts = QuestionFacts(text=text)
    low = text.lower()
    coords = parse_coordinates(text)
    if coords is not None:
        facts.coordinates = coords
    place, scale = extract_place(text)
    facts.place = place if coords is None else None
    facts.place_scale = scale
    for target, words in _TARGET_WORDS.items():
        if any(_has(low, rf"\b{w}\b") for w in words):
            facts.targets.append(target)  # type: ignore[arg-type]
    # "water" also appears in "waterfront"/"water towers"; "cloud" wins when the question is
    # about how cloudy an image is.
    if "cloud" in facts.targets and _has(low, r"\bhow cloudy\b|\bcloud cover\b"):
        facts.targets = ["cloud"]
    for obj in _OBJECT_WORDS:
        if _has(low, rf"\b{obj}\b"):
            facts.objects = obj
            break
    facts.wants_roads = _has(low, r"\b(roads?|streets?|highways?|road network)\b")
    facts.wants_buildings = _has(low, r"\b(buildings?|houses?|homes?|roofs?|structures?)\b")
    facts.wants_share = _has(low, r"\b(share|percent|percentage|fraction|proportion|cover)\b")
    facts.wants_change = _has(
        low,
        r"\b(change[ds]?|changing|grew|shrank|compare|comparison|difference|evolv\w*)\b|\bbetween\s+\d{4}\s+and\s+\d{4}\b",
    )
    facts.mentions_image = _has(
        low,
        r"\b(image|images|imagery|scene|scenes|photo|picture|satellite|drone|aerial|mosaic|tile)\b",
    )
    for name, pattern in _PLATFORMS.items():
        if _has(low, pattern):
            facts.platform = name
            break
    facts.dates, facts.future_years = _dates(text, today)
    facts.intent = _intent(facts)
    return facts


def _intent(f: QuestionFacts) -> str:
    if f.objects and ("damaged roofs" not in (f.objects or "")):
        return "detect"
    if f.wants_change and f.targets and len(f.dates) >= 2:
        return "change"
    if f.targets:
        return f"measure_{f.targets[0]}"
    if f.wants_roads:
        return "roads"
    if f.wants_buildings and f.mentions_image:
        return "buildings_in_image"
    if f.wants_buildings:
        return "buildings"
    if f.objects:
        return "detect"
    if f.mentions_image:
        return "imagery"
    return "unknown"


_TRACKING = re.compile(
    r"\b(track|trace|follow|stalk|spy|spying|surveil\w*|monitor|locate|identify|recogni[sz]e|where\s+(?:does|is|did|do))\b"
    r"[^.?!]{0,80}\b(neighbou?r|wife|husband|ex|girlfriend|boyfriend|partner|person|people|him|her|"
    r"someone|somebody|individual|employee|colleague|child|kid|son|daughter|face|faces|"
    r"licen[cs]e plates?|number plates?|phone|protesters?|journalists?)\b"
    r"|\b(his|her|their|my neighbou?r'?s?)\s+(car|house|home|movements?|location|whereabouts)\b"
    r"|\b(who lives (?:at|in)|home address of|face recognition|facial recognition)\b",
    re.IGNORECASE,
)
_TARGETING = re.compile(
    r"\b(bomb|strike|missile|shell|attack|target(?:ing)? for|sabotage|artillery|drone strike)\b",
    re.IGNORECASE,
)


def tracking_request(text: str) -> bool:
    return _TRACKING.search(text) is not None


def targeting_request(text: str) -> bool:
    return _TARGETING.search(text) is not None
