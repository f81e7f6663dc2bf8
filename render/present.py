"""What the app shows, decided here so that `app.py` only renders (and this is testable).

* the welcome text and the example questions that work offline on the sample data;
* a plain-words label per plan step ("Finding Accomac, Virginia", "Measuring water");
* :class:`ProgressTracker`, which turns the LangGraph update stream of
  :meth:`agents.service.Assistant.stream` into step events as they happen;
* evidence cards, the answer as safe Markdown with each [E#] linked to its card,
  notices for failed or unavailable steps, the cost and guardrail rows;
* the question to ask again when the person picks one of the candidate places.

Everything here that comes from tools or a model is escaped for Markdown (no raw HTML, no
links, no images, no LaTeX): see :func:`safe_md`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from agents.schemas import AnswerBundle, Evidence, PlanStep, TraceEntry
from render.report import (
    attribution_text,
    fmt_number,
    fmt_quantity,
    md_answer,
    md_escape,
    model_text,
)
from tools.provenance import SceneSource
from tools.registry import CATALOGUE

# --------------------------------------------------------------------------- welcome

WELCOME = """\
Ask about a place in plain words. GeoScout finds the place, looks for satellite or aerial
images of it, measures what you asked about (water, vegetation, clouds, buildings, roads)
and answers with **every number tied to its evidence**, shown on the map.

**Offline, on the sample data**, it can: find places (a world gazetteer), search the local
image catalogue (Sentinel-2 and Landsat 8 scenes, aerial and drone images of a few places),
measure water, vegetation and cloud, count and measure OpenStreetMap buildings and roads,
and compare two dates.

