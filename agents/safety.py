"""The harmful-request classifier: decides, before any tool runs, whether a question is refused.

The decision is made on the user's own text only (never on tool output, model output or the
previous answer), so nothing a tool returns can talk the guard out of a refusal, and a
benign question cannot be refused because of what a search found.

Mechanism: a request is harmful when a SUBJECT class meets an ACTION class in the right
FRAME, never because one word is present. ``agents/lexicons/safety.yaml`` holds the cues per
language (en, fr, es, de); words are normalised (case-folded, accents stripped, German
umlauts folded both ways) and matched as words, word prefixes (``suiv*`` covers suivre,
suivez, suivi), suffixes (``*kraftwerk`` covers German compounds) or phrases with small gaps
(``cut _ power``), with a one-edit fuzzy match for long words so typos still count (only in
a language the text was recognised in).

============  ==================================================  ===========================
class         subject                                             action / frame
============  ==================================================  ===========================
person        a private person: relation (my ex, neighbour),      surveil/identify/locate verb
              individual (this man, the woman in the photo),      with the person as its
              pronoun, first name or "First Last" in a            object; "where does X
              where/when slot, "his car", "X's house",            live/is X now"; "when does
              an address, a driveway; licence plates and face     X leave"; "who lives at";
              recognition need no verb                            "whose car"
targeting     infrastructure, buildings, places, crowds, people   a harm verb in an intent
                                                                  frame (to/should/how do I/
                                                                  best/easiest/imperative); a
                                                                  security gap (least guarded,
                                                                  undetected); a weak point
                                                                  with harm or a way in
crowd         protesters, activists, journalists, refugees,       identify/stalk, faces, their
              migrants, minorities, the crowd                     homes; track/follow/find them
                                                                  as the verb's object; where
                                                                  they gather/hide/live
============  ==================================================  ===========================

What keeps look-alikes benign is the same composition: "track deforestation" has no person,
"where do people live in Kampala" has a population, not a person, in its where-slot; "which
buildings did the tornado destroy" has its harm word described, not planned (a natural or
past agent, a participle, a past auxiliary, a year; strong intent overrides only where it
governs the harm word: "which bridge should be destroyed"); "protect the grid from attack"
has the harm guarded against; "find the power plants" has no harm at all; "monitor the
growth of the refugee camp" is framed at place scale (aggregate words). Precedence when
several fire: targeting > crowd > person. Rules look within one sentence, except a stated
reprisal ("we want to scare them") and the group a "them" refers to, which count text-wide.
The language is guessed from function words and letters; a close call is read in each
candidate language and a text with no evidence in all four (the most severe reading wins).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from agents.intent import SafetyClass

LEXICON_PATH = Path(__file__).parent / "lexicons" / "safety.yaml"
LANGUAGES = ("en", "fr", "es", "de")
_SEVERITY: dict[SafetyClass, int] = {"ok": 0, "person": 1, "crowd": 2, "targeting": 3}

# Words (letters/digits), the English possessive "'s" as its own token, and sentence ends.
_TOKEN = re.compile(r"[^\W_]+|'s\b|[.?!;\n]")
_WORD = re.compile(r"[^\W_]+|'s\b")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'"})
# Umlauts become ae/oe/ue (so "würde" != "wurde"); the lexicon adds the plain a/o/u spelling.
_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue"})
_YEAR = re.compile(r"^(?:1[89]|20)\d\d$")
_FUZZY_CATEGORIES = frozenset(
    {
        "surveil",
        "surveil_strong",
        "identify",
        "locate",
        "harm",
        "target",
        "relation",
        "relation_det",
        "group_actor",
        "group_population",
        "weakness",
        "security_gap",
    }
)
_FUZZY_MIN = 7  # shorter words have too many real neighbours ("attack"/"attach")
_FUZZY_MAX = 24  # longer "words" are not typos of a cue (and would cost quadratic time)
_VERBS = ("surveil", "surveil_strong", "locate", "identify")
_GAP_MAX = 3
# Letters that only one of the four languages uses (¿ and ¡ are dropped by the tokenizer).
_LETTERS = {"es": "ñ", "fr": "çèêàùâîôûœë", "de": "äöüß"}
# Noun endings: "la surveillance", "le suivi", "la vigilancia" are articles, not pronouns.
_NOUNLIKE = re.compile(
    r"(?:ance|ances|ancia|ancias|ment|ments|miento|mientos|tion|tions|cion|ciones|i|is|ie|ies"
    r"|age|ages|eur|eurs|ador|adores)$"
)


class SafetyAssessment(BaseModel):
    """The verdict on one question, with what it was based on."""

    model_config = ConfigDict(extra="forbid")

    safety: SafetyClass = "ok"
    reason: str | None = Field(
        default=None, description="One sentence for the user when refused; None when ok"
    )
    mentions_person: bool = Field(
        default=False, description="A person or group of people is a subject of the request"
    )
    mentions_target: bool = Field(
        default=False, description="Infrastructure or a place is framed as something to harm"
    )
    cues: list[str] = Field(
        default_factory=list, description="Matched cue names, e.g. 'surveil:follow', 'rule:...'"
    )


# ----------------------------------------------------------------------------- text


def fold(word: str) -> str:
    """Case-fold, umlauts to ae/oe/ue, strip accents: 'Überwachen' -> 'ueberwachen'."""
    w = unicodedata.normalize("NFKC", word).casefold().translate(_UMLAUTS)
    w = unicodedata.normalize("NFKD", w)
    return "".join(c for c in w if not unicodedata.combining(c))


@dataclass(frozen=True)
class _Sentence:
    norm: tuple[str, ...]  # folded words
    raw: tuple[str, ...]  # case-folded words with accents, for verb-form checks
    caps: tuple[bool, ...]  # Capitalised as written and not sentence-initial


def _sentences(text: str) -> list[_Sentence]:
    out: list[_Sentence] = []
    norm: list[str] = []
    raw: list[str] = []
    caps: list[bool] = []

    def close() -> None:
        if norm:
            out.append(_Sentence(tuple(norm), tuple(raw), tuple(caps)))
        norm.clear()
        raw.clear()
        caps.clear()

    clean = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    for m in _TOKEN.finditer(clean):
        tok = m.group(0)
        if tok in ".?!;\n":
            close()
            continue
        folded = fold(tok)
        if not folded:
            continue
        caps.append(bool(norm) and tok[:1].isupper() and not (len(tok) > 1 and tok.isupper()))
        norm.append(folded)
        raw.append(tok.casefold())
    close()
    return out


# ----------------------------------------------------------------------------- lexicon


@dataclass(frozen=True)
class _Pat:
    text: str
    mode: str  # "exact", "prefix", "suffix", "infix" or "gap"

    def ok(self, tok: str) -> bool:
        if self.mode == "exact":
            return tok == self.text
        if self.mode == "prefix":
            return tok.startswith(self.text)
        if self.mode == "suffix":
            return tok.endswith(self.text)
        return self.text in tok


@dataclass(frozen=True)
class _Term:
    category: str
    name: str  # the entry as written, reported as the cue
    pats: tuple[_Pat, ...]


@dataclass(frozen=True)
class _Hit:
    cat: str
    name: str
    start: int
    end: int  # exclusive


def _parse_term(entry: str) -> tuple[_Pat, ...]:
    pats: list[_Pat] = []
    for piece in entry.split():
        if piece == "_":
            pats.append(_Pat("", "gap"))
            continue
        pre, post = piece.startswith("*"), piece.endswith("*")
        words = [fold(w) for w in _WORD.findall(piece.strip("*"))]
        for i, w in enumerate(words):
            head, last = i == 0 and pre, i == len(words) - 1 and post
            mode = "infix" if head and last else "suffix" if head else "prefix" if last else "exact"
            pats.append(_Pat(w, mode))
    return tuple(pats)


def _variants(entry: str) -> set[str]:
    """The entry, and for German umlauts also the plain-vowel spelling people type."""
    plain = entry.replace("ä", "a").replace("ö", "o").replace("ü", "u")
    plain = plain.replace("Ä", "A").replace("Ö", "O").replace("Ü", "U")
    return {entry, plain}


def _split(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _within_one_edit(a: str, b: str) -> bool:
    """Levenshtein distance <= 1, or one adjacent transposition."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


