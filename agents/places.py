"""Place mentions in free text, found in the GeoNames gazetteer (no capitalisation needed).

Every word n-gram (1-4 words) of the question is looked up in the gazetteer's normalised
name index (235,000 places, their alternate names in other languages, countries, US states,
continents). Words the lexicon knows (stopwords, "water", "roads", "show", in any supported
language) can be part of a place ("Salt Lake City", "Green Bay") but cannot be one on their
own unless written with a capital mid-sentence. A mention is scored on what supports it:
the place's population, a preposition before it ("near", "près de", "cerca de", "bei"), a
qualifier after it that fits ("accomac virginia", "kampala, uganda"), capitals, length.
Words no lexicon or gazetteer knows are matched fuzzily (typos: "acomac", "kampla") against
gazetteer names with the same first letter, accepting only close matches of real towns.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from agents.lexicon import Token, lexicon, norm_phrase
from tools.geocode import fits

if TYPE_CHECKING:
    from tools.geocode import Gazetteer, Region

_MAX_N = 4
_MIN_SCORE = 2.0
# Fuzzy matches: rapidfuzz ratio (0-100) a typo must reach, and the smallest town accepted.
_FUZZY_CUTOFF = 84.0
_FUZZY_MIN_POP = 1000
_FUZZY_CUTOFF_QUALIFIED = 75.0
_FUZZY_SURE = 90.0  # one letter off in a long name: any town, however small


@dataclass
class Candidate:
    start: int  # token indices [start, end)
    end: int
    text: str  # as written
    name: str  # to geocode ("Accomac, Virginia")
    label: str  # gazetteer label
    kind: str  # city | region | country | continent
    score: float
    population: int = 0
    geonameid: int | None = None
    corrected: bool = False
    qualifier: str | None = None
    notes: list[str] = field(default_factory=list)


def _by_language(path: str, language: str) -> list[str]:
    """A per-language word list of the lexicon for ``language`` plus English."""
    words = lexicon().words(path)
    langs = {language, "en"}
    return [str(w) for lang, ws in words.items() if lang in langs for w in ws]


@lru_cache(maxsize=8)
def _preposition_set(language: str = "en") -> frozenset[tuple[str, ...]]:
    # Per language: German "im" or French "du" in an English sentence ("im putting", "du")
    # must not make the next word a place.
    return frozenset(norm_phrase(w) for w in _by_language("place_prepositions", language))


@lru_cache(maxsize=1)
def _compass() -> frozenset[str]:
    return frozenset(t for w in lexicon().words("compass") for t in norm_phrase(str(w)))


@lru_cache(maxsize=1)
def _qualifier_links() -> frozenset[tuple[str, ...]]:
    return frozenset(norm_phrase(str(w)) for w in lexicon().words("qualifier_links"))


@lru_cache(maxsize=8)
def _descriptors(language: str = "en") -> frozenset[str]:
    return frozenset(t for w in _by_language("place_descriptors", language) for t in norm_phrase(w))


def preceded_by_preposition(tokens: list[Token], start: int, language: str = "en") -> bool:
    """A place preposition right before ``start``, descriptors aside ("in the port of
    Rotterdam", "vom Hafen Rotterdam")."""
    k = start
    while k > 0 and start - k < 4 and tokens[k - 1].norm in _descriptors(language):
        if _prep_ending_at(tokens, k, language):
            return True
        k -= 1
    return _prep_ending_at(tokens, k, language)


def _prep_ending_at(tokens: list[Token], end: int, language: str = "en") -> bool:
    for phrase in _preposition_set(language):
        n = len(phrase)
        if end - n >= 0 and tuple(t.norm for t in tokens[end - n : end]) == phrase:
            return True
    return False


def _region_kind(reg: Region) -> str:
    return {"us_state": "region", "country": "country", "continent": "continent"}[reg.kind]


class PlaceFinder:
    """Finds place mentions in tokenised text against one gazetteer."""

    def __init__(self, gaz: Gazetteer, language: str = "en") -> None:
        self.gaz = gaz
        self.lex = lexicon()
        self.language = language
        self.text = ""

    # ------------------------------------------------------------------ exact n-grams
    def find(
        self, tokens: list[Token], skip: set[int] | None = None, text: str = ""
    ) -> list[Candidate]:
        """Non-overlapping best mentions, best first. ``skip``: token indices already used
        (coordinates, numbers); ``text``: the question the tokens come from (punctuation)."""
        skip = skip or set()
        self.text = text
        cands: list[Candidate] = []
        n_tok = len(tokens)
        for i in range(n_tok):
            for n in range(1, _MAX_N + 1):
                j = i + n
                if j > n_tok or any(k in skip or tokens[k].is_number for k in range(i, j)):
                    break
                cand = self._exact(tokens, i, j)
                if cand is not None:
                    cands.append(cand)
        cands += self._fuzzy(tokens, skip, cands)
        return _select(cands, self.gaz)

    def _vocab_only(self, tokens: list[Token], i: int, j: int) -> bool:
        return all(t.norm in self.lex.vocabulary for t in tokens[i:j])

    def _capitalised(self, tokens: list[Token], i: int, j: int) -> bool:
        # The question's first word is capitalised anyway, and German capitalises every noun
        # ("Wolken", a town too): neither is a name cue.
        if self.language == "de":
            return False
        return all(t.capitalised for t in tokens[i:j]) and not (i == 0 and j - i == 1)

    def _support(self, tokens: list[Token], i: int, j: int, population: int) -> float:
        if (
            all(t.norm in self.lex.all_stopwords for t in tokens[i:j])
            or (j - i == 1 and len(tokens[i].norm) == 1)
            or (j - i == 1 and tokens[i].norm in _compass())
        ):
            return -100.0  # "I", "Is", "La", "Die": function words, whatever their capitals
        s = 0.45 * math.log10(population + 10)
        if preceded_by_preposition(tokens, i, self.language):
            s += 2.0
        if self._capitalised(tokens, i, j):
            s += 1.5
        s += 0.8 * (j - i - 1)
        if self._vocab_only(tokens, i, j) and not self._capitalised(tokens, i, j):
            s -= 8.0
        first = tokens[i].norm
        if first in self.lex.all_stopwords and j - i > 1 and not tokens[i].capitalised:
            s -= 2.0  # "la paz" is fine, "in paris" is not a place named "In Paris"
        if j - i == 1 and len(tokens[i].norm) <= 3 and not tokens[i].raw.isupper():
            s -= 2.0
        return s

    def _qualifier(self, tokens: list[Token], j: int) -> tuple[list[Region], int, str]:
        """Regions named right after a mention ("virginia", ", uganda", "in texas")."""
        k = j
        for link in sorted(_qualifier_links(), key=len, reverse=True):
            if tuple(t.norm for t in tokens[k : k + len(link)]) == link:
                k += len(link)
                break
        for n in (3, 2, 1):
            if k + n > len(tokens):
                continue
            text = " ".join(t.raw for t in tokens[k : k + n])
            regs = self.gaz.regions_for_qualifier(text)
            # A lower-case two-letter word is a state code ("va") unless it is a common word
            # in some language ("in", "or", "me", "de" are stopwords).
            if regs and not (
                n == 1 and len(tokens[k].norm) == 2 and tokens[k].norm in self.lex.all_stopwords
            ):
                return regs, k + n, text
        return [], j, ""

    def _exact(self, tokens: list[Token], i: int, j: int) -> Candidate | None:
        text = " ".join(t.raw for t in tokens[i:j])
        cities = self.gaz.lookup(text)
        regions = [r for r in self.gaz.regions_named(text)]
        if not cities and not regions:
            return None
        quals, qend, qtext = self._qualifier(tokens, j)
        best: Candidate | None = None
        if cities:
            fitting = [c for c in cities if fits(c, quals)] if quals else []
            pool = fitting or cities
            pool = sorted(pool, key=lambda c: (not c.primary, -c.population))
            city = pool[0]
            score = self._support(tokens, i, j, city.population)
            if not city.primary:
                score -= 1.5  # "Day" is an alternate name of Dayton: weaker than a real name
            end = j
            name = text
            if fitting:
                score += 4.0
                end = qend
                name = f"{text}, {qtext}"
            best = Candidate(
                i, end, " ".join(t.raw for t in tokens[i:end]), name,
                self.gaz.title(city), "city", score, city.population, city.geonameid,
                qualifier=qtext if fitting else None,
            )  # fmt: skip
            unknown = None if (fitting or regions) else self._unknown_before(tokens, i)
            if (
                unknown is not None
                and score >= _MIN_SCORE
                and "," in self.text[tokens[i - 1].end : tokens[i].start]
            ):
                # "around Xqzzyville, Atlantis": the unknown name is the place, what follows
                # the comma its qualifier; never the town of Atlantis in its stead.
                typo = self._typo_before(tokens, unknown[0], i)
                if typo is not None:
                    return typo
                k, words = unknown
                best = Candidate(
                    k, end, " ".join(t.raw for t in tokens[k:end]), f"{words}, {text}",
                    f"{words}, {text}", "unknown", score + 1.0, 0, None, qualifier=text,
                )  # fmt: skip
                best.notes.append(f"“{words}” is not in the offline gazetteer")
                return best
        for reg in regions:
            pop = reg.population or 1_000_000
            score = self._support(tokens, i, j, pop) + 1.0
            if best is None or score > best.score:
                label = reg.name if reg.kind != "us_state" else f"{reg.name}, US"
                best = Candidate(
                    i, j, text, text, label, _region_kind(reg), score, pop, reg.geonameid
                )
                unknown = self._unknown_before(tokens, i)
                if unknown is not None:
                    # A misspelt town before its region ("oaklnd california"): the fuzzy
                    # match with the region as qualifier, when one fits.
                    typo = self._typo_before(tokens, unknown[0], i)
                    if typo is not None:
                        best = typo
                        continue
                    k, words = unknown
                    best = Candidate(
                        k, j, " ".join(t.raw for t in tokens[k:j]), f"{words}, {text}",
                        f"{words}, {label}", "unknown", score + 1.0, 0, None, qualifier=text,
                    )  # fmt: skip
                    best.notes.append(f"“{words}” is not in the offline gazetteer")
        return best if best is not None and best.score >= _MIN_SCORE else None

    def _typo_before(self, tokens: list[Token], k: int, i: int) -> Candidate | None:
        """A misspelt town in tokens[k:i], right before its region ("oaklnd, california"):
        the fuzzy match that the region qualifies, nearest word first."""
        for start in range(i - 1, k - 1, -1):
            typo = self._fuzzy_one(tokens, start, i)
            if typo is not None and typo.qualifier:
                return typo
        return None

    def _unknown_before(self, tokens: list[Token], i: int) -> tuple[int, str] | None:
        """Words right before a region that no lexicon or gazetteer knows, after a
        preposition: the town the user meant ("pettibone" in "near pettibone north dakota")."""
        k = i
        while k > 0 and i - k < 3:
            t = tokens[k - 1]
            if t.is_number or t.norm in self.lex.vocabulary or self.gaz.lookup(t.raw):
                break
            k -= 1
        if k == i or not preceded_by_preposition(tokens, k, self.language):
            return None
        return k, " ".join(t.raw for t in tokens[k:i]).title()

    # ------------------------------------------------------------------ fuzzy (typos)
    def _fuzzy(
        self, tokens: list[Token], skip: set[int], exact: list[Candidate]
    ) -> list[Candidate]:
        covered = {k for c in exact for k in range(c.start, c.end)}
        out: list[Candidate] = []
        for i, tok in enumerate(tokens):
            word = tok.norm
            if (
                i in skip
                or i in covered
                or tok.is_number
                or len(word) < 4
                or not word.isalpha()
                or (word in self.lex.vocabulary and word not in _compass())
            ):
                continue
            sizes = (2,) if word in _compass() else (2, 1)
            for n in sizes:  # "aguas calientes" -> Aguascalientes; "kampla" -> Kampala
                j = i + n
                if j > len(tokens) or any(
                    (tokens[k].norm in self.lex.vocabulary and tokens[k].norm not in _compass())
                    or k in skip
                    for k in range(i, j)
                ):
                    continue  # compass words may start a name: "north dakto"
                if n == 2 and self.gaz.regions_for_qualifier(tokens[j - 1].raw):
                    continue  # "acomack virginia": a town and its region, not one name
                cand = self._fuzzy_one(tokens, i, j)
                if cand is not None:
                    out.append(cand)
                    break
        return out

    def _fuzzy_one(self, tokens: list[Token], i: int, j: int) -> Candidate | None:
        from rapidfuzz import fuzz, process

        # A typo is only guessed where a place is expected: after "in/near/à/bei...", before
        # a region ("acomac va"), or written with a capital mid-sentence. Otherwise every
        # unknown English word ("tornado", "port") would become some small town.
        quals, qend, qtext = self._qualifier(tokens, j)
        supported = bool(
            preceded_by_preposition(tokens, i, self.language)
            or quals
            or self._capitalised(tokens, i, j)
        )

        query = " ".join(t.norm for t in tokens[i:j])
        joined = query.replace(" ", "")
        regions_only = tokens[i].norm in _compass()  # "north dakto", never "West Oak Lane"
        names = [] if regions_only else _names_like(self.gaz, query[0], len(joined))
        names += [k for k in self.gaz.region_keys() if k[:1] == query[:1]]  # misspelt regions
        # A region after the word narrows the candidates to its towns, so a looser spelling
        # (a swapped pair: "molnio, florida") is still safe to accept.
        cutoff = _FUZZY_CUTOFF_QUALIFIED if quals else _FUZZY_CUTOFF
        hits = process.extract(query, names, scorer=fuzz.ratio, score_cutoff=cutoff, limit=12)
        if quals:
            hits = [h for h in hits if any(fits(c, quals) for c in self.gaz.lookup(h[0]))] or [
                h for h in hits if h[1] >= _FUZZY_CUTOFF
            ]
        if not supported:
            # No cue that a place is meant: only a near-exact spelling of a notable place
            # ("groningn" -> Groningen), never a common word that resembles a hamlet.
            # A word that extends a name is derived from it ("brazilian"), not misspelt.
            hits = [
                h
                for h in hits
                if h[1] >= _FUZZY_SURE and len(query) >= 6 and not query.startswith(h[0])
            ]
        best: Candidate | None = None
        for hit_name, ratio, _ in hits:
            cities = self.gaz.lookup(hit_name)
            regions = self.gaz.regions_named(hit_name)
            fitting = [c for c in cities if fits(c, quals)] if quals else []
            min_pop = (0 if ratio >= _FUZZY_SURE else _FUZZY_MIN_POP) if supported else 50_000
            pool = fitting or [c for c in cities if c.population >= min_pop]
            score_base = (ratio - cutoff) / 4.0
            if pool:
                city = sorted(pool, key=lambda c: (not c.primary, -c.population))[0]
                # A spelling close to an alternate name (a county, an old name) is weaker
                # evidence than one close to the place's own name.
                alt = 0.0 if city.primary else 2.5
                score = self._support(tokens, i, j, city.population) + score_base - 0.5 - alt
                end, name = j, city.name
                if fitting:
                    score += 4.0
                    end, name = qend, f"{city.name}, {qtext}"
                cand = Candidate(
                    i, end, " ".join(t.raw for t in tokens[i:end]), name,
                    self.gaz.title(city), "city", score, city.population, city.geonameid,
                    corrected=True, qualifier=qtext if fitting else None,
                )  # fmt: skip
            elif regions:
                reg = regions[0]
                pop = reg.population or 1_000_000
                score = self._support(tokens, i, j, pop) + score_base
                label = reg.name if reg.kind != "us_state" else f"{reg.name}, US"
                cand = Candidate(
                    i, j, " ".join(t.raw for t in tokens[i:j]), reg.name, label,
                    _region_kind(reg), score, pop, reg.geonameid, corrected=True,
                )  # fmt: skip
            else:
                continue
            if best is None or cand.score > best.score:
                best = cand
        if best is not None and best.score >= _MIN_SCORE:
            best.notes.append(f"read “{best.text}” as {best.label}")
            return best
        return None


def _select(cands: list[Candidate], gaz: Gazetteer | None = None) -> list[Candidate]:
    """Greedy non-overlapping selection, best score first (longer wins on a tie); a town
    inside a region also named ("a survey in Uganda ... of Kampala") comes first: it is the
    more precise answer to "where"."""
    chosen: list[Candidate] = []
    used: set[int] = set()
    for c in sorted(cands, key=lambda c: (-c.score, -(c.end - c.start))):
        span = set(range(c.start, c.end))
        if span & used:
            continue
        chosen.append(c)
        used |= span
    if gaz is not None and len(chosen) > 1:
        regions = [c for c in chosen if c.kind in ("country", "region")]
        towns = [c for c in chosen if c.kind == "city" and c.geonameid is not None]
        for town in towns:
            reg = next((r for r in regions if _town_in(gaz, town, r)), None)
            if reg is not None:
                chosen.remove(reg)
                chosen.remove(town)
                chosen.insert(0, town)
    return chosen


def _town_in(gaz: Gazetteer, town: Candidate, region: Candidate) -> bool:
    regs = gaz.regions_named(region.name) or gaz.regions_for_qualifier(region.name)
    cities = [c for c in gaz.lookup(town.name.split(",")[0]) if c.geonameid == town.geonameid]
    return bool(regs and cities and fits(cities[0], regs))


_NAME_CACHE: dict[tuple[str, str, int], list[str]] = {}


def _names_like(gaz: Gazetteer, first: str, length: int) -> list[str]:
    """Distinct normalised names starting with ``first`` whose letters number length±2.

    Cached per (gazetteer, letter, length): a typo'd word costs one indexed range scan the
    first time (tens of ms) and a dictionary lookup after.
    """
    key = (gaz.location, first, length)
    if key not in _NAME_CACHE:
        try:
            rows = gaz.names_between(first, length - 2, length + 2)
        except sqlite3.Error:
            rows = []
        _NAME_CACHE[key] = rows
    return _NAME_CACHE[key]