**It cannot, offline**: see images of places outside the sample data, count objects such as
ships or cars (that needs a vision-language model: set one in the sidebar), show a
background street map, or track people (it never will).
"""


class Example(BaseModel):
    question: str
    shows: str


EXAMPLES: tuple[Example, ...] = (
    Example(
        question="How much open water is there around Accomac, Virginia?",
        shows="water measured on a Sentinel-2 image",
    ),
    Example(
        question="How did the lakes at 47.02 N, 99.15 W change between 2009 and 2020?",
        shows="two aerial images, water on each date, the change",
    ),
    Example(
        question="Show me the buildings in the image of Joplin, Missouri taken after the May 2011 tornado.",
        shows="post-tornado aerial image with building footprints",
    ),
    Example(
        question="How many buildings are in the drone image of Kampala, and what share of the imaged area do they cover?",
        shows="drone image with OpenStreetMap buildings",
    ),
    Example(
        question="How cloudy is the Landsat image near Molino, Florida?",
        shows="cloud and shadow from a small neural network",
    ),
    Example(
        question="How many kilometres of road are there in central Aguascalientes, Mexico?",
        shows="OpenStreetMap roads, no imagery needed",
    ),
    Example(
        question="Count the ships in the Rotterdam port image.",
        shows="what GeoScout says when a tool is not available",
    ),
)

INSTEAD = (
    "GeoScout can measure water, vegetation, cloud, buildings and roads for a place, "
    "or compare two dates. Try one of the example questions."
)

# --------------------------------------------------------------------------- step labels

PHASES = {
    "understand": "Reading the question",
    "guard_input": "Checking the question",
    "plan": "Planning the steps",
    "merge": "Collecting the evidence",
    "write": "Writing the answer",
    "guard_output": "Checking the answer",
}
_QUIET_NODES = {"execute", "run_step"}  # shown through the step events instead
_TARGET_WORDS = {"cloud_shadow": "cloud shadow", "built": "built-up land"}


def step_label(step: PlanStep) -> str:
    """What a step does, for people ("Finding Accomac, Virginia"), as its tool declares it
    (``ToolSpec.label``); "Run <tool>" for a tool the catalogue does not know."""
    spec = CATALOGUE.get(step.tool)
    label = spec.step_label(step.args) if spec is not None else ""
    return _plain(label, 80) or f"Run {_plain(step.tool, 30)}"


StepStatus = Literal["waiting", "running", "ok", "error", "skipped", "unavailable"]


class StepView(BaseModel):
    """A plan step as the page shows it, while running and afterwards."""

    id: str
    tool: str
    label: str
    needs: list[str] = Field(default_factory=list)
    status: StepStatus = "waiting"
    seconds: float | None = None
    outcome: str = ""
    hint: str | None = None

    @property
    def done(self) -> bool:
        return self.status not in ("waiting", "running")

    def title(self) -> str:
        """The status line: label, then seconds and outcome once it finished."""
        if not self.done:
            return f"{self.label}…"
        secs = f"{self.seconds:.1f} s" if self.seconds is not None else ""
        word = {
            "ok": "done",
            "error": "failed",
            "skipped": "skipped",
            "unavailable": "not available here",
        }[self.status]
        return f"{self.label} · {word}" + (
            f" · {secs}" if secs and self.status != "skipped" else ""
        )

    @property
    def state(self) -> Literal["running", "complete", "error"]:
        if not self.done:
            return "running"
        return "error" if self.status == "error" else "complete"


class RunEvent(BaseModel):
    """One thing to show while the graph runs."""

    kind: Literal["phase", "understood", "plan", "step_started", "step_finished"]
    node: str = ""
    label: str = ""
    detail: str = ""  # "understood": who read the question, and any fallback
    step: StepView | None = None
    steps: list[StepView] = Field(default_factory=list)
    planner: str = ""


def steps_from_trace(bundle: AnswerBundle) -> list[StepView]:
    """The finished steps of a bundle (history, and the page after a reload)."""
    labels = {s.id: (step_label(s), s.needs) for s in bundle.plan}
    out = []
    for t in bundle.trace:
        label, needs = labels.get(t.step, (_plain(t.tool, 30), []))
        out.append(_finished(StepView(id=t.step, tool=t.tool, label=label, needs=needs), t))
    return out


def _finished(view: StepView, t: TraceEntry) -> StepView:
    view.status = t.status
    view.seconds = t.seconds
    if t.status == "ok":
        view.outcome = t.summary
    else:
        view.outcome = t.error or t.summary or t.status
        view.hint = t.hint
    return view


_TASK_WORDS = {
    "measure": "measure",
    "count": "count",
    "locate": "show",
    "compare": "compare",
    "change": "compare over time",
    "describe": "describe",
    "list_imagery": "list the imagery",
    "capabilities": "say what I can do",
    "out_of_scope": "check what data exists for",
    "unknown": "work out what to do about",
}


def describe_intent(intent: dict[str, Any]) -> str:
    """One line for people: what the question was understood to ask ("Understood: measure
    water around Accomac, Virginia, US, in ha")."""
    try:
        from agents.intent import Intent

        it = Intent.model_validate(intent)
    except Exception:  # a malformed intent is the graph's to report, not the page's
        return "Read the question"
    what = it.objects or ", ".join(_TARGET_WORDS.get(t, t) for t in it.targets if t != "imagery")
    if it.task == "out_of_scope":
        what = it.topic or "this topic"
    parts = [_TASK_WORDS.get(it.task, it.task)]
    if what:
        parts.append(what)
    if it.places:
        parts.append("around " + (it.places[0].label or it.places[0].name))
    elif it.coordinates is not None:
        parts.append(f"around {it.coordinates[1]:.4f}, {it.coordinates[0]:.4f}")
    elif it.this_area:
        parts.append("in the area drawn")
    if it.dates:
        parts.append(
            "(" + ", ".join("latest" if d.text == "now" else d.text for d in it.dates) + ")"
        )
    unit = it.area_unit or it.length_unit
    if unit:
        parts.append(f"in {unit}")
    return _plain("Understood: " + " ".join(parts), 160)


class ProgressTracker:
    """Turns ("update", {node: update}) items of Assistant.stream into step events.

    Steps start when every step they need has finished well; the LangGraph run sends them
    then (parallel where independent). Unknown nodes (a re-planner, say) become phases, so a
    new graph node shows up rather than breaking the page.
    """

    def __init__(self) -> None:
        self.steps: dict[str, StepView] = {}
        self.phases: list[str] = []

    def feed(self, update: dict[str, Any]) -> list[RunEvent]:
        events: list[RunEvent] = []
        for node, value in update.items():
            value = value if isinstance(value, dict) else {}
            if node == "understand" and isinstance(value.get("intent"), dict):
                note = (value.get("notes") or {}).get("parser", "")
                events.append(
                    RunEvent(
                        kind="understood",
                        node=node,
                        label=describe_intent(value["intent"]),
                        detail=_plain(str(note), 200),
                    )
                )
                continue
            if node == "plan" and isinstance(value.get("plan"), dict):
                events += self._plan(value["plan"])
            if isinstance(value.get("results"), dict) and value["results"]:
                events += self._results(value["results"])
            if node not in _QUIET_NODES and node != "plan":
                label = PHASES.get(node) or _plain(node.replace("_", " ").capitalize(), 40)
                self.phases.append(node)
                events.append(RunEvent(kind="phase", node=node, label=label))
        return events

    def _plan(self, plan: dict[str, Any]) -> list[RunEvent]:
        steps = []
        for raw in plan.get("steps") or []:
            try:
                step = PlanStep.model_validate(raw)
            except Exception:  # a malformed plan is the validator's to report, not ours
                continue
            steps.append(
                StepView(id=step.id, tool=step.tool, label=step_label(step), needs=step.needs)
            )
        self.steps = {s.id: s for s in steps}
        events = [
            RunEvent(
                kind="plan",
                node="plan",
                label=PHASES["plan"],
                steps=[s.model_copy() for s in steps],
                planner=str(plan.get("planner") or ""),
            )
        ]
        return events + self._start_ready()

    def _results(self, results: dict[str, Any]) -> list[RunEvent]:
        events = []
        for sid, record in results.items():
            view = self.steps.get(sid)
            if view is None or view.done or not isinstance(record, dict):
                continue
            res = record.get("result") or {}
            status = "skipped" if record.get("skipped") else str(res.get("status") or "error")
            err = res.get("error") or {}
            trace = TraceEntry(
                step=sid,
                tool=view.tool,
                status=status if status in ("ok", "error", "skipped", "unavailable") else "error",
                seconds=round(float(record.get("seconds") or 0.0), 3),
                error=err.get("message") if isinstance(err, dict) else None,
                hint=err.get("hint") if isinstance(err, dict) else None,
                summary=str(res.get("summary") or "")[:300],
            )
            _finished(view, trace)
            events.append(RunEvent(kind="step_finished", step=view.model_copy()))
        return events + self._start_ready()

    def _start_ready(self) -> list[RunEvent]:
        events = []
        for view in self.steps.values():
            if view.status != "waiting":
                continue
            needs = [self.steps.get(n) for n in view.needs]
            if all(n is not None and n.status == "ok" for n in needs):
                view.status = "running"
                events.append(RunEvent(kind="step_started", step=view.model_copy()))
        return events


# --------------------------------------------------------------------------- safe text


def safe_md(text: object, limit: int | None = 600) -> str:
    """Tool or model text as literal Markdown for Streamlit (which also reads $...$ as LaTeX)."""
    return md_escape(text, limit).replace("$", "\\$")


_CITE_GROUP = re.compile(r"\[(E\d+(?:\s*[,;]\s*E\d+)*)\]")


def card_anchor(prefix: str, eid: str) -> str:
    return f"{prefix}-{eid.lower()}"


def answer_markdown(text: str, known: set[str], anchor_prefix: str) -> str:
    """The answer as safe Markdown, each [E#] a link to its evidence card on the page.

    Citations of evidence that does not exist stay plain text (the output guard reports
    them); everything else from the writer is escaped like tool text.
    """
    escaped = md_answer(text).replace("$", "\\$")

    def link(m: re.Match[str]) -> str:
        ids = [i.strip() for i in re.split(r"[,;]", m.group(1))]
        parts = [
            f"[\\[{i}\\]](#{card_anchor(anchor_prefix, i)})" if i in known else f"\\[{i}\\]"
            for i in ids
        ]
        return " ".join(parts)

    return _CITE_GROUP.sub(link, escaped)


# --------------------------------------------------------------------------- evidence cards

_KIND_TITLES = {
    "place": "Place",
    "scene": "Image",
    "mask": "Mask",
    "detections": "Detected objects",
    "features": "Map features",
    "figure": "Figure",
}


class EvidenceCard(BaseModel):
    """One evidence item in plain words; every field is already plain text."""

    id: str
    anchor: str
    kind: str
    heading: str
    what: str
    values: list[str] = Field(default_factory=list)
    source: str = "unknown"
    acquired: str = "unknown"
    resolution: str = "unknown"
    model: str = "-"
    attribution: str = "-"
    layer: str | None = None
    cited: bool = False
    caveats: list[str] = Field(default_factory=list)


def evidence_cards(
    bundle: AnswerBundle, layer_names: dict[str, str] | None = None, anchor_prefix: str = "ev"
) -> list[EvidenceCard]:
    """Cards for the bundle's evidence, cited ones first, in ledger order otherwise."""
    cited = set(bundle.answer.citations)
    layer_names = layer_names or {}
    cards = []
    for ev in bundle.evidence:
        scene = ev.provenance.scene
        cards.append(
            EvidenceCard(
                id=ev.id,
                anchor=card_anchor(anchor_prefix, ev.id),
                kind=ev.kind,
                heading=f"{ev.id} · {_kind_title(ev)}",
                what=_what(ev),
                values=[
                    f"{_key_words(k)}: {fmt_quantity(q)}" for k, q in list(ev.values.items())[:8]
                ],
                source=_source(ev, scene),
                acquired=_acquired(ev, scene),
                resolution=_resolution(ev, scene),
                model=_plain(model_text(ev), 200),
                attribution=_plain(attribution_text(ev), 200),
                layer=_strip_html(layer_names.get(ev.id)) if layer_names.get(ev.id) else None,
                cited=ev.id in cited,
                caveats=[_plain(c, 300) for c in ev.caveats[:4]],
            )
        )
    cards.sort(key=lambda c: not c.cited)
    return cards


def _kind_title(ev: Evidence) -> str:
    if ev.kind == "mask":
        target = ev.facts.get("target") or "class"
        return f"{_TARGET_WORDS.get(target, target.replace('_', ' ')).capitalize()} mask"
    if ev.kind == "features":
        ftype = ev.facts.get("feature_type")
        return f"Map features ({_plain(ftype, 30)})" if ftype else "Map features"
    return _KIND_TITLES.get(ev.kind, ev.kind.capitalize())


def _what(ev: Evidence) -> str:
    title = _plain(ev.title, 160)
    derived = ev.provenance.derived_from
    extra = {
        "place": ev.provenance.method,
        "mask": ev.facts.get("method"),
        "figure": "computed from " + ", ".join(derived) if derived else None,
    }.get(ev.kind)
    return f"{title}. {_plain(str(extra), 240)}" if extra else title


def _source(ev: Evidence, scene: SceneSource | None) -> str:
    if scene is not None:
        coll = scene.collection or ev.facts.get("collection")
        return _plain(scene.stac_item_id + (f" ({coll})" if coll else ""), 160)
    prov = ev.provenance
    if ev.kind == "features" and prov.sources:
        return _plain("; ".join(s.server or s.name for s in prov.sources[:4]), 200)
    if ev.kind == "figure" and prov.derived_from:
        return _plain("derived from " + ", ".join(prov.derived_from), 120)
    src = prov.source or ev.facts.get("source")
    return _plain(src, 160) if src else "unknown"


def _acquired(ev: Evidence, scene: SceneSource | None) -> str:
    for value in (
        scene.datetime if scene is not None else None,
        ev.facts.get("acquired"),
        ev.facts.get("datetime") if ev.kind in ("scene", "mask", "detections") else None,
    ):
        if value and str(value).lower() not in ("unknown", "none", "null"):
            return _plain(str(value)[:10], 20)
    if ev.kind == "features":
        for s in ev.provenance.sources:
            if s.timestamp:
                return _plain(f"data as of {s.timestamp}", 60)
    return "unknown"


def _resolution(ev: Evidence, scene: SceneSource | None) -> str:
    for value in (
        scene.gsd if scene is not None else None,
        ev.facts.get("resolution_m"),
        ev.values["gsd_m"].value if "gsd_m" in ev.values else None,
    ):
        try:
            gsd = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(gsd) and gsd > 0:
            return f"{fmt_number(gsd)} m per pixel"
    return "not applicable" if ev.kind in ("place", "features", "figure") else "unknown"


def _key_words(key: str) -> str:
    words = re.sub(r"_(km2|m2|pct|m|km|count)$", "", key).replace("_", " ")
    return _plain(words, 40)


# --------------------------------------------------------------------------- notices, cost


class Notice(BaseModel):
    level: Literal["info", "warning", "error"]
    text: str


def step_notices(bundle: AnswerBundle) -> list[Notice]:
    """Steps that did not work, politely, with what would work instead (plain text)."""
    labels = {s.id: step_label(s) for s in bundle.plan}
    out = []
    for t in bundle.trace:
        if t.status in ("ok", "skipped") or t.error_code == "ambiguous":
            continue
        label = labels.get(t.step, t.tool)
        reason = _plain(t.error or t.summary or "no reason given", 300)
        hint = f" What would work: {_plain(t.hint, 300)}" if t.hint else ""
        if t.status == "unavailable":
            out.append(Notice(level="info", text=f"{label} is not available here. {reason}{hint}"))
        else:
            out.append(Notice(level="warning", text=f"{label} did not work. {reason}{hint}"))
    return out


def cost_lines(bundle: AnswerBundle) -> list[str]:
    c = bundle.cost
    tokens = c.llm.prompt_tokens + c.llm.completion_tokens
    lines = [
        f"Time: {c.seconds:.1f} s",
        f"Language model: {_plain(c.llm.model, 80)}; {tokens:,} tokens "
        f"({c.llm.prompt_tokens:,} in, {c.llm.completion_tokens:,} out)",
        f"Energy: {fmt_number(c.energy_wh)} Wh; emissions: {fmt_number(c.co2e_g)} g CO2e (estimate)",
        f"Method: {_plain(c.method or 'not stated', 600)}",
    ]
    return lines


def step_rows(bundle: AnswerBundle) -> list[dict[str, str]]:
    labels = {s.id: step_label(s) for s in bundle.plan}
    return [
        {
            "step": t.step,
            "what": labels.get(t.step, t.tool),
            "tool": t.tool,
            "status": t.status,
            "seconds": f"{t.seconds:.2f}",
        }
        for t in bundle.trace
    ]


def guard_rows(bundle: AnswerBundle) -> list[dict[str, str]]:
    return [
        {
            "check": _plain(g.name, 60),
            "result": "passed" if g.passed else "FAILED",
            "detail": _plain(g.detail, 300),
        }
        for g in bundle.guardrails
    ]


def turn_summary(bundle: AnswerBundle) -> str:
    """A one-line status of a finished answer, for its header."""
    if bundle.refused:
        return "Declined"
    if bundle.clarification is not None:
        return "Needs a detail from you"
    failed = sum(t.status in ("error", "unavailable") for t in bundle.trace)
    return "Answered" + (f" ({failed} step(s) could not run)" if failed else "")


# --------------------------------------------------------------------------- clarification


def candidate_label(candidate: str) -> str:
    """'Milton, Florida, US (pop 9,628)' -> 'Milton, Florida, US' (the button text)."""
    return _plain(re.sub(r"\s*\([^)]*\)\s*$", "", candidate), 80) or _plain(candidate, 80)


def clarified_question(bundle: AnswerBundle, candidate: str) -> str:
    """The question asked again with the ambiguous place replaced by the chosen one."""
    choice = candidate_label(candidate)
    place = next(
        (
            s.args.get("place")
            for s in bundle.plan
            if s.tool == "geocode" and isinstance(s.args.get("place"), str)
        ),
        None,
    )
    question = bundle.question
    if place:
        pattern = re.compile(rf"(?<!\w){re.escape(place)}(?!\w)", re.I)
        if pattern.search(question):
            return pattern.sub(lambda _m: choice, question, count=1)
    return f"{question.rstrip(' ?.')} in {choice}?"


# --------------------------------------------------------------------------- helpers


def _plain(text: object, limit: int) -> str:
    s = re.sub(r"[\x00-\x1f\x7f]", " ", str(text or ""))
    s = re.sub(r"\s+", " ", s).strip()
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"


def _strip_html(text: str | None) -> str:
    """A map layer name without the legend swatch markup (render.webmap), unescaped."""
    import html

    return _plain(html.unescape(re.sub(r"<[^>]*>", "", text or "")), 160)


# --------------------------------------------------------------------------- drawn areas


def drawn_bbox(feature: Any) -> list[float] | None:
    """[west, south, east, north] of a rectangle or polygon drawn on the map, else None.

    The graph takes an area as a box, so a drawn polygon is used through its bounding box
    (the page says so).
    """
    from shapely.geometry import shape

    if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
        return None
    try:
        geom = shape(feature["geometry"])
    except Exception:  # whatever the browser sent, it is not a shape we can use
        return None
    if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        return None
    w, s, e, n = (round(float(v), 6) for v in geom.bounds)
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        return None
    return [w, s, e, n]


def bbox_text(bbox: list[float]) -> str:
    """'37.7136°N to 37.7231°N, 75.6882°W to 75.6728°W'."""
    w, s, e, n = bbox

    def lat(v: float) -> str:
        return f"{abs(v):.4f}°{'S' if v < 0 else 'N'}"

    def lon(v: float) -> str:
        return f"{abs(v):.4f}°{'W' if v < 0 else 'E'}"

    return f"{lat(s)} to {lat(n)}, {lon(w)} to {lon(e)}"