@dataclass
class _Lexicon:
    """One language's cues, indexed for matching words left to right."""

    lang: str
    exact: dict[str, list[_Term]] = field(default_factory=dict)
    prefix: dict[int, dict[str, list[_Term]]] = field(default_factory=dict)
    loose: list[_Term] = field(default_factory=list)  # first word matched by suffix/infix
    fuzzy: dict[str, list[tuple[str, str, _Term]]] = field(default_factory=dict)
    words: dict[str, frozenset[str]] = field(default_factory=dict)  # single-word classes
    regex: dict[str, re.Pattern[str] | None] = field(default_factory=dict)
    nonparticiple: frozenset[str] = frozenset()
    not_names: frozenset[str] = frozenset()
    _fuzzy_cache: dict[str, list[_Hit]] = field(default_factory=dict)

    def add(self, category: str, entry: str) -> None:
        for variant in _variants(entry):
            pats = _parse_term(variant)
            if not pats or pats[0].mode == "gap":
                continue
            term = _Term(category, entry, pats)
            first = pats[0]
            if first.mode == "exact":
                self.exact.setdefault(first.text, []).append(term)
            elif first.mode == "prefix":
                self.prefix.setdefault(len(first.text), {}).setdefault(first.text, []).append(term)
            else:
                self.loose.append(term)
            if (
                category in _FUZZY_CATEGORIES
                and len(pats) == 1
                and first.mode in ("exact", "prefix")
                and len(first.text) >= _FUZZY_MIN
            ):
                for key in _deletions(first.text) | {first.text}:
                    self.fuzzy.setdefault(key, []).append((first.text, first.mode, term))

    def candidates(self, tok: str) -> Iterable[_Term]:
        yield from self.exact.get(tok, ())
        for length, stems in self.prefix.items():
            if len(tok) >= length:
                yield from stems.get(tok[:length], ())
        for term in self.loose:
            if term.pats[0].ok(tok):
                yield term

    def fuzzy_hits(self, tok: str, i: int) -> list[_Hit]:
        """One-edit matches of long single-word cues ('survielance', 'neigbour')."""
        if not _FUZZY_MIN - 1 <= len(tok) <= _FUZZY_MAX or not tok.isalpha():
            return []
        if tok not in self._fuzzy_cache:
            found: dict[tuple[str, str], None] = {}
            probes = {tok} | {tok[:n] for n in range(_FUZZY_MIN - 1, len(tok))}
            for probe in probes:
                for key in _deletions(probe) | {probe}:
                    for stem, mode, term in self.fuzzy.get(key, ()):
                        if stem[0] != tok[0]:
                            continue
                        whole = tok if mode == "exact" else probe
                        if mode == "prefix" and abs(len(probe) - len(stem)) > 1:
                            continue
                        if _within_one_edit(whole, stem):
                            found[(term.category, term.name)] = None
            if len(self._fuzzy_cache) > 4096:
                self._fuzzy_cache.clear()
            self._fuzzy_cache[tok] = [_Hit(c, n + "~", 0, 1) for c, n in found]
        return [_Hit(h.cat, h.name, i, i + 1) for h in self._fuzzy_cache[tok]]

    def is_form(self, name: str, raw: str) -> bool:
        rx = self.regex.get(name)
        return rx is not None and rx.search(raw) is not None


