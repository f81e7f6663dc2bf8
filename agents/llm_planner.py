"""The LLM planner: question -> Plan through a JSON-schema-constrained chat completion.

What goes in: the question (and the user's area or upload, if any), the date, the tool
catalogue written from each tool's own spec, and worked examples (``prompts/``). Nothing
else: the planner never sees tool output, so text in the data cannot change the plan.

What comes out is checked like any plan (:func:`agents.validate.validate_plan`) after
pruning what the question does not need: tools outside what the question asks for, steps
repeated or cut off from a pruned step, and optional arguments (dates, platforms, limits)
the user never mentioned. Invalid plans get one repair round with the validation errors;
after that the caller falls back to the rule planner.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.intent import Intent
from agents.lexicon import written_in
from agents.llm import ChatModel, Completion, LLMCallError, parse_json_object
from agents.schemas import REF, Plan, PlanStep
from agents.validate import validate_plan
from prompts import load_prompt
from tools.base import ToolSpec

# Arguments the planner may set, per tool; the rest (band lists, model names) stay defaults.
_HIDDEN_ARGS = {"bands", "model", "mask_clouds", "relate_label", "collections"}
# Closed vocabularies the grammar enforces, so a typo cannot reach a tool.
_ENUMS: dict[tuple[str, str], list[str]] = {
    ("geocode", "scale"): ["auto", "central", "wide"],
    ("segment", "target"): ["water", "vegetation", "cloud", "cloud_shadow"],
    ("osm_overlay", "predicate"): ["intersects", "within", "within_distance"],
}
# Optional numeric limits are kept only when the user stated the number.
_NUMERIC_OPTIONAL = {"max_cloud", "max_gsd_m", "limit", "threshold", "distance_m"}


class LLMStep(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)


class LLMPlanOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    steps: list[LLMStep]


class PlanAttempt(BaseModel):
    """What the LLM planner did: the plan (None when it must fall back) and why."""

    plan: Plan | None = None
    calls: list[Completion] = Field(default_factory=list)
    repaired: bool = False
    problems: list[str] = Field(default_factory=list)
    pruned: list[str] = Field(default_factory=list)
    error: str | None = None


def tool_lines(catalog: dict[str, ToolSpec]) -> str:
    return "\n".join(f"- {spec.prompt_fragment or spec.description}" for spec in catalog.values())


def _arg_schema(tool: str, name: str, prop: dict[str, Any], spec: ToolSpec) -> dict[str, Any]:
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    ref = {"type": "string", "pattern": r"^@s[1-9][0-9]?\.[a-z_]+$"}
    if (tool, name) in _ENUMS:
        return {"type": "string", "enum": _ENUMS[(tool, name)]}
    if name in spec.accepts:
        alts: list[dict[str, Any]] = [ref]
        if name == "aoi":
            bbox = {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}
            alts.append(bbox)
        return alts[0] if len(alts) == 1 else {"anyOf": alts}
    kinds = {o.get("type") for o in options}
    if "array" in kinds and "string" in kinds:
        return {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    for kind in ("string", "integer", "number", "boolean"):
        if kind in kinds:
            return {"type": kind}
    if any("anyOf" in o for o in options):  # e.g. features: str | dict | list
        return {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    return {"type": "string"}


def plan_schema(catalog: dict[str, ToolSpec], max_steps: int) -> dict[str, Any]:
    """The JSON schema the model's reply must match: one object shape per tool."""
    variants = []
    for tool, spec in catalog.items():
        js = spec.args_schema.model_json_schema()
        props = {
            name: _arg_schema(tool, name, prop, spec)
            for name, prop in js.get("properties", {}).items()
            if name not in _HIDDEN_ARGS
        }
        required = [r for r in js.get("required", []) if r in props]
        variants.append(
            {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": r"^s[1-9][0-9]?$"},
                    "tool": {"type": "string", "enum": [tool]},
                    "args": {
                        "type": "object",
                        "properties": props,
                        "required": required,
                        "additionalProperties": False,
                    },
                },
                "required": ["id", "tool", "args"],
                "additionalProperties": False,
            }
        )
    return {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_steps,
                "items": {"anyOf": variants},
            },
        },
        "required": ["steps"],
        "additionalProperties": False,
    }


