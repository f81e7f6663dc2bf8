"""The rule planner: question facts -> Plan. The permanent fallback when no LLM is available.

It sees only the question (and an optional area or uploaded raster), never tool output: the
plan is fixed before any untrusted data is read (DESIGN.md principle 2).
"""

from __future__ import annotations

from typing import Any

from agents.schemas import Plan, PlanStep
from agents.understand import QuestionFacts


class PlanningError(Exception):
    """The question cannot be turned into a plan; ``clarify`` says what to ask."""

    def __init__(self, message: str, clarify: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.clarify = clarify


class _Builder:
    def __init__(self) -> None:
        self.steps: list[PlanStep] = []

    def add(self, tool: str, args: dict[str, Any], why: str, needs: list[str] | None = None) -> str:
        sid = f"s{len(self.steps) + 1}"
        refs = sorted({v.split(".")[0][1:] for v in _ref_values(args)} | set(needs or []))
        self.steps.append(PlanStep(id=sid, tool=tool, args=args, needs=refs, why=why))
        return sid


def _ref_values(args: dict[str, Any]) -> list[str]:
    return [v for v in args.values() if isinstance(v, str) and v.startswith("@")]


def rule_plan(
    facts: QuestionFacts, bbox: list[float] | None = None, raster: str | None = None
) -> Plan:
    """Turn question facts into a plan, or raise PlanningError with a clarification."""
    b = _Builder()
    aoi: Any = None
    notes: list[str] = []
    if bbox is not None:
        aoi = list(bbox)
        notes.append("area of interest given with the question")
    elif facts.coordinates is not None:
        lon, lat = facts.coordinates
        s = b.add(
            "geocode",
            {"place": f"{lat:.5f}, {lon:.5f}", "scale": facts.place_scale},
            "Turn the coordinates into an area of interest",
        )
        aoi = f"@{s}.aoi"
    elif facts.place:
        s = b.add(
            "geocode", {"place": facts.place, "scale": facts.place_scale}, f"Find {facts.place}"
        )
        aoi = f"@{s}.aoi"
    elif raster is None:
        raise PlanningError(
            "no place or area in the question",
            clarify="Which area do you mean? Name a place, give coordinates, or draw an area on the map.",
        )

    def search(datetime: str | None = None, why: str = "Search imagery over the area") -> str:
        args: dict[str, Any] = {}
        if aoi is not None:
            args["aoi"] = aoi
        if datetime:
            args["datetime"] = datetime
        if facts.platform:
            args["platform"] = facts.platform
        return b.add("stac_search", args, why)

    def image_source(datetime: str | None = None) -> dict[str, Any]:
        if raster is not None:
            return {"raster": raster}
        return {"scene": f"@{search(datetime)}.scene"}

    intent = facts.intent
    if intent == "change":
        first, last = facts.dates[0], facts.dates[-1]
        target = facts.targets[0]
        for period in (first, last):
            s = search(period, f"Find imagery from {period}")
            args: dict[str, Any] = {"scene": f"@{s}.scene", "target": target}
            if aoi is not None:
                args["aoi"] = aoi
            b.add("segment", args, f"Measure {target} in {period}")
    elif intent.startswith("measure_"):
        target = facts.targets[0]
        args = {**image_source(facts.dates[0] if facts.dates else None), "target": target}
        if aoi is not None:
            args["aoi"] = aoi
        b.add("segment", args, f"Measure {target}")
    elif intent == "roads":
        if aoi is None:
            raise PlanningError(
                "roads need an area", clarify="Which area should I measure roads in?"
            )
        b.add("osm_overlay", {"aoi": aoi, "features": "roads"}, "Measure mapped roads")
    elif intent == "buildings_in_image":
        src = image_source(facts.dates[0] if facts.dates else None)
        args = {
            "features": "buildings",
            "predicate": "intersects",
            "relate_label": "imaged footprint",
        }
        if "scene" in src:
            args["relate_to"] = src["scene"].replace(".scene", ".coverage")
        elif aoi is not None:
            args["aoi"] = aoi
        b.add("osm_overlay", args, "Count mapped buildings on the imaged ground")
    elif intent == "buildings":
        b.add("osm_overlay", {"aoi": aoi, "features": "buildings"}, "Count mapped buildings")
    elif intent == "detect":
        args = {**image_source(facts.dates[0] if facts.dates else None), "query": facts.objects}
        if aoi is not None:
            args["aoi"] = aoi
        b.add("ground", args, f"Find {facts.objects} in the image")
    elif intent == "imagery":
        if raster is None:
            search(facts.dates[0] if facts.dates else None)
    else:
        raise PlanningError(
            "the question does not ask for something GeoScout can measure",
            clarify=(
                "What would you like to know about this area? I can measure water, vegetation "
                "or cloud on imagery, count mapped buildings, measure roads, compare two dates, "
                "or find objects when a vision model is configured."
            ),
        )
    return Plan(steps=b.steps, intent=intent, planner="rules", notes=notes)