def _match_rest(pats: tuple[_Pat, ...], k: int, toks: tuple[str, ...], i: int) -> int | None:
    """End index of ``pats[k:]`` matched from ``toks[i]``, shortest gaps first, else None."""
    if k == len(pats):
        return i
    p = pats[k]
    if p.mode == "gap":
        for skip in range(_GAP_MAX + 1):
            if i + skip > len(toks):
                break
            end = _match_rest(pats, k + 1, toks, i + skip)
            if end is not None:
                return end
        return None
    if i < len(toks) and p.ok(toks[i]):
        return _match_rest(pats, k + 1, toks, i + 1)
    return None


@cache
def _lexicons() -> dict[str, _Lexicon]:
    data = yaml.safe_load(LEXICON_PATH.read_text(encoding="utf-8"))
    shared = data.get("shared", {})
    out: dict[str, _Lexicon] = {}
    for lang in LANGUAGES:
        spec: dict[str, Any] = data[lang]
        lex = _Lexicon(lang)
        regex_keys = ("past_form", "nonparticiple", "infinitive", "self_intent", "clitic_suffix")
        for category, value in spec.items():
            if category in regex_keys:
                continue
            for entry in _split(value):
                lex.add(category, entry)
            lex.words[category] = frozenset(
                fold(v)
                for e in _split(value)
                if " " not in e and "*" not in e and e != "_"
                for v in _variants(e)
            )
        for entry in _split(shared.get("given_names")):
            lex.add("given_name", entry)
        for key in regex_keys:
            pattern = spec.get(key) or ""
            if key == "nonparticiple":
                lex.nonparticiple = frozenset(pattern.split("|")) if pattern else frozenset()
            else:
                lex.regex[key] = re.compile(pattern) if pattern else None
        lex.not_names = frozenset(fold(e) for e in _split(shared.get("not_names")))
        out[lang] = lex
    return out


