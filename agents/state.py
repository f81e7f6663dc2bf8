"""Graph state (TypedDict with reducers) and the run context handed to every node."""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from agents.settings import Settings
from tools.base import ToolContext, ToolSpec


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer for parallel writes keyed by step id."""
    out = dict(left or {})
    out.update(right or {})
    return out


class State(TypedDict, total=False):
    """Everything checkpointed for one question (plain JSON values only)."""

    question: str
    bbox: list[float] | None
    raster: str | None
    previous: dict[str, Any] | None  # the previous turn's Intent (follow-ups)
    intent: dict[str, Any]
    future_years: list[int]
    status: str  # "go" | "refused" | "clarify"
    refusal_reason: str | None
    clarification: dict[str, Any] | None
    plan: dict[str, Any] | None
    results: Annotated[dict[str, dict[str, Any]], merge_dicts]
    evidence: list[dict[str, Any]]
    layers: dict[str, Any]
    answer: dict[str, Any]
    guardrails: Annotated[list[dict[str, Any]], operator.add]
    timings: Annotated[dict[str, float], merge_dicts]
    llm_calls: Annotated[list[dict[str, Any]], operator.add]
    notes: Annotated[dict[str, str], merge_dicts]  # "parser" / "planner" / "writer": who, why


class InputState(TypedDict, total=False):
    question: str
    bbox: list[float] | None
    raster: str | None
    previous: dict[str, Any] | None


class StepTask(TypedDict):
    """Payload of one Send: a step with its references already resolved."""

    step: dict[str, Any]
    args: dict[str, Any]


@dataclass(frozen=True)
class GraphContext:
    """Run-scoped context (not checkpointed): settings, tools, their context, the date."""

    settings: Settings
    catalog: dict[str, ToolSpec]
    tool_ctx: ToolContext
    today: dt.date
    # role ("parser" | "planner" | "writer") -> chat model; raises agents.llm.LLMUnavailable. None: no LLM.
    llm: Callable[[str], Any] | None = None
