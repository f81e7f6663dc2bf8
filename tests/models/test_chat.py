"""The one OpenAI-compatible chat client: messages, usage, error kinds, transport retries."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import httpx2
import openai
import pytest
from fakes.vlm_server import FakeVLMServer, message_parts

from models.chat import ChatError, OpenAIChatClient, user_message
from models.protocols import ChatClient


def test_text_in_text_and_usage_out() -> None:
    with FakeVLMServer("hello") as srv:
        client: ChatClient = OpenAIChatClient(srv.base_url, "m", api_key="sk-x", timeout_s=5)
        reply = client.complete(
            [{"role": "user", "content": "hi"}],
            max_tokens=50,
            response_format={"type": "json_object"},
        )
        body, headers = srv.requests[0], srv.headers[0]
    assert reply.text == "hello" and reply.model == "m" and reply.prompt_tokens == 100
    assert reply.finish_reason == "stop" and reply.seconds > 0
    assert body["max_tokens"] == 50 and body["response_format"] == {"type": "json_object"}
    assert headers["authorization"] == "Bearer sk-x"
    assert client.endpoint_host == f"127.0.0.1:{srv.port}"


def test_image_content_goes_first_as_a_data_url() -> None:
    msg = user_message("find ships", b"\x89PNG")
    with FakeVLMServer("[]") as srv:
        OpenAIChatClient(srv.base_url, "vl").complete([msg], max_tokens=10)
        texts, images = message_parts(srv.requests[0])
    assert texts == ["find ships"]
    assert base64.b64decode(images[0].split(",", 1)[1]) == b"\x89PNG"
    assert user_message("plain") == {"role": "user", "content": "plain"}


def test_server_text_stays_out_of_the_message() -> None:
    with FakeVLMServer("{}", status=500) as srv, pytest.raises(ChatError) as err:
        OpenAIChatClient(srv.base_url, "m").complete([user_message("q")], max_tokens=5)
    assert err.value.kind == "server" and err.value.status_code == 500
    assert "scripted" not in err.value.message and "scripted" in err.value.detail


def _flaky(failures: int) -> tuple[list[int], Any]:
    calls: list[int] = []
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")

    def create(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= failures:
            raise openai.APIConnectionError(request=request)
        msg = SimpleNamespace(content="ok")
        return SimpleNamespace(choices=[SimpleNamespace(message=msg, finish_reason="stop")],
                               usage=None, model="m")  # fmt: skip

    return calls, create


def test_unreachable_servers_are_retried_up_to_max_retries() -> None:
    client = OpenAIChatClient("http://127.0.0.1:9/v1", "m", max_retries=2)
    calls, create = _flaky(failures=2)
    client._client.chat.completions.create = create  # type: ignore[method-assign]
    assert client.complete([user_message("q")], max_tokens=5).text == "ok"
    assert len(calls) == 3

    client = OpenAIChatClient("http://127.0.0.1:9/v1", "m")  # no retries by default
    calls, create = _flaky(failures=1)
    client._client.chat.completions.create = create  # type: ignore[method-assign]
    with pytest.raises(ChatError) as err:
        client.complete([user_message("q")], max_tokens=5)
    assert err.value.kind == "unreachable" and len(calls) == 1


def test_timeouts_are_not_retried() -> None:
    with FakeVLMServer("{}", delay_s=1.0) as srv, pytest.raises(ChatError) as err:
        OpenAIChatClient(srv.base_url, "m", timeout_s=0.2, max_retries=3).complete(
            [user_message("q")], max_tokens=5
        )
    assert err.value.kind == "timeout" and len(srv.requests) == 1
