"""Guardrails on the question (before planning) and on the answer (before it is shown)."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from agents.intent import Intent
from agents.safety import refusal_message
from agents.schemas import Answer, Evidence, GuardResult

_NUM = re.compile(
    r"(?<![\w.])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])[-−]?\d+(?:\.\d+)?(?![\w])"
)
_CITE = re.compile(r"\[(E\d+)\]")
# Sentence ends, but not after abbreviations ("McFeeters et al. 1996", "e.g. 2020").
_SENTENCE = re.compile(
    r"(?<=[.!?])(?<!\bal\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bapprox\.)(?<!\bca\.)(?<!\bvs\.)"
    r"\s+(?=[A-Z0-9])"
)


class InputVerdict:
    def __init__(
        self,
        action: str,
        reason: str = "",
        clarify: str | None = None,
        guards: list[GuardResult] | None = None,
    ) -> None:
        self.action = action  # "go" | "refuse" | "clarify"
        self.reason = reason
        self.clarify = clarify
        self.guards = guards or []


def clean_question(text: str) -> str:
    """Normalise unicode, drop control characters, collapse whitespace."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return re.sub(r"\s+", " ", text).strip()


def guard_input(
    question: str,
    intent: Intent | None,
    future_years: list[int],
    max_chars: int,
    has_area: bool,
    today: dt.date,
) -> InputVerdict:
    """Size, safety (decided on the intent, from both parsers and the text classifier), dates
    in the future, and whether there is an area to work on."""
    guards: list[GuardResult] = []
    if not question.strip():
        guards.append(GuardResult(name="input.size", passed=False, detail="empty question"))
        return InputVerdict(
            "refuse",
            "The question is empty. Ask about a place, for example: "
            "'How much open water is there around Accomac, Virginia?'",
            guards=guards,
        )
    if len(question) > max_chars:
        guards.append(
            GuardResult(
                name="input.size",
                passed=False,
                detail=f"{len(question)} characters; limit {max_chars}",
            )
        )
        return InputVerdict(
            "refuse",
            f"The question is {len(question):,} characters long; the limit "
            f"is {max_chars:,}. Please ask a shorter question.",
            guards=guards,
        )
    guards.append(GuardResult(name="input.size", passed=True, detail=f"{len(question)} characters"))
    if intent is not None and intent.safety != "ok":
        guards.append(
            GuardResult(
                name="input.ethics",
                passed=False,
                detail=f"{intent.safety} ({intent.source} reading)",
            )
        )
        return InputVerdict(
            "refuse",
            intent.safety_reason or refusal_message(intent.safety, intent.language),
            guards=guards,
        )
    guards.append(
        GuardResult(name="input.ethics", passed=True, detail="no person or target at risk")
    )
    if future_years:
        years = ", ".join(str(y) for y in future_years)
        guards.append(
            GuardResult(name="input.dates", passed=False, detail=f"future years: {years}")
        )
        return InputVerdict(
            "clarify",
            "dates in the future",
            clarify=f"{years} is in the future (today is {today.isoformat()}); imagery only exists "
            "for past dates. Which past period do you mean?",
            guards=guards,
        )
    guards.append(GuardResult(name="input.dates", passed=True))
    needs_area = intent is not None and intent.task not in ("capabilities", "out_of_scope")
    located = intent is not None and (
        intent.places or intent.coordinates is not None or intent.this_area
    )
    if needs_area and not has_area and not located:
        guards.append(
            GuardResult(name="input.area", passed=False, detail="no place, coordinates or area")
        )
        return InputVerdict(
            "clarify",
            "no place",
            clarify="Which area do you mean? Name a place (for example 'Joplin, Missouri'), give "
            "coordinates ('47.02 N, 99.15 W'), or draw an area on the map.",
            guards=guards,
        )
    guards.append(GuardResult(name="input.area", passed=True))
    return InputVerdict("go", guards=guards)


# A unit written right after a number, and the evidence units it may stand for. A number
# with a unit must match a value in that unit: "488,000 km²" cannot borrow a population.
_UNIT_AFTER = re.compile(
    r"\s?(km²|km2|sq\.? ?km|square kilomet\w*|km|kilomet\w*|m²|m2|square met\w*|%|"
    r"per ?cent|ha|hectares?|acres?|square miles?|sq\.? ?mi|mi²|mi2|miles?|mi|"
    r"m|met(?:re|er)s?)(?![\w²])",
    re.IGNORECASE,
)
_UNIT_CANON = {
    "km²": "km2", "km2": "km2", "sq km": "km2", "sq. km": "km2", "sq.km": "km2", "sqkm": "km2",
    "km": "km", "m²": "m2", "m2": "m2", "%": "%", "percent": "%", "per cent": "%",
    "ha": "ha", "m": "m",
}  # fmt: skip


def _unit_after(text: str, end: int) -> str | None:
    m = _UNIT_AFTER.match(text, end)
    if not m:
        return None
    u = m.group(1).lower()
    if u.startswith("square kilomet"):
        return "km2"
    if u.startswith("kilomet"):
        return "km"
    if u.startswith("square met"):
        return "m2"
    if u.startswith("hectare"):
        return "ha"
    if u.startswith("acre"):
        return "acre"
    if u.startswith(("square mile", "sq")) or u in ("mi²", "mi2"):
        return "mi2"
    if u.startswith("mile") or u == "mi":
        return "mi"
    if u.startswith("met"):
        return "m"
    return _UNIT_CANON.get(u, u)


