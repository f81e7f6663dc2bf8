"""JSON in a model's text: the one lenient reader for the planner, the writer and the VLM.

Models wrap JSON in code fences and prose, and stop mid-answer at their token limit. The
reader takes the whole text when it parses; otherwise each balanced ``{...}`` / ``[...]``
span that parses, left to right, without overlaps. A truncated list thus gives back its
complete items, and prose around an object is ignored. Nothing is invented: there is no
closing of open brackets or quoting of bare words (the ``json-repair`` package does that,
and turns a refusal such as "I cannot help" into a valid empty string, which would hide a
bad answer).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_FENCE_ENDS = re.compile(r"^```(?:json)?\s*|\s*```$")
_CLOSERS = {"{": "}", "[": "]"}


def json_values(text: str, openers: str = "{[") -> Iterator[Any]:
    """Every JSON value in ``text``: the whole text (code fence stripped) when it parses,
    else each balanced span starting with one of ``openers`` that parses, in order."""
    t = _FENCE_ENDS.sub("", text.strip())
    try:
        whole = json.loads(t)
    except (ValueError, RecursionError):  # RecursionError: brackets nested too deep
        pass
    else:
        yield whole
        return
    ends: dict[int, int | None] = {}
    i = 0
    while i < len(t):
        if t[i] not in openers:
            i += 1
            continue
        if i not in ends:
            _match_from(t, i, ends)
        end = ends[i]
        if end is not None:
            try:
                value = json.loads(t[i : end + 1])
            except (ValueError, RecursionError):
                pass
            else:
                yield value
                i = end + 1
                continue
        i += 1


def parse_json_lenient(text: str, openers: str = "{[") -> Any:
    """The first JSON value in ``text`` (see :func:`json_values`); ValueError when none."""
    for value in json_values(text, openers):
        return value
    raise ValueError("no JSON in the model's reply")


def _match_from(t: str, start: int, ends: dict[int, int | None]) -> None:
    """Record in ``ends`` where the bracket at ``start`` closes (None: never, or wrongly),
    and with it every bracket opened inside: each would scan the same characters."""
    stack: list[int] = []
    in_str = esc = False
    for k in range(start, len(t)):
        ch = t[k]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in _CLOSERS:
            stack.append(k)
        elif ch in "}]":
            j = stack.pop()
            if _CLOSERS[t[j]] != ch:
                stack.append(j)
                break
            ends[j] = k
            if not stack:
                return
    for j in stack:  # unclosed at the end of the text, or a mismatched closer
        ends[j] = None
