"""The LLM as a semantic parser: question -> a small JSON reading, cross-checked into an Intent.

The prompt (``prompts/intent_system.md``) is a fixed prefix the server caches, so each call
processes only the question's tokens and writes a ~60-token JSON object. Nothing the model
says is trusted as is (:func:`verify`): a place must be written in the question and exist in
the gazetteer; a date must be in the question; targets are a closed vocabulary; an object is
mapped onto the lexicon's detector queries; the topic is cut to a short plain phrase.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents.intent import AreaUnit, DateSpec, Intent, LengthUnit, PlaceMention, Target
from agents.lexicon import lexicon, tokenize, written_in
from agents.llm import ChatModel, Completion, LLMCallError, parse_json_object
from prompts import load_prompt

_TASKS = [
    "measure", "count", "locate", "change", "compare", "describe", "list_imagery",
    "capabilities", "out_of_scope", "unknown",
]  # fmt: skip
_TARGETS = ["water", "vegetation", "cloud", "cloud_shadow", "buildings", "roads", "imagery"]
_UNITS = ["km2", "ha", "acre", "mi2", "m2", "km", "mi", "m", "percent"]
_SAFETY = ["ok", "person", "targeting", "crowd"]
MAX_TOKENS = 160


class LLMReading(BaseModel):
    """The model's reading, before any cross-check."""

    model_config = ConfigDict(extra="ignore")

    task: Literal[
        "measure", "count", "locate", "change", "compare", "describe", "list_imagery",
        "capabilities", "out_of_scope", "unknown",
    ] = "unknown"  # fmt: skip
    targets: list[str] = Field(default_factory=list)
    objects: str | None = None
    topic: str | None = None
    places: list[str] = Field(default_factory=list)
    dates: list[str] = Field(default_factory=list)
    unit: str | None = None
    max_cloud: float | None = None
    safety: Literal["ok", "person", "targeting", "crowd"] = "ok"
    followup: bool = False

    @field_validator("places", "dates", "targets", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        if v is None:
            return []
        return [v] if isinstance(v, str) else v


def reading_schema() -> dict[str, Any]:
    """The JSON schema the reply must match (llama.cpp turns it into a grammar)."""
    nullable_str = {"anyOf": [{"type": "string", "maxLength": 60}, {"type": "null"}]}
    return {
        "type": "object",
        "properties": {
            "task": {"type": "string", "enum": _TASKS},
            "targets": {
                "type": "array",
                "items": {"type": "string", "enum": _TARGETS},
                "maxItems": 3,
            },
            "objects": nullable_str,
            "topic": nullable_str,
            "places": {
                "type": "array",
                "items": {"type": "string", "maxLength": 80},
                "maxItems": 3,
            },
            "dates": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 6},
            "unit": {"anyOf": [{"type": "string", "enum": _UNITS}, {"type": "null"}]},
            "max_cloud": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "safety": {"type": "string", "enum": _SAFETY},
            "followup": {"type": "boolean"},
        },
        # Only these are required: the model leaves out what the question does not say,
        # and every token it does not write saves ~70 ms on a 2-core CPU.
        "required": ["task", "targets", "places", "safety"],
        "additionalProperties": False,
    }


def parser_messages(question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": load_prompt("intent_system")},
        {"role": "user", "content": f"Q: {question}"},
    ]


class ParseAttempt(BaseModel):
    reading: LLMReading | None = None
    completion: Completion | None = None
    error: str | None = None


def warm(chat: ChatModel) -> None:
    """Have the server read (and cache) the parser's fixed prompt prefix: one token out."""
    chat.chat(parser_messages("What can you do?"), max_tokens=1)