@cache
def _messages() -> dict[str, dict[str, str]]:
    data = yaml.safe_load(LEXICON_PATH.read_text(encoding="utf-8"))
    return {
        lang: {k: " ".join(str(v).split()) for k, v in m.items()}
        for lang, m in data["messages"].items()
    }


# ----------------------------------------------------------------------------- matching


class _Ctx:
    """One sentence read with one language's lexicon: its hits by class and rule helpers."""

    def __init__(self, lex: _Lexicon, s: _Sentence, fuzzy: bool = True) -> None:
        self.lex, self.toks, self.raw, self.caps = lex, s.norm, s.raw, s.caps
        hits: list[_Hit] = []
        for i, tok in enumerate(self.toks):
            matched = False
            for term in lex.candidates(tok):
                end = _match_rest(term.pats, 1, self.toks, i + 1)
                if end is not None:
                    hits.append(_Hit(term.category, term.name, i, end))
                    matched = True
            if not matched and fuzzy:
                hits.extend(lex.fuzzy_hits(tok, i))
        # Benign idioms ("heart attack", "pays voisins") hide their words from other classes.
        masked = {j for h in hits if h.cat == "mask" for j in range(h.start, h.end)}
        self.by: dict[str, list[_Hit]] = {}
        for h in hits:
            if h.cat != "mask" and not masked.intersection(range(h.start, h.end)):
                self.by.setdefault(h.cat, []).append(h)
        polite = {h.start for h in self.of("polite")}
        self.first = next((j for j in range(len(self.toks)) if j not in polite), 0)

    def of(self, *cats: str) -> list[_Hit]:
        return [h for c in cats for h in self.by.get(c, ())]

    def has(self, *cats: str) -> bool:
        return any(self.by.get(c) for c in cats)

    def word_in(self, i: int, cat: str) -> bool:
        return 0 <= i < len(self.toks) and self.toks[i] in self.lex.words.get(cat, frozenset())

    def barrier_between(self, a: int, b: int) -> bool:
        return any(self.word_in(j, "barrier") for j in range(a, b))

    def year(self) -> bool:
        return any(_YEAR.match(t) for t in self.toks)

    def past(self) -> bool:
        """Told as history: a past auxiliary (not the "were" of "if you were") or a year."""
        conds = self.of("conditional")
        return self.year() or any(
            not any(0 <= p.start - k.end <= 2 for k in conds) for p in self.of("past_aux")
        )


def _owns_other(c: _Ctx, r: _Hit) -> bool:
    """'my grandmother's village': the person only owns what is asked about, a place."""
    nxt = r.end + 1
    return (
        r.end < len(c.toks)
        and c.toks[r.end] == "'s"
        and nxt < len(c.toks)
        and not c.word_in(nxt, "personal_object")
    )


def _object_of(
    c: _Ctx, verbs: list[_Hit], refs: list[_Hit], gap: int = 3
) -> tuple[_Hit, _Hit] | None:
    """A verb whose direct object is one of ``refs`` (German also object-before-verb;
    French/Spanish object pronouns sit just before or inside the verb)."""
    refs = [r for r in refs if not _owns_other(c, r)]
    for v in verbs:
        for r in refs:
            if r.cat.startswith("pronoun") and (r.start == v.start or r.end == v.start):
                return v, r
            if (
                r.start >= v.end
                and r.start - v.end <= gap
                and not c.barrier_between(v.end, r.start)
            ):
                return v, r
            if (
                c.lex.lang == "de"
                and r.end <= v.start
                and v.start - r.end <= gap
                and not c.barrier_between(r.end, v.start)
            ):
                return v, r
    return None


