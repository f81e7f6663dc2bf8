"""The one OpenAI-compatible chat client: planner, writer and vision model all go through it.

One place for the endpoint (base URL, API key), the per-call timeout, transport retries and
the mapping of failures to a few kinds that callers turn into their own messages. Servers:
the embedded llama.cpp server, vLLM, Ollama, LM Studio, OpenAI.

Retries (tenacity) are for a server that could not be reached only, and 0 by default: a
timed-out generation retried doubles the wait, and tools retry through their own
deadline-aware policy. The server's error text is untrusted: it is kept apart in
``ChatError.detail`` (short, for logs and the operator), never in ``message``.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from models.protocols import ChatMessage, ChatReply

ChatErrorKind = Literal["unreachable", "timeout", "auth", "rejected", "server", "bad_output"]


class ChatError(Exception):
    """A failed model call, with a kind the caller maps to its own error codes."""

    def __init__(
        self,
        kind: ChatErrorKind,
        message: str,
        *,
        status_code: int | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.kind: ChatErrorKind = kind
        self.message = message
        self.status_code = status_code
        self.detail = detail  # the server's own words, shortened: untrusted


def user_message(text: str, image_png: bytes | None = None) -> dict[str, Any]:
    """A user turn; with an image, the picture goes first as a base64 PNG data URL."""
    if image_png is None:
        return {"role": "user", "content": text}
    url = "data:image/png;base64," + base64.b64encode(image_png).decode("ascii")
    return {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": text},
        ],
    }


class OpenAIChatClient:
    """Chat completions from one model at one OpenAI-compatible endpoint (see :class:`ChatClient`)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "not-needed",
        timeout_s: float = 120.0,
        max_retries: int = 0,
    ) -> None:
        """``timeout_s`` bounds one call (connection to last byte); ``max_retries`` more
        attempts are made, with backoff, only when the server could not be reached."""
        from openai import OpenAI

        self.base_url = base_url
        self._model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._endpoint_host = urlsplit(base_url).netloc or base_url
        # The openai client's own retries are off: the one retry rule is below.
        self._client = OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=0
        )

    @property
    def model(self) -> str:
        return self._model

    @property
    def endpoint_host(self) -> str:
        return self._endpoint_host

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        response_format: dict[str, Any] | None = None,
    ) -> ChatReply:
        """One completion; raises :class:`ChatError` on any failure."""
        extra: dict[str, Any] = {}
        if response_format is not None:
            extra["response_format"] = response_format

        def call() -> Any:
            try:
                return self._client.chat.completions.create(
                    model=self._model,
                    messages=[dict(m) for m in messages],  # type: ignore[misc]
                    temperature=temperature,
                    max_tokens=max_tokens,
                    **extra,
                )
            except Exception as exc:
                raise chat_error(exc, self._endpoint_host, self._model) from exc

        t0 = time.perf_counter()
        resp = self._retrying(call)
        seconds = time.perf_counter() - t0
        choices = getattr(resp, "choices", None) or []
        choice = choices[0] if choices else None
        message = getattr(choice, "message", None)
        usage = getattr(resp, "usage", None)
        reported = getattr(resp, "model", None)
        finish = getattr(choice, "finish_reason", None)
        return ChatReply(
            text=(getattr(message, "content", None) or "") if message is not None else "",
            model=self._model,
            seconds=seconds,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            finish_reason=str(finish) if finish else None,
            reported_model=reported if isinstance(reported, str) else None,
        )

    def list_models(self) -> list[str]:
        """The model ids the server lists; raises :class:`ChatError`."""

        def call() -> list[str]:
            try:
                return [m.id for m in self._client.models.list().data]
            except Exception as exc:
                raise chat_error(exc, self._endpoint_host, self._model) from exc

        return self._retrying(call)

    def _retrying(self, fn: Any) -> Any:
        from tenacity import (
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential,
        )

        retrying = Retrying(
            stop=stop_after_attempt(1 + max(0, self.max_retries)),
            wait=wait_exponential(multiplier=0.5, max=4.0),
            retry=retry_if_exception(
                lambda e: isinstance(e, ChatError) and e.kind == "unreachable"
            ),
            reraise=True,
        )
        return retrying(fn)


def short_text(text: str, limit: int = 200) -> str:
    return re.sub(r"\s+", " ", text)[:limit]


def chat_error(exc: Exception, host: str, model: str) -> ChatError:
    """Map openai exceptions to kinds; the server's text only goes to ``detail``."""
    import openai

    detail = short_text(str(exc))
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: a subclass
        return ChatError("timeout", f"the model at {host} did not answer in time", detail=detail)
    if isinstance(exc, openai.APIConnectionError):
        return ChatError(
            "unreachable", f"the model server at {host} could not be reached", detail=detail
        )
    status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        kind: ChatErrorKind = "auth"
        message = f"the model server at {host} refused the API key"
    elif isinstance(exc, openai.NotFoundError):
        kind, message = "rejected", f"the server at {host} does not serve the model {model!r}"
    elif isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        kind, message = "rejected", f"the server at {host} rejected the request for {model!r}"
    elif status is not None:
        kind, message = "server", f"the model server at {host} failed (HTTP {status})"
    else:
        kind, message = "server", f"the call to the model at {host} failed ({type(exc).__name__})"
    return ChatError(kind, message, status_code=status, detail=detail)