def llm_read(chat: ChatModel, question: str) -> ParseAttempt:
    """One schema-constrained call; no repair round (code fixes what it can in verify())."""
    try:
        c = chat.chat(
            parser_messages(question), json_schema=reading_schema(), max_tokens=MAX_TOKENS
        )
    except LLMCallError as exc:
        return ParseAttempt(error=str(exc))
    try:
        reading = LLMReading.model_validate(parse_json_object(c.text))
    except (ValueError, ValidationError) as exc:
        return ParseAttempt(
            completion=c, error=f"the reply is not a valid reading ({str(exc)[:120]})"
        )
    return ParseAttempt(reading=reading, completion=c)


def verify(reading: LLMReading, question: str, gaz: Any, today: Any) -> tuple[Intent, list[str]]:
    """The reading as an Intent, keeping only what the question and the gazetteer support.

    Returns the intent and what was dropped (for the guardrail detail).
    """
    from agents.parse import parse_dates, tag
    from agents.places import PlaceFinder

    dropped: list[str] = []
    places: list[PlaceMention] = []
    finder = PlaceFinder(gaz)
    for text in reading.places[:2]:
        if not written_in(text, question):
            dropped.append(f"place {text!r}: not in the question")
            continue
        toks = tokenize(text)
        found = finder.find(toks)
        if not found and toks:
            # A bare name the scorer finds weak on its own ("paris"): accept an exact entry.
            cities = gaz.lookup(text.split(",")[0])
            if cities:
                found = []
                places.append(PlaceMention(text=text, name=text, label=gaz.title(cities[0]),
                                           kind="city", geonameid=cities[0].geonameid))  # fmt: skip
                continue
        if not found:
            dropped.append(f"place {text!r}: not in the gazetteer")
            continue
        c = found[0]
        places.append(
            PlaceMention(text=text, name=c.name, label=c.label, kind=cast(Any, c.kind),
                         geonameid=c.geonameid, corrected=c.corrected)
        )  # fmt: skip
    dates: list[DateSpec] = []
    for text in reading.dates[:6]:
        years = re.findall(r"(?:19|20)\d\d", text)
        if not years or not all(y in question for y in years):
            dropped.append(f"date {text!r}: not in the question")
            continue
        specs, _, _ = parse_dates(tag(text), today)
        dates += [s for s in specs if s not in dates]
    targets = [t for t in reading.targets if t in _TARGETS]
    objects = None
    if reading.objects:
        m = [x for x in lexicon().scan(tokenize(reading.objects), ("en", "fr", "es", "de"))
             if x.concept.startswith("objects.")]  # fmt: skip
        if m:
            objects = m[0].concept.split(".", 1)[1]
        elif written_in(reading.objects, question):
            objects = re.sub(r"[^\w -]", "", reading.objects)[:40] or None
        else:
            dropped.append(f"objects {reading.objects!r}: not in the question")
    topic = re.sub(r"[^\w ,'-]", "", reading.topic or "")[:40].strip() or None
    area_unit: AreaUnit | None = None
    length_unit: LengthUnit | None = None
    if reading.unit in ("km2", "ha", "acre", "mi2", "m2"):
        area_unit = cast(AreaUnit, reading.unit)
    elif reading.unit in ("km", "mi", "m"):
        length_unit = cast(LengthUnit, reading.unit)
    intent = Intent(
        task=reading.task,
        targets=cast(list[Target], [t for t in targets if t != "imagery"] or targets[:1]),
        objects=objects,
        topic=topic if reading.task == "out_of_scope" or topic else None,
        places=places,
        dates=dates,
        area_unit=area_unit,
        length_unit=length_unit,
        wants_share=reading.unit == "percent",
        safety=reading.safety,
        followup=reading.followup,
        source="llm",
    )
    if reading.max_cloud is not None and 0 <= reading.max_cloud <= 100:
        if str(int(reading.max_cloud)) in question:
            intent.filters.max_cloud_pct = reading.max_cloud
        else:
            dropped.append("max_cloud: not in the question")
    return intent, dropped


def reading_json(reading: LLMReading) -> str:
    return json.dumps(reading.model_dump(), ensure_ascii=False)