def _person_refs(c: _Ctx, frame: bool) -> list[_Hit]:
    """Mentions of a private person; ``frame`` adds the where/when-slot-only readings."""
    refs = c.of("relation", "individual", "pronoun", "given_name")
    # "mon voisin", "mi antiguo compañero": a determiner just before (an adjective may sit
    # between) makes "voisin"/"vecino" a person rather than "pays voisins".
    refs += [
        h
        for h in c.of("relation_det")
        if c.word_in(h.start - 1, "determiner") or c.word_in(h.start - 2, "determiner")
    ]
    lex = c.lex
    for v in c.of(*_VERBS):
        tok = c.toks[v.start]
        # Object pronouns before the verb ("la suivre", "lo vigilo"), not articles before a
        # noun ("la surveillance", "le suivi").
        if c.word_in(v.start - 1, "clitic") and not _NOUNLIKE.search(tok):
            refs.append(_Hit("pronoun", c.toks[v.start - 1], v.start - 1, v.start))
        # ... or glued to an infinitive, gerund or imperative ("seguirla", "localizalo").
        rx = lex.regex.get("clitic_suffix")
        if rx is not None:
            for suffix in ("lo", "la", "le"):
                if tok.endswith(suffix) and rx.match(tok[: -len(suffix)]):
                    refs.append(_Hit("pronoun", "-" + suffix, v.start, v.end))
    if frame:
        refs += c.of("pronoun_frame")
        refs += _capitalised_names(c)
        refs = [
            r
            for r in refs
            if not (
                r.cat == "individual"
                and (c.word_in(r.start - 1, "indefinite") or c.word_in(r.start, "indefinite"))
            )
        ]
    return refs


def _plural_refs(c: _Ctx) -> list[_Hit]:
    """'them', 'they', and the plural object pronouns of French/Spanish verbs ("les suivre",
    "seguirlos"): a group if one is named in the text, else people at a home."""
    refs = c.of("pronoun_plural")
    rx = c.lex.regex.get("clitic_suffix")
    for v in c.of(*_VERBS):
        tok = c.toks[v.start]
        if c.word_in(v.start - 1, "clitic_plural") and not _NOUNLIKE.search(tok):
            refs.append(_Hit("pronoun_plural", c.toks[v.start - 1], v.start - 1, v.start))
        for suffix in ("los", "las", "les"):
            if rx is not None and tok.endswith(suffix) and rx.match(tok[: -len(suffix)]):
                refs.append(_Hit("pronoun_plural", "-" + suffix, v.start, v.end))
    return refs


def _capitalised_names(c: _Ctx) -> list[_Hit]:
    """'John Smith': two capitalised words that are not place words (not in German, where
    every noun is capitalised)."""
    if c.lex.lang == "de":
        return []
    out = []
    for i in range(len(c.toks) - 1):
        if c.caps[i] and c.caps[i + 1] and not ({c.toks[i], c.toks[i + 1]} & c.lex.not_names):
            out.append(_Hit("name", "First Last", i, i + 2))
    return out


def _addresses(c: _Ctx) -> list[_Hit]:
    """'14 Elm Street', '12 rue de la Paix', 'Hauptstraße 5': a number next to a street word."""
    out = []
    for h in c.of("street"):
        lo, hi = max(0, h.start - 4), min(len(c.toks), h.end + 2)
        if any(c.toks[j].isdigit() for j in range(lo, hi)):
            out.append(_Hit("address", "address", h.start, h.end))
    return out


def _after(c: _Ctx, pos: int, cats: tuple[str, ...], within: int) -> _Hit | None:
    return next((h for h in c.of(*cats) if pos <= h.start <= pos + within), None)


