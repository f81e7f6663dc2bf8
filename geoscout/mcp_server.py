"""GeoScout for other agents: the tool catalogue and ``ask`` over MCP (stdio).

Each tool of ``tools.registry.tool_specs()`` is listed with its pydantic argument schema as
the MCP input schema and runs through ``ToolSpec.invoke`` with the same tool context, step
timeout and cancellation as a planned step. ``ask`` runs the whole pipeline (the same
``Assistant`` as ``geoscout ask --json``) and returns the AnswerBundle.

Plan references (``@s1.aoi``) exist only inside one plan: across separate MCP calls the
client passes the values themselves (an earlier call's ``outputs`` are valid arguments).

stdout is the protocol: logs go to stderr or the log file, never to stdout.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp import types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents.graph import run_tool_call
from agents.schemas import REF, AnswerBundle
from agents.service import Assistant
from agents.settings import Settings
from agents.state import GraphContext
from tools.base import ToolResult, ToolSpec, validation_message
from tools.geo import parse_bbox

log = logging.getLogger(__name__)

SERVER_NAME = "geoscout"
ASK = "ask"


def _form(tags: tuple[str, ...]) -> str:
    """What a value of an argument that accepts these output type tags looks like (the
    first tag is the argument's main kind)."""
    first = tags[0] if tags else ""
    if first == "aoi":
        return 'an area {"bbox": [west, south, east, north]} in degrees (EPSG:4326) or a GeoJSON geometry'
    if first in ("geometry", "boxes"):
        return "a GeoJSON geometry (EPSG:4326)"
    if first in ("scene", "scenes"):
        return "a scene object (id, bbox, assets, ...)"
    return "a value of type " + "/".join(tags)


# Graph node -> what a progress notification says while ``ask`` runs.
_PROGRESS = {
    "understand": "question read",
    "guard_input": "question checked",
    "plan": "plan made",
    "run_step": "step done",
    "merge": "evidence merged",
    "write": "answer written",
    "guard_output": "answer checked",
}


class AskArgs(BaseModel):
    """Arguments of the MCP ``ask`` tool: the same inputs as ``geoscout ask``."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(
        min_length=1,
        description="The question in plain words (English, French, Spanish or German), e.g. "
        "'How much open water is there around Accomac, Virginia?'",
    )
    bbox: list[float] | None = Field(
        default=None,
        min_length=4,
        max_length=4,
        description="Optional area of interest: [west, south, east, north] in degrees",
    )

    @field_validator("question")
    @classmethod
    def _strip(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is empty")
        return value.strip()

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, value: list[float] | None) -> list[float] | None:
        return None if value is None else list(parse_bbox(value))


def _producers(tags: Iterable[str], catalog: Mapping[str, ToolSpec]) -> list[str]:
    return [
        f"{name}'s outputs.{out}"
        for name, spec in catalog.items()
        for out, tag in spec.outputs.items()
        if tag in tags
    ]


def mcp_description(spec: ToolSpec, catalog: Mapping[str, ToolSpec]) -> str:
    """The tool's description plus what each argument that a plan fills by reference takes
    here, where references do not exist; generated from the declarations, so it cannot drift."""
    lines = [spec.description, ""]
    if not spec.accepts:
        lines.append("All arguments are plain values.")
    else:
        lines.append(
            "Step references such as '@s1.aoi' do not exist over MCP: pass the values themselves."
        )
        for arg, tags in spec.accepts.items():
            line = f"- {arg}: {_form(tags)}"
            # The first tag is the usual source; listing every compatible output is noise.
            where = _producers(tags[:1], catalog)
            if where:
                line += f"; e.g. the value of {' or '.join(where)} from an earlier call"
            lines.append(line + ".")
    if spec.outputs:
        outs = ", ".join(f"{k} ({v})" for k, v in spec.outputs.items())
        lines.append(f"Returns a ToolResult: status, summary, outputs [{outs}], evidence, caveats.")
    return "\n".join(lines)


ASK_DESCRIPTION = (
    "Answer a geospatial question end to end, as `geoscout ask --json` does: understand the "
    "question, check it, plan and run the tools, merge the evidence, write an answer that cites "
    "it. Returns the AnswerBundle: question, refused, refusal_reason, clarification, answer "
    "{text, citations, caveats}, evidence, plan, trace, layers, cost, guardrails. A declined "
    "question is a normal result with refused=true and the reason."
)


def _references(value: Any) -> list[str]:
    """Step references anywhere in the arguments (they only mean something inside a plan)."""
    if isinstance(value, str):
        return [value] if REF.match(value) else []
    if isinstance(value, dict):
        return [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


def _readable(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without its map layers, for the text block a language model reads.

    Layers are most of the bytes (an OSM roads layer is hundreds of KB) and no use to read;
    the structured content keeps them, and ``outputs`` stay whole so they can be passed on.
    """
    out = dict(payload)
    features = 0
    if isinstance(out.get("layers"), dict):  # an AnswerBundle
        features += len(out.pop("layers").get("features") or [])
    evidence = []
    for item in out.get("evidence") or []:
        if isinstance(item, dict) and "layer" in item:
            features += len((item["layer"] or {}).get("features") or [])
            item = {k: v for k, v in item.items() if k != "layer"}
        evidence.append(item)
    if "evidence" in out:
        out["evidence"] = evidence
    if features:
        out["map_layers"] = (
            f"{features} map features (GeoJSON) left out of this text; "
            "they are in the structured content"
        )
    return out


def _text(payload: dict[str, Any]) -> list[types.ContentBlock]:
    return [types.TextContent(text=json.dumps(_readable(payload), ensure_ascii=False))]


def _tool_error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def _from_result(result: ToolResult) -> types.CallToolResult:
    payload = result.model_dump(mode="json")
    if result.error is None:
        return types.CallToolResult(content=_text(payload), structured_content=payload)
    err = result.error
    text = f"{result.status} ({err.code}): {err.message}"
    if err.hint:
        text += f". Hint: {err.hint}"
    if err.candidates:
        text += f". Candidates: {'; '.join(err.candidates)}"
    # The structured result too: candidates and codes are for the calling agent to act on.
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=payload, is_error=True
    )