def planner_messages(
    question: str,
    catalog: dict[str, ToolSpec],
    today: dt.date,
    bbox: list[float] | None = None,
    raster: str | None = None,
) -> list[dict[str, str]]:
    system = load_prompt(
        "planner_system",
        today=today.isoformat(),
        tools=tool_lines(catalog),
        examples=load_prompt("planner_examples"),
    )
    user = f"Q: {question}"
    if bbox is not None:
        box = ",".join(f"{v:.5f}" for v in bbox)
        user += f"\nThe user marked the area: use the bbox [{box}] as aoi (no geocode step)."
    if raster is not None:
        user += (
            f'\nThe user uploaded an image: use "raster": {json.dumps(raster)} instead of a scene.'
        )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def allowed_tools(intent: Intent, catalog: dict[str, ToolSpec]) -> set[str]:
    """The tools the question can need, from its intent.

    When nothing was understood the model's judgement is trusted (every tool), so the LLM
    can still plan what the recipes do not cover.
    """
    allowed = {"geocode", "coverage"}
    targets = set(intent.targets)
    if targets & {"water", "vegetation", "cloud", "cloud_shadow"}:
        allowed |= {"stac_search", "segment"}
    if targets & {"roads", "buildings"}:
        allowed.add("osm_overlay")
        if intent.on_image:
            allowed.add("stac_search")
    if "imagery" in targets:
        allowed.add("stac_search")
    if intent.objects:
        allowed |= {"stac_search", "ground"}
    if allowed == {"geocode", "coverage"}:
        return set(catalog)
    return allowed & set(catalog) | ({"geocode"} & set(catalog))


def _question_numbers(text: str) -> set[float]:
    return {float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)}


def _in_question(place: str, question: str) -> bool:
    """The place (or coordinates) is written in the question, spelling aside."""
    if re.fullmatch(r"[-+\d.,\s]+", place):  # coordinates: their numbers must be asked
        asked = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", question)]
        given = [abs(float(n)) for n in re.findall(r"\d+(?:\.\d+)?", place)]
        return all(any(abs(g - a) < 0.01 for a in asked) for g in given)
    return written_in(place.split(",")[0], question)


def _refs(value: Any) -> set[str]:
    if isinstance(value, str) and (m := REF.match(value)):
        return {m.group(1)}
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_refs(v) for v in value.values())) if value else set()
    return set()


def to_plan(
    out: LLMPlanOut, intent: Intent, question: str, catalog: dict[str, ToolSpec], model: str
) -> tuple[Plan, list[str]]:
    """The model's steps as a Plan, with what the question does not need pruned."""
    pruned: list[str] = []
    allowed = allowed_tools(intent, catalog)
    numbers = _question_numbers(question)
    kept: list[PlanStep] = []
    dropped: set[str] = set()
    seen: set[str] = set()
    for raw in out.steps:
        if raw.tool in catalog and raw.tool not in allowed:
            pruned.append(f"{raw.id} ({raw.tool}): the question does not ask for it")
            dropped.add(raw.id)
            continue
        args = dict(raw.args)
        place = args.get("place") if raw.tool == "geocode" else None
        if isinstance(place, str) and not _in_question(place, question):
            # A small model copies places from its worked examples ("Schiphol airport"):
            # a place the user never wrote is never searched.
            pruned.append(f"{raw.id} (geocode {place[:40]!r}): not in the question")
            dropped.add(raw.id)
            continue
        for name in list(args):
            v = args[name]
            why = None
            if name == "datetime" and not intent.dates:
                why = "no date in the question"
            elif name == "platform" and not intent.filters.platform:
                why = "no platform in the question"
            elif name in _NUMERIC_OPTIONAL and not (
                isinstance(v, int | float) and float(v) in numbers
            ):
                why = "the question states no such limit"
            elif v is None or v == "" or v == []:
                why = "empty"
            if why:
                del args[name]
                pruned.append(f"{raw.id}.{name}={json.dumps(v)[:40]}: {why}")
        needs = sorted(_refs(args), key=lambda s: int(s[1:]))
        if any(n in dropped for n in needs):
            pruned.append(f"{raw.id} ({raw.tool}): depends on a pruned step")
            dropped.add(raw.id)
            continue
        key = json.dumps([raw.tool, args], sort_keys=True)
        if key in seen:
            pruned.append(f"{raw.id} ({raw.tool}): repeats an earlier step")
            dropped.add(raw.id)
            continue
        seen.add(key)
        try:
            kept.append(PlanStep(id=raw.id, tool=raw.tool, args=args, needs=needs,
                                 why=describe_step(raw.tool, args)))  # fmt: skip
        except ValidationError as exc:
            raise ValueError(f"{raw.id}: {exc.errors()[0]['msg']}") from exc
    _complete_aoi(kept, pruned)
    plan = Plan(steps=kept, intent=intent.task, planner=model, notes=[])
    return plan, pruned