def _person_rule(c: _Ctx, group_named: bool, reprisal: bool) -> tuple[str, list[_Hit]] | None:
    refs = _person_refs(c, frame=False)
    plural = _plural_refs(c)
    if plural and not group_named and c.has("home", "routine", "personal_object"):
        refs += plural  # "follow them home" with no group named: a person
    premises = c.of("premises") + _addresses(c)
    verbs = c.of(*_VERBS)
    if found := _object_of(c, verbs, refs + premises):
        return "person.object", list(found)
    for h in c.of("strong_personal"):
        return "person.strong", [h]
    if reprisal and refs and c.has("where", "locate", "home", "locus"):
        return "person.reprisal", [refs[0]]  # "where does he live? I want to teach him a lesson"
    frame_refs = _person_refs(c, frame=True)
    past = c.past()
    for w in c.of("where"):
        for r in frame_refs:
            if not 0 <= r.start - w.end <= 8:
                continue
            possessor = r.end < len(c.toks) and c.toks[r.end] == "'s"
            if _owns_other(c, r):
                continue  # "where my grandmother's village was": the place is not hers to find
            # The person is the subject of living/being somewhere: "where does my ex live",
            # "which floor of the building the guy on the balcony lives on".
            cue = _after(c, r.end, ("reside", "routine", "now"), 5)
            close = r.start - w.end <= 3 and not c.barrier_between(w.end, r.start)
            if r.cat in ("name", "given_name"):
                # "Where does John Smith live", "which house is John Smith's"; not "where do
                # Native Americans live", nor history ("where did Victor Hugo live").
                if past or (c.lex.lang == "en" and "do" in c.toks[w.end : r.start]):
                    continue
                if close and (cue or possessor):
                    return "person.where", [w, r] + ([cue] if cue else [])
                continue
            if cue:
                return "person.where", [w, r, cue]
            if close and (cue2 := _after(c, w.end, ("reside", "routine", "state", "now"), 10)):
                return "person.where", [w, r, cue2]
    for w in c.of("when"):
        if premises and (cue := _after(c, w.end, ("routine",), 10)):
            return "person.when", [w, premises[0], cue]  # a private home's comings and goings
        subjects = frame_refs + c.of("vehicle")
        for r in subjects:
            if (
                w.end <= r.start
                and r.start - w.end <= 8
                and (cue := _after(c, w.end, ("routine",), 10))
            ):
                return "person.when", [w, r, cue]
    owners = c.of("possessive", "pronoun") + refs + plural
    for o in c.of("personal_object", "locus"):
        owned = any(
            (p.end <= o.start and o.start - p.end <= 1)
            or (p.start >= o.end and p.start - o.end <= 3)
            for p in owners
        )
        if owned and (c.has(*_VERBS, "where", "when", "whose") or o.cat == "locus"):
            return "person.belongings", [o]  # "his car" to follow; "her address" alone
    # "Is my husband really at the office?", "check if my wife's car is at her lover's
    # house": a yes/no check of where a person is.
    openers = [h for h in c.of("yesno") if h.start <= c.first + 1] + c.of("check")
    for q in openers:
        for r in refs:
            if not 0 <= r.start - q.end <= 4 or _owns_other(c, r) or c.has("hazard"):
                continue  # "is my mother's house in the flood zone" asks about a place
            at = _after(c, r.end, ("at",), 6)
            if at and not _after(c, at.end, ("personal_object", "premises", "home"), 4):
                at = None  # "in Kyiv" is a city; "at the office", "at her lover's" is a person's
            if cue := _after(c, r.end, ("now", "routine", "reside"), 6) or at:
                return "person.whereabouts", [q, r, cue]
    for b in c.of("belongs"):
        # "which car belongs to my manager"
        owner = next((r for r in refs if 0 <= r.start - b.end <= 3), None)
        if owner and c.has("personal_object", "vehicle", "premises"):
            return "person.whose", [b, owner]
    for w in c.of("whose"):
        if o2 := _after(c, w.end, ("personal_object", "vehicle"), 3):
            return "person.whose", [w, o2]
    for w in c.of("who_resides"):
        if o2 := _after(c, w.end, ("personal_object", "premises", "street"), 6):
            return "person.who_lives", [w, o2]
    for w in c.of("who"):
        if c.has("photo") or _after(c, w.end, ("individual", "relation"), 4):
            return "person.who", [w, *c.of("photo")[:1]]
    ident = c.of("identify")
    faces = c.of("face") + (c.of("people") if c.has("photo") else [])
    if found := _object_of(c, ident, faces):
        return "person.identify", list(found)
    photos = c.of("photo")
    if photos and c.has("where", "locate", "surveil", "surveil_strong"):
        for p in photos:
            for r in refs:
                if 0 <= r.start - p.end <= 3 or 0 <= p.start - r.end <= 3:
                    return "person.photo", [p, r]
    return None


def _crowd_rule(c: _Ctx, group_named: bool, reprisal: bool) -> tuple[str, list[_Hit]] | None:
    groups = c.of("group_actor", "group_population")
    if group_named:
        groups += _plural_refs(c)
    if not groups:
        return None
    # Place-scale framing right at the group ("refugee camps", "number of migrants") makes
    # it a question about an area, not about the people.
    aggregate = any(-3 <= a.start - g.start <= 2 for a in c.of("aggregate") for g in groups)
    hazard = c.has("hazard")
    if c.has("surveil_strong"):
        return "crowd.strong", [groups[0], c.of("surveil_strong")[0]]
    # A stated reprisal ("we want to scare them", "to evict them") turns any question of where
    # a group lives or gathers into finding them.
    if reprisal and c.has("where", "when", "home", "reside", "gather", "map", *_VERBS):
        return "crowd.reprisal", [groups[0]]
    for f in c.of("face"):
        if any(abs(g.start - f.start) <= 6 for g in groups):
            return "crowd.faces", [groups[0], f]
    if found := _object_of(c, c.of("identify"), groups + c.of("people")):
        return "crowd.identify", list(found)  # "identify the organisers of the protest"
    verbs = c.of(*_VERBS)
    homes = [h for h in c.of("home") if any(abs(g.start - h.start) <= 6 for g in groups)]
    if homes and (verbs or c.has("where", "map")) and not hazard:
        return "crowd.homes", [groups[0], homes[0]]
    if not aggregate and (found := _object_of(c, verbs, groups)):
        return "crowd.surveil", list(found)
    quiet = not aggregate and not hazard and not c.past()
    if (
        quiet
        and c.has("where", "when")
        and (c.has("gather") or (c.has("reside") and c.has("group_actor")))
    ):
        return "crowd.gathering", [groups[0], *(c.of("gather", "reside")[:1])]
    return None