def _numbers_with_units(text: str) -> list[tuple[str, float, str | None]]:
    out = []
    for m in _NUM.finditer(text):
        raw = m.group(0)
        try:
            value = float(raw.replace(",", "").replace("−", "-"))
        except ValueError:
            continue
        out.append((raw, value, _unit_after(text, m.end())))
    return out


def _allowed_numbers(evs: list[Evidence]) -> list[tuple[float, str | None]]:
    """(value, unit) pairs a sentence citing ``evs`` may state; unit None: unit unknown.

    Numbers inside facts (dates, ids, coordinates in a name) carry the unit "=exact": they
    may be quoted, never rounded ("10 buildings" must not pass on a longitude of 10.4).
    """
    vals: list[tuple[float, str | None]] = []
    for ev in evs:
        for qv in ev.values.values():
            unit = _UNIT_CANON.get(qv.unit, qv.unit)
            vals.append((qv.value, unit))
            if qv.uncertainty is not None:
                vals.append((qv.uncertainty, unit))
        for fact in ev.facts.values():
            # "2021-10-24T10:27:12Z" holds the day 24 too: split ISO timestamps at their T.
            fact = re.sub(r"(?<=\d)T(?=\d)", " ", fact)
            vals.extend((v, f"={u or ''}") for _, v, u in _numbers_with_units(fact))
    return vals


def _matches(
    raw: str, value: float, allowed: list[tuple[float, str | None]], unit: str | None = None
) -> bool:
    decimals = len(raw.split(".")[1]) if "." in raw else 0
    half_step = 0.5 * 10 ** (-decimals)
    for a, a_unit in allowed:
        if a_unit is not None and a_unit.startswith("="):  # quoted from a fact: exact only
            fact_unit = a_unit[1:] or None
            unit_ok = unit is None or fact_unit == unit or (fact_unit is None and unit == "%")
            if unit_ok and abs(abs(value) - abs(a)) < 1e-9:
                return True
            continue
        if unit is not None and a_unit is not None and a_unit != unit:
            continue
        tol = max(half_step * 1.0001, abs(a) * 0.005)
        if abs(abs(value) - abs(a)) <= tol:
            return True
    return False


def sanitize_text(text: str) -> tuple[str, bool]:
    """Remove HTML, scripts, images and links; True when something was removed."""
    original = text
    text = re.sub(r"<\s*(script|style|iframe)[^>]*>.*?<\s*/\s*\1\s*>", "", text, flags=re.I | re.S)
    text = re.sub(r"<[^>]{0,500}>", "", text)
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)
    text = re.sub(r"\[([^\]]+)\]\((?:https?|javascript|data|file):[^)]*\)", r"\1", text, flags=re.I)
    text = re.sub(r"(?i)javascript:", "", text)
    return text.strip(), text.strip() != original.strip()


def guard_output(
    answer: Answer, ledger: list[Evidence], question: str, reports: list[str] | None = None
) -> tuple[Answer, list[GuardResult]]:
    """Check citations and numbers sentence by sentence; sanitise markup.

    ``reports`` are the trace's own error and hint messages (a failed step's "nearest
    imagery is 25 km away"): an answer may repeat their numbers when saying what failed.
    """
    results: list[GuardResult] = []
    text, changed = sanitize_text(answer.text)
    results.append(
        GuardResult(
            name="output.sanitised",
            passed=not changed,
            detail="markup removed" if changed else "no markup",
        )
    )
    ids = {e.id: e for e in ledger}
    cited = _CITE.findall(text)
    unknown = sorted({c for c in cited if c not in ids})
    results.append(
        GuardResult(
            name="output.citations_exist",
            passed=not unknown,
            detail=f"unknown ids: {', '.join(unknown)}"
            if unknown
            else f"{len(set(cited))} cited ids exist",
        )
    )
    question_numbers = [(v, u) for _, v, u in _numbers_with_units(question)]
    for report in reports or []:
        question_numbers += [(v, u) for _, v, u in _numbers_with_units(report)]
    bad: list[str] = []
    for sentence in _SENTENCE.split(text):
        sent_cites = [ids[c] for c in _CITE.findall(sentence) if c in ids]
        allowed = _allowed_numbers(sent_cites) + question_numbers
        body = _CITE.sub("", sentence)
        for raw, value, unit in _numbers_with_units(body):
            if not _matches(raw, value, allowed, unit):
                shown = f"{raw} {unit}" if unit else raw
                bad.append(f"{shown!r} in “{sentence[:80]}”")
    results.append(
        GuardResult(
            name="output.numbers_cited",
            passed=not bad,
            detail="; ".join(bad[:5])
            if bad
            else "every number is in the evidence its sentence cites",
        )
    )
    needs_caveat = any(
        e.kind in {"mask", "detections"}
        or (e.kind == "scene" and e.facts.get("datetime") == "unknown")
        for e in ledger
    )
    has_caveats = bool(answer.caveats)
    results.append(
        GuardResult(
            name="output.caveats",
            passed=has_caveats or not needs_caveat,
            detail="caveats present"
            if has_caveats
            else ("missing caveats" if needs_caveat else "none needed"),
        )
    )
    clean = answer.model_copy(
        update={
            "text": text,
            "citations": sorted(set(c for c in cited if c in ids), key=lambda c: int(c[1:])),
        }
    )
    return clean, results