def _complete_aoi(steps: list[PlanStep], notes: list[str]) -> None:
    """Measure inside the place asked about: a segment or ground step without an aoi would
    analyse the whole scene, which answers another question (a small model often omits it)."""
    area = next((s for s in steps if s.tool == "geocode"), None)
    if area is None:
        return
    for step in steps:
        if step.tool in ("segment", "ground") and "aoi" not in step.args and "scene" in step.args:
            step.args["aoi"] = f"@{area.id}.aoi"
            if area.id not in step.needs:
                step.needs = sorted([*step.needs, area.id], key=lambda x: int(x[1:]))
            notes.append(
                f"{step.id}.aoi=@{area.id}.aoi added: measure inside the place asked about"
            )


def describe_step(tool: str, args: dict[str, Any]) -> str:
    """A line for people (the app's step labels), from the arguments only."""
    if tool == "geocode":
        return f"Find {args.get('place', 'the place')}"
    if tool == "stac_search":
        when = f" from {args['datetime']}" if args.get("datetime") else ""
        return f"Search imagery{when}"
    if tool == "segment":
        return f"Measure {str(args.get('target', 'classes')).replace('_', ' ')}"
    if tool == "ground":
        return f"Find {args.get('query', 'objects')} in the image"
    if tool == "osm_overlay":
        feats = args.get("features", "features")
        return f"Look up mapped {feats if isinstance(feats, str) else ', '.join(map(str, feats))}"
    if tool == "coverage":
        return "Look up the data and tools available"
    return f"Run {tool}"


def llm_plan(
    chat: ChatModel,
    question: str,
    intent: Intent,
    catalog: dict[str, ToolSpec],
    *,
    today: dt.date,
    max_steps: int,
    max_aoi_km2: float,
    bbox: list[float] | None = None,
    raster: str | None = None,
) -> PlanAttempt:
    """Ask the model for a plan; one repair round; ``plan`` None means fall back to rules."""
    attempt = PlanAttempt()
    schema = plan_schema(catalog, max_steps)
    messages = planner_messages(question, catalog, today, bbox, raster)
    for round_ in range(2):
        try:
            c = chat.chat(messages, json_schema=schema, max_tokens=600)
        except LLMCallError as exc:
            attempt.error = str(exc)
            return attempt
        attempt.calls.append(c)
        problems: list[str]
        plan: Plan | None = None
        try:
            out = LLMPlanOut.model_validate(parse_json_object(c.text))
            plan, pruned = to_plan(out, intent, question, catalog, chat.name)
            attempt.pruned = pruned
            problems = validate_plan(plan, catalog, max_steps, max_aoi_km2)
            if not plan.steps:
                problems.append("the plan has no steps")
        except (ValueError, ValidationError) as exc:
            problems = [f"the reply is not a valid plan: {_brief(exc)}"]
        if not problems and plan is not None:
            attempt.plan = plan
            attempt.repaired = round_ == 1
            return attempt
        attempt.problems = problems
        if round_ == 0:
            messages = [
                *messages,
                {"role": "assistant", "content": c.text[:4000]},
                {
                    "role": "user",
                    "content": "That plan has problems:\n- "
                    + "\n- ".join(problems[:8])
                    + "\nReply with a corrected plan as JSON only.",
                },
            ]
    return attempt


def _brief(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        e = exc.errors()[0]
        return f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
    return str(exc)[:200]
