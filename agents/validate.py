"""Plan validation against the tool catalogue, and reference resolution at run time.

A plan passes only if every tool exists, every reference points to an earlier step's
declared output of an accepted type, the dependency graph has no cycle, the budgets hold,
and every argument passes the tool's own pydantic schema (references replaced by a typed
sample, since their real values do not exist yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from agents.schemas import REF, Plan
from tools.base import ToolSpec
from tools.geo import AOI

# A well-formed value of each output type tag, used to check the other arguments early.
_SAMPLES: dict[str, Any] = {
    "aoi": {"bbox": [0.0, 0.0, 0.01, 0.01]},
    "geometry": {
        "type": "Polygon",
        "coordinates": [[[0.0, 0.0], [0.01, 0.0], [0.01, 0.01], [0.0, 0.01], [0.0, 0.0]]],
    },
    "scene": {"id": "sample", "bbox": [0.0, 0.0, 0.01, 0.01], "assets": {}},
    "scenes": [{"id": "sample", "bbox": [0.0, 0.0, 0.01, 0.01], "assets": {}}],
    "boxes": {
        "type": "Polygon",
        "coordinates": [[[0.0, 0.0], [0.01, 0.0], [0.01, 0.01], [0.0, 0.01], [0.0, 0.0]]],
    },
}


def validate_plan(
    plan: Plan, catalog: Mapping[str, ToolSpec], max_steps: int, max_aoi_km2: float
) -> list[str]:
    """All problems found (empty when the plan is valid)."""
    problems: list[str] = []
    if len(plan.steps) > max_steps:
        problems.append(f"plan has {len(plan.steps)} steps; the limit is {max_steps}")
    seen: dict[str, ToolSpec] = {}
    for step in plan.steps:
        if step.id in seen:
            problems.append(f"{step.id}: duplicate step id")
            continue
        spec = catalog.get(step.tool)
        if spec is None:
            problems.append(f"{step.id}: unknown tool {step.tool!r}; known: {sorted(catalog)}")
            seen[step.id] = None  # type: ignore[assignment]
            continue
        for need in step.needs:
            if need not in seen:
                problems.append(f"{step.id}: needs {need!r}, which is not an earlier step")
        sample_args: dict[str, Any] = {}
        for name, value in step.args.items():
            if isinstance(value, str) and value.startswith("@"):
                m = REF.match(value)
                if not m:
                    problems.append(f"{step.id}.{name}: malformed reference {value!r}")
                    continue
                ref_step, ref_out = m.group(1), m.group(2)
                ref_spec = seen.get(ref_step)
                if ref_step not in seen:
                    problems.append(f"{step.id}.{name}: refers to {ref_step}, not an earlier step")
                    continue
                if ref_step not in step.needs:
                    problems.append(f"{step.id}.{name}: refers to {ref_step} but does not need it")
                if ref_spec is None:
                    continue
                tag = ref_spec.outputs.get(ref_out)
                if tag is None:
                    problems.append(
                        f"{step.id}.{name}: {ref_step} ({ref_spec.name}) has no output {ref_out!r}"
                    )
                    continue
                accepted = spec.accepts.get(name, ())
                if tag not in accepted:
                    problems.append(
                        f"{step.id}.{name}: a {tag!r} cannot be used here (accepts {list(accepted)})"
                    )
                    continue
                sample_args[name] = _SAMPLES[tag]
            else:
                sample_args[name] = value
                if name == "aoi" and value is not None:
                    try:
                        area = AOI.model_validate(value).area_km2()
                        if area > max_aoi_km2:
                            problems.append(
                                f"{step.id}.aoi: {area:,.0f} km2 is over the {max_aoi_km2:,.0f} km2 limit"
                            )
                    except (ValidationError, ValueError):
                        pass  # reported by the schema check below
        try:
            spec.args_schema.model_validate(sample_args)
        except ValidationError as exc:
            for err in exc.errors()[:5]:
                loc = ".".join(str(p) for p in err["loc"]) or "args"
                problems.append(f"{step.id}.{loc}: {err['msg']}")
        seen[step.id] = spec
    return problems


def resolve_args(args: dict[str, Any], outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Replace "@sN.name" references by the referenced step's output value."""
    resolved: dict[str, Any] = {}
    for name, value in args.items():
        if isinstance(value, str) and (m := REF.match(value)):
            step_outputs = outputs.get(m.group(1), {})
            if m.group(2) not in step_outputs:
                raise KeyError(f"{m.group(1)} produced no {m.group(2)!r}")
            resolved[name] = step_outputs[m.group(2)]
        else:
            resolved[name] = value
    return resolved
