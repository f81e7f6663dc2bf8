"""The LLM writer: the answer text from the evidence ledger, checked by the output guard.

The model sees the question and the ledger only, never raw tool output. Every piece of text
that came from tools or data (titles, names, descriptions, error messages) is escaped and
wrapped in ``<data>...</data>`` with an instruction that it is data. Numbers are shown
exactly as the output guard will accept them (:func:`agents.writer.fmt`).

The draft passes :func:`agents.guards.guard_output` (citations exist, numbers are in the
evidence each sentence cites, no markup) or gets one revision with the guard's findings;
then the caller uses the template writer. Every draft's verdict is recorded.
"""

from __future__ import annotations

import html
import re
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agents.guards import guard_output
from agents.llm import ChatModel, Completion, LLMCallError, parse_json_object
from agents.schemas import Answer, Evidence, GuardResult, TraceEntry
from agents.writer import fmt
from prompts import load_prompt

_UNITS = {"km2": "km²", "m2": "m²", "pct": "%"}
_MAX_FACTS = 8
# Evidence that answers the question; an answer must report (cite) each of them.
PRIMARY_KINDS = {"mask", "features", "figure", "detections"}


class WriteAttempt(BaseModel):
    answer: Answer | None = None  # None: fall back to the template writer
    calls: list[Completion] = Field(default_factory=list)
    guards: list[GuardResult] = Field(default_factory=list)
    revised: bool = False
    error: str | None = None


def as_data(text: str, limit: int = 160) -> str:
    """Untrusted text as inert data: one line, escaped, bounded, delimited."""
    flat = re.sub(r"\s+", " ", str(text)).strip()
    flat = "".join(ch for ch in flat if ch.isprintable())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return f"<data>{html.escape(flat, quote=False)}</data>"


def _value(ev: Evidence, key: str) -> str:
    v = ev.values[key]
    s = fmt(v.value)
    if v.uncertainty:
        s += f" ± {fmt(v.uncertainty)}"
    unit = _UNITS.get(v.unit, v.unit)
    if unit and unit not in ("count", "1"):
        s += unit if unit == "%" else f" {unit}"
    return s


def render_ledger(ledger: list[Evidence], trace: list[TraceEntry]) -> str:
    lines: list[str] = []
    # Measurements first: a small model leans on what it reads first.
    ordered = sorted(ledger, key=lambda e: (e.kind not in PRIMARY_KINDS, e.kind != "figure"))
    for ev in ordered:
        lines.append(f"[{ev.id}] {ev.kind}: {as_data(ev.title, 120)}")
        for key in ev.values:
            lines.append(f"  {key} = {_value(ev, key)}")
        for key, val in list(ev.facts.items())[:_MAX_FACTS]:
            lines.append(f"  {key}: {as_data(val, 100)}")
    problems = [t for t in trace if t.status in ("error", "unavailable")]
    if problems:
        lines.append("Steps that gave no evidence:")
        for t in problems:
            hint = f"; what would work: {as_data(t.hint, 240)}" if t.hint else ""
            lines.append(f"- {t.step} {t.tool} {t.status}: {as_data(t.error or '', 200)}{hint}")
    return "\n".join(lines)


def writer_messages(
    question: str, ledger: list[Evidence], trace: list[TraceEntry]
) -> list[dict[str, str]]:
    user = (
        f"Question: {as_data(question, 500)}\n\nEvidence ledger:\n{render_ledger(ledger, trace)}"
        "\n\nWrite the answer."
    )
    return [
        {"role": "system", "content": load_prompt("writer_system")},
        {"role": "user", "content": user},
    ]


class _Sentence(BaseModel):
    text: str
    cite: list[str] = Field(default_factory=list)


class _Draft(BaseModel):
    sentences: list[_Sentence]


def answer_schema(ids: list[str]) -> dict[str, Any]:
    """Sentences, each with the ids it cites: with a grammar-constrained server an unknown
    id cannot even be produced."""
    cite: dict[str, Any] = {"type": "array", "maxItems": 4, "items": {"type": "string"}}
    if ids:
        cite["items"]["enum"] = ids
    return {
        "type": "object",
        "properties": {
            "sentences": {
                "type": "array",
                "minItems": 1,
                "maxItems": 6,
                "items": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}, "cite": cite},
                    "required": ["text", "cite"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["sentences"],
        "additionalProperties": False,
    }


def render_draft(reply: str) -> str:
    """The answer text: sentences with their [E#] citations, or the reply as plain text
    (servers on the prompt path may ignore the format)."""
    try:
        draft = _Draft.model_validate(parse_json_object(reply))
    except (ValueError, ValidationError):
        return reply.strip()
    out: list[str] = []
    for s in draft.sentences:
        text = s.text.strip()
        cites = "".join(f" [{c}]" for c in dict.fromkeys(s.cite) if f"[{c}]" not in text)
        m = re.match(r"^(.*?)([.!?]*)$", text, flags=re.S)
        body, stop = (m.group(1), m.group(2)) if m else (text, "")
        out.append(f"{body}{cites}{stop or '.'}")
    return " ".join(out)


def _failed(results: list[GuardResult]) -> list[GuardResult]:
    # A caveat gap is repaired by attaching the template's caveats, not by rewriting.
    return [g for g in results if not g.passed and g.name != "output.caveats"]


def llm_write(
    chat: ChatModel,
    question: str,
    ledger: list[Evidence],
    trace: list[TraceEntry],
    caveats: list[str],
    max_tokens: int = 350,
) -> WriteAttempt:
    """A guarded LLM answer, or ``answer`` None with the reasons recorded."""
    attempt = WriteAttempt()
    messages = writer_messages(question, ledger, trace)
    schema = answer_schema([e.id for e in ledger])
    for round_ in range(2):
        try:
            c = chat.chat(messages, json_schema=schema, max_tokens=max_tokens)
        except LLMCallError as exc:
            attempt.error = str(exc)
            return attempt
        attempt.calls.append(c)
        draft = Answer(text=render_draft(c.text), caveats=caveats, writer=chat.name)
        reports = [
            f"{t.error or ''} {t.hint or ''}" for t in trace if t.status in ("error", "unavailable")
        ]
        _, results = guard_output(draft, ledger, question, reports)
        failed = _failed(results)
        if not draft.text:
            failed.append(GuardResult(name="output.not_empty", passed=False, detail="empty reply"))
        elif not re.search(r"\[E\d+\]", draft.text) and ledger:
            failed.append(GuardResult(name="output.cites", passed=False, detail="no [E#] citation"))
        label = "first draft" if round_ == 0 else "revision"
        attempt.guards.append(
            GuardResult(
                name=f"writer.{'draft' if round_ == 0 else 'revision'}",
                passed=not failed,
                detail=f"{label} passed the output guard"
                if not failed
                else "; ".join(f"{g.name}: {g.detail}" for g in failed)[:500],
            )
        )
        if not failed:
            attempt.answer = draft
            attempt.revised = round_ == 1
            return attempt
        if round_ == 0:
            findings = "\n- ".join(f"{g.name}: {g.detail}" for g in failed)
            messages = [
                *messages,
                {"role": "assistant", "content": c.text[:3000]},
                {
                    "role": "user",
                    "content": "Your answer failed these checks:\n- "
                    + findings
                    + "\nRewrite it: cite only ledger ids, and in each sentence use only numbers "
                    "written exactly as in the ledger entries that sentence cites.",
                },
            ]
    return attempt
