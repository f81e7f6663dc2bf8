"""Structured contracts of the agent: plans, evidence, traces, cost and the AnswerBundle.

These are the shapes fixed by DESIGN.md that the app, the evals and outside checks read.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.base import EvidenceKind, Quantity
from tools.provenance import Provenance

STEP_ID = re.compile(r"^s[1-9][0-9]?$")
# A reference to an earlier step's output: "@s1.aoi".
REF = re.compile(r"^@(s[1-9][0-9]?)\.([a-z_]{1,32})$")


class PlanStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Step id, s1..s99")
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    needs: list[str] = Field(default_factory=list, description="Ids of steps this one waits for")
    why: str = Field(default="", description="One line for people: what this step is for")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not STEP_ID.match(v):
            raise ValueError(f"step id {v!r} must look like s1, s2, ...")
        return v


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[PlanStep] = Field(default_factory=list)
    intent: str = Field(default="", description="What the question asks, in a few words")
    planner: str = Field(default="rules", description="'rules' or the LLM model name")
    notes: list[str] = Field(default_factory=list)


class Evidence(BaseModel):
    """An evidence item of the ledger (DESIGN.md contract)."""

    id: str
    kind: EvidenceKind
    title: str
    values: dict[str, Quantity] = Field(default_factory=dict)
    facts: dict[str, str] = Field(default_factory=dict)
    geometry: dict[str, Any] | None = None
    provenance: Provenance
    caveats: list[str] = Field(default_factory=list)


class TraceEntry(BaseModel):
    step: str
    tool: str
    status: Literal["ok", "error", "skipped", "unavailable"]
    seconds: float = 0.0
    started: float | None = Field(default=None, description="epoch seconds when the step began")
    error: str | None = None
    error_code: str | None = None
    hint: str | None = None
    summary: str = ""


class LLMUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = "none"


class LLMCall(BaseModel):
    """One chat completion made for this answer."""

    role: Literal["parser", "planner", "writer"]
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    json_mode: str = "text"
    outcome: str = ""


class Cost(BaseModel):
    seconds: float = 0.0
    steps: dict[str, float] = Field(default_factory=dict, description="wall seconds per node/step")
    llm: LLMUsage = Field(default_factory=LLMUsage)
    energy_wh: float = 0.0
    co2e_g: float = 0.0
    method: str = ""


class GuardResult(BaseModel):
    name: str
    passed: bool
    detail: str = ""


class Answer(BaseModel):
    text: str = ""
    citations: list[str] = Field(default_factory=list)
    caveats: list[str] = Field(default_factory=list)
    writer: str = "template"


class Clarification(BaseModel):
    question: str
    candidates: list[str] = Field(default_factory=list)


class AnswerBundle(BaseModel):
    """Everything one question produces; printed by `geoscout ask --json`."""

    question: str
    refused: bool = False
    refusal_reason: str | None = None
    clarification: Clarification | None = None
    answer: Answer = Field(default_factory=Answer)
    evidence: list[Evidence] = Field(default_factory=list)
    plan: list[PlanStep] = Field(default_factory=list)
    intent: dict[str, Any] | None = Field(
        default=None, description="What the question was understood to ask (agents.intent.Intent)"
    )
    parser_note: str = Field(default="", description="who read the question, and any fallback")
    planner: str = "rules"
    planner_note: str = Field(default="", description="why this planner: model, repair, fallback")
    writer_note: str = Field(default="", description="why this writer: model, revision, fallback")
    llm_calls: list[LLMCall] = Field(default_factory=list)
    trace: list[TraceEntry] = Field(default_factory=list)
    layers: dict[str, Any] = Field(
        default_factory=lambda: {"type": "FeatureCollection", "features": []}
    )
    cost: Cost = Field(default_factory=Cost)
    guardrails: list[GuardResult] = Field(default_factory=list)
    thread_id: str | None = None
    created: str | None = None
    profile: str = "offline"
    version: str = "0.1.0"
