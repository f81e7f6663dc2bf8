"""The OpenAI-compatible client: JSON modes, downgrades, errors, capability flags."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.llm import (
    LLMCallError,
    LLMUnavailable,
    OpenAIChat,
    capabilities_for,
    first_model,
    parse_json_object,
)
from tests.fakes.vlm_server import FakeVLMServer

SCHEMA = {"type": "object", "properties": {"steps": {"type": "array"}}, "required": ["steps"]}


def test_json_schema_is_sent_as_response_format() -> None:
    with FakeVLMServer(reply='{"steps": []}') as srv:
        chat = OpenAIChat(base_url=srv.base_url, name="qwen2.5-coder-1.5b-instruct-q4_k_m")
        c = chat.chat([{"role": "user", "content": "plan"}], json_schema=SCHEMA)
    body = srv.requests[0]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert body["temperature"] == 0.0
    assert c.json_mode == "json_schema" and c.prompt_tokens == 100 and c.text == '{"steps": []}'


def test_a_server_without_json_schema_gets_json_object_then_prompt() -> None:
    def reject(body: dict[str, Any]) -> str | None:
        rf = body.get("response_format")
        return f"response_format {rf['type']} is not supported" if rf else None

    with FakeVLMServer(reply='Here: {"steps": []} done', reject=reject) as srv:
        chat = OpenAIChat(base_url=srv.base_url, name="some-model")
        c = chat.chat([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
                      json_schema=SCHEMA)  # fmt: skip
        assert chat.mode == "prompt" and c.json_mode == "prompt"
        assert parse_json_object(c.text) == {"steps": []}
        # The downgrade is remembered: the next call goes straight to the prompt path.
        chat.chat([{"role": "user", "content": "Q"}], json_schema=SCHEMA)
    kinds = [b.get("response_format", {}).get("type") for b in srv.requests]
    assert kinds == ["json_schema", "json_object", None, None]
    assert json.dumps(SCHEMA, separators=(",", ":")) in srv.requests[2]["messages"][0]["content"]


def test_prompt_mode_from_settings_sends_no_response_format() -> None:
    with FakeVLMServer(reply="{}") as srv:
        OpenAIChat(base_url=srv.base_url, name="m", json_mode="prompt").chat(
            [{"role": "user", "content": "Q"}], json_schema=SCHEMA
        )
    assert "response_format" not in srv.requests[0]


def test_timeouts_and_dead_servers_are_call_errors() -> None:
    with FakeVLMServer(reply="{}", delay_s=2.0) as srv:
        chat = OpenAIChat(base_url=srv.base_url, name="m", timeout_s=0.3)
        with pytest.raises(LLMCallError, match="no answer within"):
            chat.chat([{"role": "user", "content": "Q"}])
    dead = OpenAIChat(base_url="http://127.0.0.1:9/v1", name="m", timeout_s=2)
    with pytest.raises(LLMCallError, match="cannot reach"):
        dead.chat([{"role": "user", "content": "Q"}])
    with FakeVLMServer(reply="{}", status=500) as srv, pytest.raises(LLMCallError, match="failed"):
        OpenAIChat(base_url=srv.base_url, name="m").chat([{"role": "user", "content": "Q"}])


def test_unreachable_server_for_model_listing_is_unavailable() -> None:
    with pytest.raises(LLMUnavailable) as err:
        first_model("http://127.0.0.1:9/v1", "k", timeout_s=1)
    assert "OPENAI_BASE_URL" in err.value.hint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ('Sure! {"a": "}"} and more {"b": 2}', {"a": "}"}),
        ('junk { not json } then {"c": true}', {"c": True}),
    ],
)
def test_json_is_found_in_chatty_replies(text: str, expected: Any) -> None:
    assert parse_json_object(text) == expected


def test_no_json_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_json_object("I cannot help with that.")


def test_capabilities_by_model_family() -> None:
    assert capabilities_for("qwen2.5-coder-1.5b-instruct-q4_k_m").json_schema
    assert not capabilities_for("qwen2.5-coder-1.5b-instruct-q4_k_m").tool_calls
    assert capabilities_for("Qwen/Qwen2.5-VL-7B-Instruct").vision
    assert capabilities_for("gpt-4o-mini").tool_calls