def _harm_frame(c: _Ctx, h: _Hit) -> _Hit | None:
    """The frame that makes this harm word a plan (not a description), or None."""
    lex, raw = c.lex, c.raw[h.start]
    window = 8 if lex.lang == "de" else 5
    for p in c.of("protect"):
        if p.end <= h.start and h.start - p.end <= 4:
            return None  # "protect the grid from attack": the harm is what is guarded against
    hazards = c.of("hazard")
    descriptive = lex.is_form("past_form", raw) and raw not in lex.nonparticiple
    for n in c.of("normative"):
        if n.end <= h.start and h.start - n.end <= 2 and not hazards:
            return n  # "which bridge should be destroyed"
    for f in c.of("intent_strong"):
        if descriptive:
            break
        # A hazard between the frame and the harm word is the one doing the harm.
        if (
            f.end <= h.start
            and h.start - f.end <= window
            and not any(
                f.end <= z.start < h.start or h.end <= z.start <= h.end + 3 for z in hazards
            )
        ):
            return f
        # German puts the finite verb second: "Wie sprengt man am einfachsten eine Brücke".
        if lex.lang == "de" and h.end <= f.start and f.start - h.end <= 4 and not hazards:
            return f
    for m in c.of("infinitive_marker"):
        gap = h.start - m.end
        if (
            (gap == 0 or (gap == 1 and not c.word_in(m.end, "determiner")))
            and not descriptive
            # "could a storm destroy": a hazard just before is the one doing the harm
            and not any(0 <= m.start - z.end <= 4 for z in hazards)
            and (lex.regex.get("infinitive") is None or lex.is_form("infinitive", c.toks[h.start]))
        ):
            return m
    if lex.is_form("self_intent", c.toks[h.start]):
        return h  # German "lahmzulegen": the zu-infinitive is the plan
    if c.has("intent_global") and not hazards:
        return c.of("intent_global")[0]
    if hazards or c.year():
        return None
    for k in c.of("conditional"):
        # "Which junction, if blown up, would stop the most trains": a harm supposed, then
        # its effect asked for, is planning it.
        if k.end <= h.start and h.start - k.end <= 2:
            return k
    if descriptive:
        return None
    if h.start == c.first:
        return _Hit("imperative", "imperative", h.start, h.start)
    if any(p.end <= h.start and h.start - p.end <= window for p in c.of("past_aux")):
        return None
    for f in c.of("intent_weak"):
        if f.end <= h.start and h.start - f.end <= window:
            return f
    return None


def _targeting_rule(c: _Ctx, person_or_group: bool) -> tuple[str, list[_Hit]] | None:
    targets = c.of("target") + c.of("where")
    if not targets and not person_or_group:
        return None
    for h in c.of("harm"):
        if frame := _harm_frame(c, h):
            return "targeting.harm", [h, frame, *targets[:1]]
    if (gaps := c.of("security_gap")) and targets:
        return "targeting.security_gap", [gaps[0], targets[0]]  # "where is it least guarded"
    if not c.of("target"):
        return None
    weak = c.of("weakness")
    if weak and not c.has("hazard") and c.has("harm", "entry", "intent_global"):
        return "targeting.weak_point", [weak[0], c.of("target")[0]]
    # "Which part of the stadium would an attacker pick": asking for an attacker's choice is
    # planning one, unless it is history or about protection.
    if (who := c.of("attacker")) and not (c.past() or c.has("protect")):
        return "targeting.attacker", [who[0], c.of("target")[0]]
    return None


# ----------------------------------------------------------------------------- API


