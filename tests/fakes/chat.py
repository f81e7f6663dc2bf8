"""A scripted chat model for planner and writer tests: no server, no weights.

Replies are consumed in order; each is a string, an exception to raise, or a function of the
request's messages (so a fake writer can read the ledger it was given, as a model would).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from agents.llm import Completion

Reply = str | Exception | Callable[[list[dict[str, str]]], str]


class ScriptedChat:
    def __init__(self, replies: list[Reply], name: str = "scripted-llm") -> None:
        self.replies = list(replies)
        self.name = name
        self.requests: list[dict[str, Any]] = []

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        self.requests.append({"messages": messages, "json_schema": json_schema})
        if not self.replies:
            raise AssertionError(
                f"{self.name}: no scripted reply left for call {len(self.requests)}"
            )
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        text = reply(messages) if callable(reply) else reply
        prompt = sum(len(m["content"]) for m in messages) // 4
        return Completion(
            text=text,
            model=self.name,
            prompt_tokens=prompt,
            completion_tokens=max(1, len(text) // 4),
            seconds=0.01,
            json_mode="json_schema" if json_schema else "text",
        )


def provider(
    planner: ScriptedChat | None = None,
    writer: ScriptedChat | None = None,
    parser: ScriptedChat | None = None,
) -> Any:
    """The ``llm`` callable an Assistant takes: role -> chat model."""
    from agents.llm import LLMUnavailable

    def get(role: str) -> ScriptedChat:
        model = {"planner": planner, "writer": writer, "parser": parser}.get(role)
        if model is None:
            raise LLMUnavailable(f"no scripted {role} in this test")
        return model

    return get


def plan_json(*steps: tuple[str, str, dict[str, Any]]) -> str:
    return json.dumps({"steps": [{"id": i, "tool": t, "args": a} for i, t, a in steps]})


def ledger_value(messages: list[dict[str, str]], key: str) -> tuple[str, str]:
    """(evidence id, value as shown) of ``key`` in the ledger the writer was given."""
    text = messages[1]["content"]  # the first user message holds the ledger
    current = ""
    for line in text.splitlines():
        m = re.match(r"\[(E\d+)\]", line)
        if m:
            current = m.group(1)
        m = re.match(rf"\s+{re.escape(key)} = (.+)$", line)
        if m:
            return current, m.group(1)
    raise AssertionError(f"{key} not in the ledger")