class GeoScoutMCP:
    """The handlers, bound to one Assistant (its services, catalogue and tool context)."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.catalog = assistant.catalog
        # Questions run one at a time: each may use every core and the shared LLM server.
        self._asks = anyio.CapacityLimiter(1)

    def tools(self) -> list[types.Tool]:
        result_schema = ToolResult.model_json_schema(mode="serialization")
        listed = [
            types.Tool(
                name=name,
                description=mcp_description(spec, self.catalog),
                input_schema=spec.args_schema.model_json_schema(),
                output_schema=result_schema,
            )
            for name, spec in self.catalog.items()
        ]
        listed.append(
            types.Tool(
                name=ASK,
                description=ASK_DESCRIPTION,
                input_schema=AskArgs.model_json_schema(),
                output_schema=AnswerBundle.model_json_schema(mode="serialization"),
            )
        )
        return listed

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.tools())

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        args = dict(params.arguments or {})
        if params.name != ASK and params.name not in self.catalog:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        try:
            if params.name == ASK:
                return await self._ask(ctx, args)
            return await self._run_tool(self.catalog[params.name], args)
        except Exception:  # the funnel: internals to the log, a clean line to the client
            log.exception("MCP call %s failed", params.name)
            return _tool_error(f"{params.name} failed unexpectedly; the details are in the log.")

    async def _run_tool(self, spec: ToolSpec, args: dict[str, Any]) -> types.CallToolResult:
        refs = _references(args)
        if refs:
            return _tool_error(
                f"invalid_args: step references ({', '.join(refs)}) exist only inside a plan; "
                "over MCP pass the value itself, e.g. the 'outputs' of an earlier call"
            )
        result = await anyio.to_thread.run_sync(
            partial(self._invoke, spec, args), abandon_on_cancel=True
        )
        return _from_result(result)

    def _invoke(self, spec: ToolSpec, args: dict[str, Any]) -> ToolResult:
        """One call with the tool context, step timeout and cancel event of a planned step."""
        a = self.assistant
        settings = a.settings
        today = a.today or dt.date.today()
        gctx = GraphContext(
            settings=settings,
            catalog=self.catalog,
            tool_ctx=a.services.tool_context(today=today),
            today=today,
        )
        return run_tool_call(spec.invoke, args, gctx, settings.step_timeout_s)

    async def _ask(
        self, ctx: ServerRequestContext[Any], raw: dict[str, Any]
    ) -> types.CallToolResult:
        try:
            args = AskArgs.model_validate(raw)
        except ValidationError as exc:
            return _tool_error(f"invalid_args: {validation_message(exc)}")
        limit = self.assistant.settings.max_question_chars
        if len(args.question) > limit:
            return _tool_error(
                f"invalid_args: the question is {len(args.question):,} characters long; the "
                f"limit is {limit:,} (GEOSCOUT_MAX_QUESTION_CHARS)"
            )
        report = _progress_reporter(ctx)
        async with self._asks:
            bundle = await anyio.to_thread.run_sync(
                partial(self._run_ask, args, report), abandon_on_cancel=True
            )
        payload = bundle.model_dump(mode="json")
        return types.CallToolResult(content=_text(payload), structured_content=payload)

    def _run_ask(self, args: AskArgs, report: Callable[[str], None]) -> AnswerBundle:
        bundle: AnswerBundle | None = None
        for kind, item in self.assistant.stream(args.question, bbox=args.bbox):
            if kind == "bundle":
                bundle = item
            else:
                for node in item:
                    if node in _PROGRESS:
                        report(_PROGRESS[node])
        if bundle is None:  # the stream always ends with the bundle
            raise RuntimeError("the pipeline ended without an answer")
        return bundle


def _progress_reporter(ctx: ServerRequestContext[Any]) -> Callable[[str], None]:
    """Progress notifications from the worker thread (a no-op unless the client asked for
    them); they also keep a client's request timeout from expiring on a long question."""
    count = 0

    def report(message: str) -> None:
        nonlocal count
        count += 1
        try:
            anyio.from_thread.run(
                partial(ctx.session.report_progress, float(count), message=message)
            )
        except Exception as exc:  # a client gone away must not cost the answer
            log.debug("progress notification not sent: %s", exc)

    return report


def build_server(assistant: Assistant) -> Server[Any]:
    """The MCP server over ``assistant`` (owned by the caller, who closes it)."""
    handlers = GeoScoutMCP(assistant)
    return Server(
        SERVER_NAME,
        version=_version(),
        instructions=(
            "GeoScout answers geospatial questions with cited evidence. Call 'ask' with a "
            "question for a complete answer, or call the tools one by one, passing an earlier "
            "call's outputs as later arguments (no '@step' references)."
        ),
        on_list_tools=handlers.list_tools,
        on_call_tool=handlers.call_tool,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("geoscout")
    except PackageNotFoundError:
        return "0.1.0"


async def _serve_stdio(settings: Settings) -> None:
    async with AsyncExitStack() as stack:
        assistant = stack.enter_context(Assistant(settings))
        server = build_server(assistant)
        read, write = await stack.enter_async_context(stdio_server())
        # Returns when the client closes stdin; the exit stack then stops the local servers.
        await server.run(read, write, server.create_initialization_options())


def serve(settings: Settings) -> None:
    """Serve over stdin/stdout until the client closes the connection."""
    anyio.run(_serve_stdio, settings)


__all__ = ["ASK", "AskArgs", "GeoScoutMCP", "build_server", "mcp_description", "serve"]
