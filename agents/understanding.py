"""Understanding a question: the rules parser, the LLM parser, and how they are combined.

Modes (``GEOSCOUT_PARSER``): ``rules`` (deterministic only), ``llm`` (the model's reading,
cross-checked), ``auto`` (both: the rules' reading wherever it found something, the model's
verified reading where the rules found nothing). In every mode safety is the stricter of the
two readings plus the text classifier, so an LLM can never let through what the rules refuse,
and a request that the model marks as harmful is refused even if the rules missed it.

The model gets a time budget (``GEOSCOUT_PARSE_BUDGET_S``); past it, or when it is not
available, the rules' reading is used and the note says so (shown to the user).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.intent import Intent
from agents.llm import ChatModel, Completion
from agents.parse import parse_rules


@dataclass
class Understood:
    intent: Intent
    future_years: list[int]
    note: str  # who understood the question, and any fallback, in plain words
    completions: list[Completion] = field(default_factory=list)
    outcome: str = "used"  # of the LLM call: used | rejected
    dropped: list[str] = field(default_factory=list)


def combine(rules: Intent, llm: Intent, question_has_place: bool = True) -> Intent:
    """The rules' reading, completed by the model's verified reading where it is silent."""
    upd: dict[str, Any] = {"source": "combined"}
    filled: list[str] = []
    # An out-of-scope reading made of words the rules could not explain is a guess: the
    # model's reading of those words wins ("how soggy is the ground" is about water).
    guessed = rules.task == "out_of_scope" and all(
        w in rules.unexplained for w in (rules.topic or "").split()
    )
    rules_found = (
        rules.task != "unknown" and not guessed and (rules.targets or rules.objects or rules.topic)
    )
    if not rules_found and llm.task != "unknown":
        upd.update(task=llm.task, targets=llm.targets, objects=llm.objects, topic=llm.topic)
        filled.append("what is asked")
    elif (
        rules.task in ("measure", "count", "locate")
        and llm.task == "change"
        and len(rules.dates or llm.dates) >= 1
    ):
        upd["task"] = "change"  # the rules missed a change verb they do not know
        filled.append("change over time")
    if not rules.places and rules.coordinates is None and llm.places and not rules.this_area:
        upd["places"] = llm.places
        filled.append("the place")
    if not rules.dates and llm.dates:
        upd["dates"] = llm.dates
        filled.append("the dates")
    for name in ("area_unit", "length_unit"):
        if getattr(rules, name) is None and getattr(llm, name) is not None:
            upd[name] = getattr(llm, name)
    if llm.wants_share and not rules.wants_share:
        upd["wants_share"] = True
    if rules.filters.max_cloud_pct is None and llm.filters.max_cloud_pct is not None:
        upd["filters"] = rules.filters.model_copy(
            update={"max_cloud_pct": llm.filters.max_cloud_pct}
        )
    if model_refuses(rules, llm):
        upd.update(safety=llm.safety, safety_reason=None)
    if llm.followup and not rules.followup:
        upd["followup"] = True
    notes = list(rules.notes)
    if filled:
        notes.append("The language model filled in " + ", ".join(filled))
    upd["notes"] = notes
    return rules.model_copy(update=upd)


# What the model's short reading says; everything else (filters, relations, scale, a drawn
# area, an image, every-year) it is not asked and comes from the rules in every mode.
_LLM_FIELDS = ("task", "targets", "objects", "topic", "places", "dates", "area_unit",
               "length_unit", "wants_share", "followup")  # fmt: skip


def model_refuses(rules: Intent, llm: Intent) -> bool:
    """The model's refusal stands where the rules let a request through but saw what it is
    about: a person or group for "person"/"crowd", a target for "targeting" (both must agree
    to let such a request through). Without that subject its refusals were false alarms in
    the measurements ("target the greenest areas for tree planting", "is crime high in
    Oakland?"); when both refuse, the rules' class and message are the more precise."""
    if rules.safety != "ok" or llm.safety == "ok":
        return False
    if llm.safety == "targeting":
        return rules.mentions_target or rules.mentions_person
    return rules.mentions_person


def llm_leads(rules: Intent, llm: Intent) -> Intent:
    """``GEOSCOUT_PARSER=llm``: the model's verified reading for the fields it gives, the
    rules' for the rest; safety is the stricter of the two."""
    upd = {name: getattr(llm, name) for name in _LLM_FIELDS}
    if not llm.places and (rules.coordinates is not None or rules.this_area):
        upd["places"] = []  # coordinates or a drawn area: the rules' reading holds them
    if llm.filters.max_cloud_pct is not None:
        upd["filters"] = rules.filters.model_copy(
            update={"max_cloud_pct": llm.filters.max_cloud_pct}
        )
    if model_refuses(rules, llm):
        upd.update(safety=llm.safety, safety_reason=None)
    if llm.places != rules.places:
        upd["notes"] = list(llm.notes)
    upd["source"] = "llm"
    return rules.model_copy(update=upd)


def fully_understood(intent: Intent) -> bool:
    """The rules' reading explains the whole question and involves no person or target (those
    always get the model's reading too: both must agree to let such a request through)."""
    return (
        intent.task != "unknown"
        and not intent.unexplained
        and not intent.mentions_person
        and not intent.mentions_target
        and intent.safety == "ok"
    )


def understand(
    question: str,
    *,
    gaz: Any,
    today: dt.date,
    mode: str,
    chat: ChatModel | Callable[[], tuple[ChatModel | None, str | None]] | None,
    chat_error: str | None = None,
    previous: Intent | None = None,
    has_area: bool = False,
    has_image: bool = False,
) -> Understood:
    """The question's intent under ``mode``. ``chat`` is the model, or a function returning
    (model or None, why not) called only when the model is needed; None means unavailable
    (``chat_error`` says why, for the note)."""
    from agents.llm_parse import llm_read, verify
    from agents.parse import apply_previous, tag

    rules, future = parse_rules(question, gaz, today, previous, has_area, has_image)
    if mode == "rules":
        return Understood(rules, future, "rules: chosen in settings (GEOSCOUT_PARSER=rules)")
    if mode != "rules" and chat is not None and mode == "auto" and fully_understood(rules):
        # Every word is accounted for and nobody is at stake: the model would only repeat
        # the rules' reading, at several seconds a question on a small CPU (and it is not
        # even started).
        return Understood(
            rules, future, "rules: every word of the question was understood (no model needed)"
        )
    model: ChatModel | None
    if chat is not None and not hasattr(chat, "chat"):
        model, chat_error = chat()  # the factory form
    else:
        model = chat  # type: ignore[assignment]
    if model is None:
        why = chat_error or "no language model in this run"
        return Understood(rules, future, f"rules: {why}")
    attempt = llm_read(model, question)
    calls = [attempt.completion] if attempt.completion is not None else []
    if attempt.reading is None:
        why = attempt.error or "no reading"
        note = f"rules: the language model's reading was not usable ({why})"
        said = "The language model's reading was not usable; the built-in parser read the question"
        if "no answer within" in why:
            note = f"rules: the local language model did not answer in time ({why})"
            said = (
                "The language model did not answer in time; the built-in parser read the question"
            )
        # Said to the user too: a fallback must be visible, not only logged.
        rules = rules.model_copy(update={"notes": [*rules.notes, said]})
        return Understood(rules, future, note, calls, outcome="rejected")
    llm_intent, dropped = verify(attempt.reading, question, gaz, today)
    if previous is not None:
        llm_intent = apply_previous(llm_intent, previous, tag(question))
    if mode == "llm":
        intent = llm_leads(rules, llm_intent)
        note = f"{model.name}: read the question (cross-checked)"
    else:
        intent = combine(rules, llm_intent)
        note = f"{model.name} and rules: read the question together"
    if dropped:
        note += "; dropped from the model's reading: " + "; ".join(dropped[:3])
    return Understood(intent, future, note, calls, "used", dropped)
