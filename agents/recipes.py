"""Plans compiled from the intent by code: one recipe per kind of question.

The recipes cover what the tools can do (measure a target on imagery, over one or several
dates; count or measure mapped features, alone or related to a measured layer; list imagery
with filters; find objects; say what data exists). Each also records the parts of the
question it cannot do (``Plan.notes`` starting with "not done:"), so the answer says them
instead of silently answering something else. An intent no recipe covers raises
:class:`NotCovered`, and the LLM planner (when there is one) gets the question.

The plan is fixed from the question before any tool output is read (DESIGN.md principle 2).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from agents.intent import DateSpec, Intent
from agents.lexicon import lexicon
from agents.schemas import Plan, PlanStep

SEGMENT_TARGETS = ("water", "vegetation", "cloud", "cloud_shadow")
OSM_TARGETS = ("buildings", "roads")
# "every year from 2009 to 2020" asks for many searches; beyond this the first and last
# years are measured and the answer says so.
MAX_DATES = 5
_LABEL = {
    "water": "water",
    "vegetation": "vegetation",
    "cloud": "cloud",
    "cloud_shadow": "cloud shadow",
    "buildings": "buildings",
    "roads": "roads",
}


class PlanningError(Exception):
    """The question cannot be turned into a plan; ``clarify`` says what to ask."""

    def __init__(self, message: str, clarify: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.clarify = clarify


class NotCovered(PlanningError):
    """No recipe expresses this intent (the LLM planner may still)."""


class _Builder:
    def __init__(self) -> None:
        self.steps: list[PlanStep] = []
        self.notes: list[str] = []

    def add(self, tool: str, args: dict[str, Any], why: str) -> str:
        sid = f"s{len(self.steps) + 1}"
        refs = sorted(
            {
                v.split(".")[0][1:]
                for v in args.values()
                if isinstance(v, str) and v.startswith("@")
            },
            key=lambda s: int(s[1:]),
        )
        self.steps.append(PlanStep(id=sid, tool=tool, args=args, needs=refs, why=why))
        return sid

    def not_done(self, what: str) -> None:
        self.notes.append(f"not done: {what}")


def _area(intent: Intent, b: _Builder, bbox: list[float] | None, raster: str | None) -> Any:
    """The area of interest as a plan value (a bbox or ``@sN.aoi``), or None for an upload."""
    if bbox is not None and (intent.this_area or not intent.places) and intent.coordinates is None:
        return list(bbox)
    scale = intent.scale
    if intent.coordinates is not None:
        lon, lat = intent.coordinates
        args: dict[str, Any] = {"place": f"{lat:.5f}, {lon:.5f}", "scale": scale}
        if intent.radius_km:
            args["radius_km"] = intent.radius_km
        return f"@{b.add('geocode', args, 'Turn the coordinates into an area')}.aoi"
    if intent.places:
        place = intent.places[0]
        args = {"place": place.name, "scale": scale}
        if intent.radius_km:
            args["radius_km"] = intent.radius_km
        return f"@{b.add('geocode', args, f'Find {place.label or place.name}')}.aoi"
    if raster is not None:
        return None
    if bbox is not None:
        return list(bbox)
    raise PlanningError(
        "no place or area in the question",
        clarify="Which area do you mean? Name a place (for example 'Joplin, Missouri'), give "
        "coordinates ('47.02 N, 99.15 W'), or draw an area on the map.",
    )


def _search(b: _Builder, intent: Intent, aoi: Any, date: DateSpec | None) -> str:
    args: dict[str, Any] = {}
    if aoi is not None:
        args["aoi"] = aoi
    if date is not None:
        args["datetime"] = f"{date.start.isoformat()}/{date.end.isoformat()}"
    f = intent.filters
    if f.platform:
        args["platform"] = f.platform
    if f.max_cloud_pct is not None:
        args["max_cloud"] = f.max_cloud_pct
    if f.max_gsd_m is not None:
        args["max_gsd_m"] = f.max_gsd_m
    when = f" from {_date_label(date)}" if date else ""
    return b.add("stac_search", args, f"Search imagery{when}")


def _date_label(d: DateSpec) -> str:
    return "the latest imagery" if d.text == "now" else d.text


def _image(
    b: _Builder, intent: Intent, aoi: Any, raster: str | None, date: DateSpec | None
) -> dict[str, Any]:
    if raster is not None and (intent.this_image or not (intent.places or intent.coordinates)):
        return {"raster": raster}
    return {"scene": f"@{_search(b, intent, aoi, date)}.scene"}


def _segment(b: _Builder, target: str, src: dict[str, Any], aoi: Any, when: str = "") -> str:
    args: dict[str, Any] = {**src, "target": target}
    if aoi is not None:
        args["aoi"] = aoi
    return b.add("segment", args, f"Measure {_LABEL.get(target, target)}{when}")


def _dates_for(intent: Intent, b: _Builder) -> list[DateSpec]:
    """The dates a change is measured on: as written; "since 2009" (or one year alone) is
    that year against the latest imagery after it."""
    dates = list(intent.dates)
    if len(dates) == 1:
        d = dates[0]
        first_end = dt.date(d.start.year, 12, 31)
        last_end = d.end if d.end > first_end else dt.date.today()
        if last_end > first_end:
            dates = [
                DateSpec(text=str(d.start.year), start=d.start, end=first_end),
                DateSpec(text="now", start=first_end + dt.timedelta(days=1), end=last_end),
            ]
    if intent.every_year and len(dates) >= 2:
        first, last = dates[0].start.year, dates[-1].start.year
        years = list(range(min(first, last), max(first, last) + 1))
        if len(years) > MAX_DATES:
            b.not_done(
                f"every year from {years[0]} to {years[-1]} is more searches than one answer "
                f"runs; only {years[0]} and {years[-1]} were measured"
            )
        else:
            dates = [
                DateSpec(text=str(y), start=dt.date(y, 1, 1), end=dt.date(y, 12, 31)) for y in years
            ]
    if len(dates) > MAX_DATES:
        b.not_done("more dates were asked than one answer measures; the first and the last were")
        dates = [dates[0], dates[-1]]
    return dates


def compile_plan(
    intent: Intent, bbox: list[float] | None = None, raster: str | None = None
) -> Plan:
    """The plan for ``intent``; PlanningError to ask back; NotCovered for the LLM planner."""
    b = _Builder()
    task = intent.task
    if task == "capabilities":
        args: dict[str, Any] = {}
        if intent.places or intent.coordinates is not None or bbox is not None:
            args["aoi"] = _area(intent, b, bbox, raster)
        b.add("coverage", args, "Look up what data and tools are available")
        return _plan(b, intent)
    if task == "out_of_scope":
        args = {"topic": intent.topic or "this topic"}
        if intent.places or intent.coordinates is not None or bbox is not None:
            args["aoi"] = _area(intent, b, bbox, raster)
        b.add("coverage", args, "Look up what can be measured there instead")
        return _plan(b, intent)
    if task == "unknown":
        raise NotCovered(
            "the question does not ask for something GeoScout can measure",
            clarify=(
                "What would you like to know about this area? I can measure water, vegetation "
                "or cloud on imagery, count mapped buildings, measure roads, compare dates, list "
                "the imagery available, or find objects when a vision model is configured. "
                "Ask “what can you do?” for the data I have."
            ),
        )
    aoi = _area(intent, b, bbox, raster)
    targets = [t for t in intent.targets if t not in ("imagery", "objects")]
    if intent.topic and task not in ("out_of_scope",):
        b.not_done(f"{intent.topic}: no tool or data here covers it")

    if task == "list_imagery" or (task == "describe" and not targets and not intent.objects):
        if raster is not None and intent.this_image:
            # An upload is described by measuring what the offline tools can on it.
            for target in ("water", "vegetation"):
                _segment(b, target, {"raster": raster}, None)
            b.not_done("a written description needs a vision-language model, none is configured")
            return _plan(b, intent)
        dates = intent.dates or [None]  # type: ignore[list-item]
        for d in dates[:MAX_DATES]:
            _search(b, intent, aoi, d)
        if task == "describe":
            b.not_done("a written description needs a vision-language model; listing the imagery")
        return _plan(b, intent)

    if intent.objects:
        src = _image(b, intent, aoi, raster, intent.dates[0] if intent.dates else None)
        args = {**src, "query": intent.objects}
        if aoi is not None:
            args["aoi"] = aoi
        size = lexicon().words("object_size_m").get(intent.objects)
        if size:
            args["min_object_m"] = float(size)
        b.add("ground", args, f"Find {intent.objects} in the image")
        for t in targets:
            if t not in ("imagery",):
                b.not_done(
                    f"{_LABEL.get(t, t)} alongside {intent.objects}: ask it as its own question"
                )
        return _plan(b, intent)

    if not targets:
        raise NotCovered("no target recognised")
    primary = targets[0]

    if task == "change" or (len(intent.dates) >= 2 and primary in SEGMENT_TARGETS):
        seg_targets = [t for t in targets if t in SEGMENT_TARGETS]
        if not seg_targets:
            b.not_done(
                f"change of {_LABEL.get(primary, primary)} over time: map data has one date only"
            )
        else:
            dates = _dates_for(intent, b)
            if len(dates) < 2:
                # "I follow how the vegetation evolves: how much is there?": measure what the
                # imagery shows now and say what a change needs.
                b.not_done("how it changed over time: name two dates (for example 2009 and 2020)")
                src = _image(b, intent, aoi, raster, dates[0] if dates else None)
                _segment(b, seg_targets[0], src, aoi)
                return _plan(b, intent)
            for target in seg_targets[:2]:
                for d in dates:
                    src = _image(b, intent, aoi, None, d)
                    _segment(b, target, src, aoi, f" in {_date_label(d)}")
            return _plan(b, intent)

    mask_step: str | None = None
    for target in targets:
        if target in SEGMENT_TARGETS and mask_step is None:
            date = intent.dates[0] if intent.dates else None
            if len(intent.dates) > 1:
                b.not_done("only the first date was measured")
            src = _image(b, intent, aoi, raster, date)
            mask_step = _segment(b, target, src, aoi)
        elif target in SEGMENT_TARGETS:
            b.not_done(f"{_LABEL[target]}: one measurement per question; ask it next")
    # Map layers: a relation's other layer first ("buildings near roads" looks up the roads,
    # then the buildings within the distance of them), then the primary target.
    rel = next((r for r in intent.relations if r.other in (*SEGMENT_TARGETS, *OSM_TARGETS)), None)
    related: str | None = f"@{mask_step}.mask" if mask_step is not None else None
    osm_targets = [t for t in targets if t in OSM_TARGETS]
    if rel is not None and rel.other in OSM_TARGETS and aoi is not None:
        osm_targets = [t for t in osm_targets if t != rel.other]
        other = b.add(
            "osm_overlay", {"aoi": aoi, "features": rel.other}, f"Look up mapped {rel.other}"
        )
        related = f"@{other}.features"
    for target in osm_targets:
        args = {"features": target}
        if rel is not None and related is not None and target == primary:
            args.update(relate_to=related, predicate=rel.predicate)
            if rel.distance_m is not None:
                args["distance_m"] = rel.distance_m
            args["relate_label"] = f"the {_LABEL[rel.other]}"
            args["aoi"] = aoi
        elif target == "buildings" and (intent.this_image or intent.on_image):
            src = _image(b, intent, aoi, raster, intent.dates[0] if intent.dates else None)
            if "scene" in src:
                args.update(relate_to=src["scene"].replace(".scene", ".coverage"),
                            predicate="intersects", relate_label="imaged footprint")  # fmt: skip
            else:
                args["aoi"] = aoi
        else:
            if aoi is None:
                raise PlanningError(
                    "map data needs an area",
                    clarify=f"Which area should I look at for {target}? Name a place or draw it.",
                )
            args["aoi"] = aoi
        b.add("osm_overlay", args, f"Look up mapped {target}")
        if target == "buildings" and intent.filters.condition:
            b.not_done(
                f"which buildings were {intent.filters.condition}: no damage model is installed; "
                "the mapped buildings are counted whatever their state"
            )
    return _plan(b, intent)


def _plan(b: _Builder, intent: Intent) -> Plan:
    label = intent.task + (f"_{intent.targets[0]}" if intent.targets else "")
    return Plan(steps=b.steps, intent=label, planner="rules", notes=b.notes)
