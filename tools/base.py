"""Shared contracts of every tool: context, results, evidence drafts, specs, the error funnel.

A tool gets typed arguments and a :class:`ToolContext` (never global settings) and returns a
:class:`ToolResult`: a short summary for language models, structured ``outputs`` that later
plan steps may reference (``@s1.aoi``), and evidence drafts that the merger numbers E1..En.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.provenance import Provenance

log = logging.getLogger(__name__)

EvidenceKind = Literal["place", "scene", "mask", "detections", "features", "figure"]
ErrorCode = Literal[
    "invalid_args",  # arguments failed validation
    "not_found",  # place, scene or file not found
    "ambiguous",  # several candidates; a person must choose
    "no_data",  # nothing matched (no imagery for the dates, no features in the area)
    "unavailable",  # capability not configured here (no VLM, no model)
    "unsupported",  # the data cannot answer this (bands missing, resolution too coarse)
    "too_large",  # over a budget (pixels, area)
    "service_unreachable",  # network service down or refused
    "timeout",
    "bad_data",  # corrupt or unreadable input
    "internal",  # a bug: reported without internals
]


class Quantity(BaseModel):
    """A number with its unit and, when known, its uncertainty (same unit)."""

    model_config = ConfigDict(extra="forbid")

    value: float
    unit: str
    uncertainty: float | None = None
    note: str | None = None


class EvidenceDraft(BaseModel):
    """Evidence as a tool produces it; the merger assigns the public id (E1, E2, ...)."""

    key: str = Field(description="Unique within the step, e.g. 'place', 'scene:S2A_...', 'mask'")
    kind: EvidenceKind
    title: str
    values: dict[str, Quantity] = Field(default_factory=dict)
    geometry: dict[str, Any] | None = Field(
        default=None, description="GeoJSON geometry, EPSG:4326, RFC 7946"
    )
    provenance: Provenance
    layer: dict[str, Any] | None = Field(
        default=None, description="GeoJSON FeatureCollection drawn on the map for this evidence"
    )
    caveats: list[str] = Field(default_factory=list)
    facts: dict[str, str] = Field(
        default_factory=dict,
        description="Non-numeric facts (place name, acquisition date or 'unknown', model name)",
    )


class ToolError(BaseModel):
    """A sanitised error: codes for the re-planner, a message and a hint for people."""

    code: ErrorCode
    message: str
    hint: str | None = None
    candidates: list[str] = Field(default_factory=list)


class ToolResult(BaseModel):
    status: Literal["ok", "error", "unavailable"]
    summary: str = ""
    outputs: dict[str, Any] = Field(default_factory=dict)
    evidence: list[EvidenceDraft] = Field(default_factory=list)
    caveats: list[str] = Field(default_factory=list)
    error: ToolError | None = None

    @classmethod
    def fail(
        cls,
        code: ErrorCode,
        message: str,
        hint: str | None = None,
        candidates: list[str] | None = None,
    ) -> ToolResult:
        status: Literal["error", "unavailable"] = (
            "unavailable" if code == "unavailable" else "error"
        )
        return cls(
            status=status,
            summary=message,
            error=ToolError(code=code, message=message, hint=hint, candidates=candidates or []),
        )


class GeoScoutToolError(Exception):
    """Raise inside a tool to end it with a clean, coded error."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        hint: str | None = None,
        candidates: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.hint = hint
        self.candidates = candidates or []


@dataclass(frozen=True)
class VLMEndpoint:
    """An OpenAI-compatible vision-language model endpoint."""

    base_url: str
    model: str
    api_key: str = "not-needed"
    timeout_s: float = 120.0


