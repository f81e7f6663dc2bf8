"""The multilingual lexicon (``agents/lexicons/words.yaml``) and the text normaliser it uses.

Text and lexicon entries are compared as sequences of normalised tokens: case-folded,
accents stripped, apostrophes and punctuation split off ("qu'y a-t-il" -> qu y a t il),
"km²" -> "km2", decimal commas read as points. An entry ending in "*" matches any token
starting with it. Matching is per language, plus English for technical words people use in
every language (NDVI, Landsat, km2).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

LANGUAGES = ("en", "fr", "es", "de")
_LEXICON_PATH = Path(__file__).parent / "lexicons" / "words.yaml"
# Words, numbers (with a decimal point or comma) and the percent sign; everything else splits.
_TOKEN = re.compile(r"\d+(?:[.,]\d+)?|[^\W\d_]+(?:\d+)?|[%<>≤≥]", re.UNICODE)
_COMBINING = re.compile("[\u0300-\u036f]+")


@dataclass(frozen=True)
class Token:
    norm: str  # normalised form
    raw: str  # as written
    start: int  # character offsets in the raw text
    end: int

    @property
    def is_number(self) -> bool:
        return self.norm[0].isdigit()

    @property
    def capitalised(self) -> bool:
        return self.raw[:1].isupper()


def fold(text: str) -> str:
    """Case-fold and strip accents: "Qu'Évolue" -> "qu'evolue"; "ß" -> "ss"; "²" -> "2"."""
    t = unicodedata.normalize("NFKD", text.casefold())
    return _COMBINING.sub("", t)


def tokenize(text: str) -> list[Token]:
    """Tokens with their offsets in ``text`` (offsets are kept for "as written" spans)."""
    out: list[Token] = []
    for m in _TOKEN.finditer(text):
        raw = m.group(0)
        norm = fold(raw).replace(",", ".")
        if norm:
            out.append(Token(norm, raw, m.start(), m.end()))
    return out


def norm_phrase(text: str) -> tuple[str, ...]:
    return tuple(t.norm for t in tokenize(text))


@dataclass(frozen=True)
class Entry:
    tokens: tuple[str, ...]
    prefix: bool  # the last token matches as a prefix
    concept: str  # dotted path: "targets.water", "tasks.count", "area_units.ha", ...
    lang: str  # "en", "fr", "es", "de" or "*" (all)


@dataclass(frozen=True)
class Match:
    concept: str
    start: int  # token index
    end: int  # token index, exclusive
    lang: str
    length: int  # tokens in the entry (longer entries win over the words inside them)


class Lexicon:
    """All entries, indexed by first token for a left-to-right longest-match scan."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.entries: list[Entry] = []
        self._walk(data, "")
        self._by_first: dict[str, list[Entry]] = {}
        self._prefixed: list[Entry] = []
        for e in self.entries:
            if e.prefix and len(e.tokens) == 1:
                self._prefixed.append(e)
            else:
                self._by_first.setdefault(e.tokens[0], []).append(e)
        for lst in self._by_first.values():
            lst.sort(key=lambda e: -len(e.tokens))
        self.stopwords: dict[str, frozenset[str]] = {
            lang: frozenset(t for w in words for t in norm_phrase(str(w)))
            for lang, words in data["stopwords"].items()
        }
        self.all_stopwords = frozenset().union(*self.stopwords.values())
        # Every token any entry uses: a word in here is vocabulary, not a place candidate.
        self.vocabulary = frozenset(t for e in self.entries for t in e.tokens) | self.all_stopwords

    def _walk(self, node: Any, path: str, lang: str = "*") -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                k = str(key)
                if k in LANGUAGES:
                    self._walk(value, path, k)
                else:
                    self._walk(value, f"{path}.{k}" if path else k, lang)
        elif isinstance(node, list):
            for word in node:
                text = str(word)
                prefix = text.endswith("*")
                toks = norm_phrase(text.rstrip("*"))
                if toks:
                    self.entries.append(Entry(toks, prefix, path, lang))

    def scan(self, tokens: list[Token], languages: tuple[str, ...]) -> list[Match]:
        """Every entry occurrence in ``tokens`` for ``languages`` (and language-free entries)."""
        norms = [t.norm for t in tokens]
        found: list[Match] = []
        langs = {*languages, "*"}
        for i, tok in enumerate(norms):
            for e in self._by_first.get(tok, ()):
                if e.lang not in langs:
                    continue
                n = len(e.tokens)
                window = norms[i : i + n]
                if len(window) < n:
                    continue
                if e.prefix:
                    ok = window[:-1] == list(e.tokens[:-1]) and window[-1].startswith(e.tokens[-1])
                else:
                    ok = tuple(window) == e.tokens
                if ok:
                    found.append(Match(e.concept, i, i + n, e.lang, n))
            for e in self._prefixed:
                if e.lang in langs and tok.startswith(e.tokens[0]) and tok != e.tokens[0]:
                    found.append(Match(e.concept, i, i + 1, e.lang, 1))
            if "de" in langs and len(tok) >= 8 and not any(m.start == i for m in found):
                found += self._compound_head(tok, i)
        return found

    def _compound_head(self, tok: str, i: int) -> list[Match]:
        """German compounds mean what their last noun means: "Drohnenbild" is a "Bild",
        "Wasserfläche" a "Fläche" of "Wasser" (the first part counts when the head is not
        in the lexicon: "Seeufer" is about a "See")."""
        for cut in range(len(tok) - 4, 2, -1):
            head = tok[cut:]
            for e in self._by_first.get(head, ()):
                if e.lang == "de" and len(e.tokens) == 1 and not e.concept.startswith("stopwords"):
                    return [Match(e.concept, i, i + 1, "de", 1)]
        return []

    def language_scores(self, tokens: list[Token]) -> dict[str, float]:
        """How much of the text each language's words explain (stopwords count double)."""
        scores = dict.fromkeys(LANGUAGES, 0.0)
        norms = [t.norm for t in tokens if not t.is_number]
        for lang in LANGUAGES:
            stop = self.stopwords.get(lang, frozenset())
            scores[lang] += 2.0 * sum(1 for n in norms if n in stop)
        for m in self.scan(tokens, LANGUAGES):
            if m.lang in scores:
                scores[m.lang] += m.length
        return scores

    def words(self, path: str) -> Any:
        node: Any = self.data
        for part in path.split("."):
            node = node[part] if not isinstance(node, dict) or part in node else node[int(part)]
        return node


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    with _LEXICON_PATH.open(encoding="utf-8") as fh:
        return Lexicon(yaml.safe_load(fh))


def detect_language(tokens: list[Token]) -> str:
    """The language whose words explain the text best; English on a tie or no evidence."""
    scores = lexicon().language_scores(tokens)
    best = max(LANGUAGES, key=lambda lang: (scores[lang], lang == "en"))
    return best if scores[best] > scores["en"] else "en"


def written_in(fragment: str, question: str) -> bool:
    """``fragment`` (a place, a date, an object a model named) is written in ``question``,
    case, accents and small typos aside. Used to cross-check what a model reads or plans."""
    from rapidfuzz import fuzz

    f, q = fold(fragment).strip(), fold(question)
    if not f:
        return False
    return f in q or fuzz.partial_ratio(f, q) >= 85
