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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.intent import Intent
from agents.lexicon import written_in
from agents.llm import ChatModel, Completion, LLMCallError, parse_json_object
from agents.schemas import REF, Plan, PlanStep
from agents.validate import validate_plan
from prompts import load_prompt
from tools.base import ToolSpec

# Type tags of areas: every tool accepts them and a geocode step or the drawn box gives them,
# so they do not pull their producers into the allowed set.
_AREA_TYPES = {"aoi", "geometry"}


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


def tool_lines(catalog: Mapping[str, ToolSpec]) -> str:
    return "\n".join(f"- {spec.prompt_fragment or spec.description}" for spec in catalog.values())


def _arg_schema(tool: str, name: str, prop: dict[str, Any], spec: ToolSpec) -> dict[str, Any]:
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    ref = {"type": "string", "pattern": r"^@s[1-9][0-9]?\.[a-z_]+$"}
    enums = spec.enums()
    if name in enums:
        return {"type": "string", "enum": enums[name]}
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


def plan_schema(catalog: Mapping[str, ToolSpec], max_steps: int) -> dict[str, Any]:
    """The JSON schema the model's reply must match: one object shape per tool."""
    variants = []
    for tool, spec in catalog.items():
        js = spec.args_schema.model_json_schema()
        props = {
            name: _arg_schema(tool, name, prop, spec)
            for name, prop in js.get("properties", {}).items()
            if name not in spec.planner_hidden
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
    catalog: Mapping[str, ToolSpec],
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


def allowed_tools(intent: Intent, catalog: Mapping[str, ToolSpec]) -> set[str]:
    """The tools the question can need, from its intent and the tools' declarations.

    A tool is allowed when its ``relevant`` declaration says so, and so is every tool that
    produces a non-area input an allowed tool accepts (segment reads a scene: stac_search).
    When no tool beyond those relevant to any question is, nothing was understood and the
    model's judgement is trusted (every tool), so the LLM can still plan what the recipes
    do not cover.
    """
    allowed = {name for name, spec in catalog.items() if spec.relevant(intent)}
    always = {name for name, spec in catalog.items() if spec.relevant(_NOTHING)}
    if allowed <= always:
        return set(catalog)
    producers: dict[str, set[str]] = {}
    for name, spec in catalog.items():
        for kind in spec.outputs.values():
            producers.setdefault(kind, set()).add(name)
    todo = list(allowed)
    while todo:
        for kinds in catalog[todo.pop()].accepts.values():
            for kind in set(kinds) - _AREA_TYPES:
                for name in producers.get(kind, set()) - allowed:
                    allowed.add(name)
                    todo.append(name)
    return allowed


@dataclass(frozen=True)
class _NoIntent:
    """An intent with nothing understood: what every question may use."""

    targets: list[str] = field(default_factory=list)
    objects: str | None = None
    on_image: bool = False


_NOTHING = _NoIntent()


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
    out: LLMPlanOut, intent: Intent, question: str, catalog: Mapping[str, ToolSpec], model: str
) -> tuple[Plan, list[str]]:
    """The model's steps as a Plan, with what the question does not need pruned."""
    pruned: list[str] = []
    allowed = allowed_tools(intent, catalog)
    numbers = _question_numbers(question)
    kept: list[PlanStep] = []
    dropped: set[str] = set()
    seen: set[str] = set()
    for raw in out.steps:
        spec = catalog.get(raw.tool)
        if spec is not None and raw.tool not in allowed:
            pruned.append(f"{raw.id} ({raw.tool}): the question does not ask for it")
            dropped.add(raw.id)
            continue
        args = dict(raw.args)
        place = _place_text(spec, args)
        if place is not None and not _in_question(place, question):
            # A small model copies places from its worked examples ("Schiphol airport"):
            # a place the user never wrote is never searched.
            pruned.append(f"{raw.id} ({raw.tool} {place[:40]!r}): not in the question")
            dropped.add(raw.id)
            continue
        for name in list(args):
            v = args[name]
            why = None
            if name == "datetime" and not intent.dates:
                why = "no date in the question"
            elif name == "platform" and not intent.filters.platform:
                why = "no platform in the question"
            elif (
                spec is not None
                and name in spec.stated_only
                and not (isinstance(v, int | float) and float(v) in numbers)
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
            why = spec.step_label(args) if spec is not None else f"Run {raw.tool}"
            kept.append(PlanStep(id=raw.id, tool=raw.tool, args=args, needs=needs, why=why))
        except ValidationError as exc:
            raise ValueError(f"{raw.id}: {exc.errors()[0]['msg']}") from exc
    _complete_aoi(kept, pruned, catalog)
    plan = Plan(steps=kept, intent=intent.task, planner=model, notes=[])
    return plan, pruned


def _makes_area(spec: ToolSpec | None) -> bool:
    """A tool that turns words into an area (geocode): it outputs an aoi from no reference."""
    return spec is not None and "aoi" in spec.outputs.values() and not spec.accepts


def _place_text(spec: ToolSpec | None, args: dict[str, Any]) -> str | None:
    """The words an area-making tool (geocode) would search: its required free-text argument."""
    if not _makes_area(spec):
        return None
    assert spec is not None
    enums = spec.enums()
    required = spec.args_schema.model_json_schema().get("required", [])
    for name in required:
        if name not in enums and isinstance(args.get(name), str):
            return str(args[name])
    return None


def _complete_aoi(steps: list[PlanStep], notes: list[str], catalog: Mapping[str, ToolSpec]) -> None:
    """Measure inside the place asked about: a step of a tool that ``needs_area``, reading a
    scene without an aoi, would analyse the whole scene, which answers another question (a
    small model often omits it)."""
    area = next((s for s in steps if _makes_area(catalog.get(s.tool))), None)
    if area is None:
        return
    for step in steps:
        spec = catalog.get(step.tool)
        if spec is not None and spec.needs_area and "aoi" not in step.args and "scene" in step.args:
            step.args["aoi"] = f"@{area.id}.aoi"
            if area.id not in step.needs:
                step.needs = sorted([*step.needs, area.id], key=lambda x: int(x[1:]))
            notes.append(
                f"{step.id}.aoi=@{area.id}.aoi added: measure inside the place asked about"
            )


def llm_plan(
    chat: ChatModel,
    question: str,
    intent: Intent,
    catalog: Mapping[str, ToolSpec],
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