@dataclass(frozen=True)
class ToolLimits:
    max_aoi_km2: float = 5_000.0
    max_pixels: int = 40_000_000
    max_features: int = 50_000
    max_scenes: int = 50
    max_vector_polygons: int = 5_000
    http_timeout_s: float = 30.0


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know of the deployment. Built once from settings by the agents layer."""

    profile: Literal["offline", "online"] = "offline"
    data_dirs: tuple[Path, ...] = ()
    cache_dir: Path = Path(".geoscout/cache")
    stac_url: str | None = None
    # Starts the local STAC API on first use and returns its URL (offline profile).
    stac_url_factory: Callable[[], str] | None = None
    stac_collections: tuple[str, ...] = ()
    nominatim_url: str = "https://nominatim.openstreetmap.org"
    overpass_url: str = "https://overpass-api.de/api"
    user_agent: str = "geoscout/0.1 (+https://example.invalid/geoscout)"
    vlm: VLMEndpoint | None = None
    limits: ToolLimits = field(default_factory=ToolLimits)
    today: str | None = None  # ISO date; injected so tests can pin "now"
    extra: dict[str, Any] = field(default_factory=dict)

    def resolve_stac_url(self) -> str:
        if self.stac_url:
            return self.stac_url
        if self.stac_url_factory is not None:
            return self.stac_url_factory()
        raise GeoScoutToolError(
            "unavailable",
            "no STAC API is configured",
            "set GEOSCOUT_STAC_URL or use the offline profile, which starts a local STAC API",
        )


ToolFn = Callable[[Any, ToolContext], ToolResult]


class IntentView(Protocol):
    """What a tool may read of a question's intent to say whether it is relevant.

    ``agents.intent.Intent`` satisfies it; tools never import the agents layer.
    """

    @property
    def targets(self) -> Sequence[str]: ...
    @property
    def objects(self) -> str | None: ...
    @property
    def on_image(self) -> bool: ...


def label_text(value: Any, limit: int = 60) -> str | None:
    """An argument as plain words for a step label; None for references ("@s1.aoi") and
    shapes, which mean nothing to a person."""
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        value = ", ".join(value[:3])
    if isinstance(value, str) and value.strip() and not value.startswith("@"):
        text = " ".join(value.split())
        return text[:limit] + ("…" if len(text) > limit else "")
    return None


def _always(intent: IntentView) -> bool:
    return True


def _run_label(name: str) -> Callable[[dict[str, Any]], str]:
    return lambda args: f"Run {name}"


@dataclass(frozen=True)
class ToolSpec:
    """Everything about one tool in one place: schema, runner, description, prompt fragment.

    ``outputs`` names what later steps may reference (``@step.output``) and its type tag, so
    references are validated at planning time, before any tool runs.
    """

    name: str
    args_schema: type[BaseModel]
    run: ToolFn
    description: str
    prompt_fragment: str
    # Output name -> type tag ("aoi", "scene", "scenes", "geometry", "boxes").
    outputs: dict[str, str]
    # Argument name -> type tags a reference in that argument may point to.
    accepts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # A line for people (the app's step labels) from the arguments only.
    label: Callable[[dict[str, Any]], str] | None = None
    # Whether a question's intent can need this tool (the LLM planner's allowed set).
    relevant: Callable[[IntentView], bool] = _always
    # Measures inside an area: a step without ``aoi`` gets the geocoded place's aoi, since
    # without it the whole image would be analysed, which answers another question.
    needs_area: bool = False
    # Arguments the LLM planner does not set (band lists, model names): defaults stay.
    planner_hidden: frozenset[str] = frozenset()
    # Optional numeric limits kept in an LLM plan only when the question states the number.
    stated_only: frozenset[str] = frozenset()
    # Closed vocabularies not written as ``Literal`` types (e.g. the targets models map).
    arg_enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Evidence kinds this tool produces (what the merger and the render layer can expect).
    produces: tuple[EvidenceKind, ...] = ()

    def step_label(self, args: dict[str, Any]) -> str:
        return (self.label or _run_label(self.name))(args)

    def enums(self) -> dict[str, list[str]]:
        """Closed vocabularies of the arguments, read from their ``Literal`` types."""
        out: dict[str, list[str]] = {}
        for name, info in self.args_schema.model_fields.items():
            values = _literal_values(info.annotation)
            if values:
                out[name] = values
        out.update({k: list(v) for k, v in self.arg_enums.items()})
        return out

    def invoke(self, raw_args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Validate and run; any exception becomes a sanitised ToolResult (never leaks)."""
        try:
            args = self.args_schema.model_validate(raw_args)
        except ValidationError as exc:
            return ToolResult.fail("invalid_args", validation_message(exc))
        try:
            return self.run(args, ctx)
        except GeoScoutToolError as exc:
            return ToolResult.fail(exc.code, exc.message, exc.hint, exc.candidates)
        except TimeoutError:
            return ToolResult.fail("timeout", f"{self.name} timed out")
        except Exception:  # the funnel: log internals, return a clean message
            log.error("tool %s failed:\n%s", self.name, traceback.format_exc())
            return ToolResult.fail(
                "internal",
                f"{self.name} failed unexpectedly; the details are in the log.",
            )

    def as_langchain_tool(self, ctx: ToolContext) -> Any:
        """The same tool as a LangChain StructuredTool bound to a context."""
        from langchain_core.tools import StructuredTool

        def _call(**kwargs: Any) -> dict[str, Any]:
            return self.invoke(kwargs, ctx).model_dump(mode="json")

        return StructuredTool.from_function(
            func=_call, name=self.name, description=self.description, args_schema=self.args_schema
        )


def _literal_values(annotation: Any) -> list[str]:
    if get_origin(annotation) is Literal:
        return [str(v) for v in get_args(annotation) if v is not None]
    for arg in get_args(annotation):  # Optional[Literal[...]] and unions
        if get_origin(arg) is Literal:
            return [str(v) for v in get_args(arg) if v is not None]
    return []


def validation_message(exc: ValidationError) -> str:
    """A validation error as one short line for people (first five problems)."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


class Timer:
    """Context manager measuring wall seconds."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