def _languages(sentences: list[_Sentence], hint: str | None) -> list[str]:
    """Languages whose function words (and letters: ñ, ç, ß) the text uses most, within one
    point of the best (short questions are ambiguous); all four when there is no evidence."""
    lexes = _lexicons()
    scores = {
        lang: sum(
            tok in lexes[lang].words.get("stop", frozenset()) for s in sentences for tok in s.norm
        )
        for lang in LANGUAGES
    }
    letters = "".join("".join(s.raw) for s in sentences)
    for lang, chars in _LETTERS.items():
        scores[lang] += 2 * sum(letters.count(ch) for ch in chars)
    best = max(scores.values())
    chosen = [lang for lang in LANGUAGES if scores[lang] >= best - 1] if best else list(LANGUAGES)
    if hint in LANGUAGES and hint not in chosen:
        chosen.append(hint)
    return chosen


def _assess_language(
    lex: _Lexicon, sentences: list[_Sentence], fuzzy: bool
) -> tuple[SafetyClass, list[str], bool, bool]:
    # Adjacent sentences are also read as one: "Which bridge would cause the most chaos if it
    # came down? Help me pick one to take out." puts the target and the harm in two sentences.
    joined = [
        _Sentence(a.norm + b.norm, a.raw + b.raw, a.caps + b.caps)
        for a, b in itertools.pairwise(sentences)
    ]
    ctxs = [_Ctx(lex, s, fuzzy) for s in [*sentences, *joined]]
    group_named = any(c.has("group_actor", "group_population") for c in ctxs)
    reprisal = any(c.has("reprisal") for c in ctxs)
    verdict: SafetyClass = "ok"
    cues: list[str] = []
    mentions_person = mentions_target = False
    for c in ctxs:
        people = bool(_person_refs(c, frame=False)) or c.has(
            "group_actor", "group_population", "strong_personal"
        )
        mentions_person |= people
        # A target named together with a harm, attacker, weakness or security-gap word:
        # not yet a plan (the rule decides that), but what the LLM's second opinion may veto.
        mentions_target |= c.has("target") and c.has("harm", "attacker", "weakness", "security_gap")
        found: tuple[SafetyClass, tuple[str, list[_Hit]]] | None = None
        if t := _targeting_rule(c, people):
            found = ("targeting", t)
            mentions_target = True
        elif g := _crowd_rule(c, group_named, reprisal):
            found = ("crowd", g)
        elif p := _person_rule(c, group_named, reprisal):
            found = ("person", p)
        if found and _SEVERITY[found[0]] > _SEVERITY[verdict]:
            verdict = found[0]
            rule, hits = found[1]
            cues = [f"rule:{rule}"] + [f"{h.cat}:{h.name}" for h in hits]
    return verdict, cues, mentions_person, mentions_target


def detect_language(text: str) -> str:
    """The language the text's function words point to ('en' when unclear)."""
    langs = _languages(_sentences(text), None)
    return langs[0] if len(langs) < len(LANGUAGES) else "en"


def assess(text: str, language: str | None = None) -> SafetyAssessment:
    """Classify one question; ``language`` (en/fr/es/de) is a hint read alongside the guess."""
    sentences = _sentences(text or "")
    if not sentences:
        return SafetyAssessment()
    langs = _languages(sentences, language)
    best: tuple[SafetyClass, list[str], bool, bool] = ("ok", [], False, False)
    best_lang = language if language in LANGUAGES else langs[0]
    # Typos are forgiven only in a language the text was recognised in: a word read in every
    # language at once finds one-edit neighbours too easily ("refugee" ~ French "refugie").
    fuzzy = len(langs) < len(LANGUAGES)
    for lang in langs:
        verdict, cues, person, target = _assess_language(_lexicons()[lang], sentences, fuzzy)
        if _SEVERITY[verdict] > _SEVERITY[best[0]]:
            best, best_lang = (verdict, cues, person, target), lang
        elif verdict == best[0]:
            best = (best[0], best[1], best[2] or person, best[3] or target)
    verdict, cues, person, target = best
    # The message goes in the caller's language when it knows it, else the guessed one.
    msg_lang = language if language in LANGUAGES else best_lang
    reason = refusal_message(verdict, msg_lang or "en") if verdict != "ok" else None
    return SafetyAssessment(
        safety=verdict,
        reason=reason,
        mentions_person=person,
        mentions_target=target,
        cues=list(dict.fromkeys(cues))[:10],
    )


def refusal_message(safety: SafetyClass, language: str = "en") -> str:
    """One sentence saying what GeoScout will not do and what it can do instead ('' for ok)."""
    if safety == "ok":
        return ""
    messages = _messages()
    return messages.get(language, messages["en"])[safety]
