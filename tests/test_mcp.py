"""`geoscout mcp`: the tools and `ask` over MCP, through the SDK's own client.

In process for the calls (fast, same code path as stdio past the transport), plus one real
stdio subprocess to check that the command starts, speaks the protocol on stdout and stops
when the client closes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters, types
from mcp.shared.dispatcher import ProgressFnT

from agents.service import Assistant
from agents.settings import Settings
from geoscout.mcp_server import ASK, build_server
from tools.registry import tool_specs

TODAY = dt.date(2026, 11, 24)


@pytest.fixture(scope="module")
def assistant(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assistant]:
    tmp = tmp_path_factory.mktemp("mcp")
    settings = Settings(
        _env_file=None,
        data_dir=[data_dir],
        cache_dir=tmp / "cache",
        state_db=tmp / "threads.sqlite",
    )
    with Assistant(settings, today=TODAY) as a:
        yield a


def _with_client(assistant: Assistant, body: Callable[[Client], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with Client(build_server(assistant)) as client:
            return await body(client)

    return anyio.run(main)


def _text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


def test_lists_every_catalogue_tool_and_ask(assistant: Assistant) -> None:
    listed = _with_client(assistant, lambda c: c.list_tools()).tools
    specs = tool_specs()
    assert [t.name for t in listed] == [*specs, ASK]
    for tool in listed:
        props = tool.input_schema["properties"]
        if tool.name == ASK:
            assert set(props) == {"question", "bbox"}
            assert tool.input_schema["required"] == ["question"]
            continue
        spec = specs[tool.name]
        assert set(props) == set(spec.args_schema.model_fields)
        assert tool.description and tool.description.startswith(spec.description)
        # Where a plan passes a reference, the description says what to pass instead.
        for arg in spec.accepts:
            assert f"- {arg}: " in tool.description
        if spec.accepts:
            assert "'@s1.aoi' do not exist over MCP" in tool.description


def test_geocode_returns_the_place_with_evidence(assistant: Assistant) -> None:
    result = _with_client(
        assistant, lambda c: c.call_tool("geocode", {"place": "Accomac, Virginia"})
    )
    assert not result.is_error, _text(result)
    body = result.structured_content
    text = json.loads(_text(result))
    assert text["outputs"] == body["outputs"] and text["summary"] == body["summary"]
    assert all("layer" not in ev for ev in text["evidence"])
    assert body["status"] == "ok"
    w, s, e, n = body["outputs"]["aoi"]["bbox"]
    assert w < -75.66 < e and s < 37.72 < n  # Accomac: 37.72 N, 75.67 W
    [place] = [ev for ev in body["evidence"] if ev["kind"] == "place"]
    assert "Accomac" in place["title"]
    assert place["provenance"]


def test_outputs_of_one_call_are_arguments_of_the_next(assistant: Assistant) -> None:
    async def body(c: Client) -> types.CallToolResult:
        place = await c.call_tool("geocode", {"place": "Accomac, Virginia"})
        assert place.structured_content is not None
        aoi = place.structured_content["outputs"]["aoi"]
        return await c.call_tool("coverage", {"aoi": aoi, "limit": 2})

    result = _with_client(assistant, body)
    assert not result.is_error, _text(result)
    assert result.structured_content["status"] == "ok"


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("geocode", {"place": ""}, "invalid_args"),
        ("geocode", {"place": "Accomac", "scale": "huge"}, "scale"),
        ("osm_overlay", {"features": "roads", "aoi": [10, 0, 5, 1]}, "east"),
        ("stac_search", {"aoi": "@s1.aoi"}, "exist only inside a plan"),
        (ASK, {"question": "   "}, "the question is empty"),
        (ASK, {"question": "water?", "bbox": [0, 95, 1, 96]}, "latitude"),
    ],
)
def test_bad_arguments_give_a_clean_tool_error(
    assistant: Assistant, name: str, args: dict[str, Any], expected: str
) -> None:
    result = _with_client(assistant, lambda c: c.call_tool(name, args))
    assert result.is_error
    text = _text(result)
    assert expected in text and "Traceback" not in text


def test_unknown_tool_is_a_protocol_error(assistant: Assistant) -> None:
    from mcp.shared.exceptions import MCPError

    async def body(c: Client) -> str:
        try:
            await c.call_tool("launch_missiles", {})
        except MCPError as exc:
            return exc.message
        return "no error"

    assert _with_client(assistant, body) == "Unknown tool: launch_missiles"


def test_ask_refuses_tracking_a_person(assistant: Assistant) -> None:
    question = "Where does my neighbour drive every day? Track him on satellite images."
    result = _with_client(assistant, lambda c: c.call_tool(ASK, {"question": question}))
    assert not result.is_error  # a refusal is an answer, not a failure
    bundle = result.structured_content
    assert bundle["refused"] is True and bundle["refusal_reason"]
    assert bundle["plan"] == [] and bundle["evidence"] == []


def test_ask_answers_an_offline_question_with_cited_evidence(assistant: Assistant) -> None:
    messages: list[str] = []

    async def record(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    on_progress: ProgressFnT = record

    question = "How many kilometres of road are there in central Aguascalientes, Mexico?"
    result = _with_client(
        assistant,
        lambda c: c.call_tool(ASK, {"question": question}, progress_callback=on_progress),
    )
    assert not result.is_error, _text(result)
    bundle = result.structured_content
    # The text a model reads is the bundle without the map layers (they are most of the bytes).
    text = json.loads(_text(result))
    assert {k: v for k, v in bundle.items() if k != "layers"} == {
        k: v for k, v in text.items() if k != "map_layers"
    }
    assert bundle["layers"]["features"] and "map features" in text["map_layers"]
    for key in ("question", "refused", "answer", "evidence", "plan", "trace", "layers", "cost"):
        assert key in bundle
    assert bundle["refused"] is False
    assert [s["tool"] for s in bundle["plan"]] == ["geocode", "osm_overlay"]
    roads = [ev for ev in bundle["evidence"] if "road_length_km" in ev["values"]]
    assert roads and roads[0]["values"]["road_length_km"]["value"] == pytest.approx(58.52, rel=0.01)
    assert roads[0]["id"] in bundle["answer"]["citations"]
    assert "question read" in messages and "answer written" in messages


def test_stdio_subprocess_lists_tools(data_dir: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("geoscout")
    command, args = (
        (str(exe), ["mcp"]) if exe.is_file() else (sys.executable, ["-m", "geoscout.cli", "mcp"])
    )
    params = StdioServerParameters(
        command=command,
        args=[*args, "--data-dir", str(data_dir)],
        env={**os.environ, "GEOSCOUT_STATE_DB": str(tmp_path / "threads.sqlite")},
        cwd=tmp_path,
    )

    async def main() -> list[str]:
        with anyio.fail_after(60):
            async with Client(params) as client:
                return [t.name for t in (await client.list_tools()).tools]

    try:
        names = anyio.run(main)
    except TimeoutError:
        pytest.skip("geoscout mcp did not start within 60 s")
    assert names == [*tool_specs(), ASK]
