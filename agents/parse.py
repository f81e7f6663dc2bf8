"""The deterministic question parser: text (+ the previous turn) -> :class:`Intent`.

No model, no per-sentence patterns: the question is tokenised and normalised
(:mod:`agents.lexicon`), the multilingual lexicon tags what each word is (a target, a task
cue, a unit, a month, a relation, a stopword, in English, French, Spanish or German), places
come from the gazetteer (:mod:`agents.places`), and the intent is decided from those tags by
the rules below. It is the fallback when no LLM is available and the cross-check of the LLM
parser (:mod:`agents.understanding`).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from agents.intent import (
    AreaUnit,
    DateSpec,
    Filters,
    Intent,
    Language,
    LengthUnit,
    PlaceMention,
    Relation,
    Target,
    Task,
)
from agents.lexicon import Match, Token, detect_language, fold, lexicon, norm_phrase, tokenize
from agents.units import to_km, to_km2

if TYPE_CHECKING:
    from tools.geocode import Gazetteer

_SEGMENT_TARGETS: set[str] = {"water", "vegetation", "cloud", "cloud_shadow"}
_YEAR = re.compile(r"^(19[5-9]\d|20\d\d)$")


@dataclass
class Tagged:
    """The question's tokens with what the lexicon says of them."""

    text: str
    tokens: list[Token]
    language: str
    matches: list[Match]
    used: set[int] = field(default_factory=set)  # token indices consumed by a place/date/number
    ranges: list[tuple[int, int]] = field(default_factory=list)  # dates joined as a range

    def concepts(self, prefix: str) -> list[Match]:
        return [m for m in self.matches if m.concept.startswith(prefix)]

    def has(self, concept: str) -> bool:
        return any(m.concept == concept for m in self.matches)

    def first_index(self, prefix: str) -> int | None:
        found = [m.start for m in self.concepts(prefix)]
        return min(found) if found else None


def _best_matches(matches: list[Match]) -> list[Match]:
    """Drop matches inside a longer match of another concept group ("cloud shadow" is not
    "cloud"; "how many" is not "many"), keeping overlaps within one group (tasks + targets)."""
    out = []
    for m in matches:
        inside = any(
            o is not m
            and o.length > m.length
            and o.start <= m.start
            and m.end <= o.end
            and o.concept.split(".")[0] == m.concept.split(".")[0]
            for o in matches
        )
        if not inside:
            out.append(m)
    return out


def tag(text: str) -> Tagged:
    tokens = tokenize(text)
    lang = detect_language(tokens)
    langs: tuple[str, ...] = (lang,) if lang == "en" else (lang, "en")
    lex = lexicon()
    stop = lex.stopwords.get(lang, frozenset())
    if lang != "en":
        stop = stop | {
            t for w in lex.words("false_friends").get(lang, []) for t in norm_phrase(str(w))
        }
    # English technical words count in every language, but not an English entry that is a
    # plain word of the question's own language (German "dem" is not a DEM).
    matches = [
        m
        for m in lex.scan(tokens, langs)
        if not (m.lang == "en" != lang and all(t.norm in stop for t in tokens[m.start : m.end]))
    ]
    return Tagged(text, tokens, lang, _best_matches(matches))


# ---------------------------------------------------------------------------- dates


def _year_span(year: int) -> tuple[dt.date, dt.date]:
    return dt.date(year, 1, 1), dt.date(year, 12, 31)


def _month_span(year: int, month: int) -> tuple[dt.date, dt.date]:
    return dt.date(year, month, 1), dt.date(year, month, calendar.monthrange(year, month)[1])


_SEASONS = {"spring": (3, 5), "summer": (6, 8), "autumn": (9, 11), "winter": (12, 2)}


def _phrase_at(tokens: list[Token], i: int, phrases: Iterable[tuple[str, ...]]) -> int:
    """Length of the longest phrase ending right before token ``i`` (0 when none)."""
    best = 0
    for p in phrases:
        n = len(p)
        if n and i - n >= 0 and tuple(t.norm for t in tokens[i - n : i]) == p:
            best = max(best, n)
    return best


def _phrases(path: str) -> list[tuple[str, ...]]:
    return [norm_phrase(str(w)) for w in lexicon().words(path)]


def parse_dates(tg: Tagged, today: dt.date) -> tuple[list[DateSpec], bool, list[int]]:
    """Dates as written, in order; whether "every year" was asked; future years.

    ``tg.ranges`` gets the index pairs of dates joined as a range ("between 2019 and 2022",
    "2019-2022"): two dates for a change, one period for anything else."""
    toks = tg.tokens
    lex = lexicon()
    month_of = {m.start: int(m.concept.split(".")[1]) for m in tg.concepts("months.")}
    season_of = {m.start: m.concept.split(".")[1] for m in tg.concepts("seasons.")}
    since, before = _phrases("date_since"), _phrases("date_before")
    every = any(m.concept == "every_year" for m in lex.scan(toks, ("*",)))
    specs: list[DateSpec] = []
    future: list[int] = []
    years = [i for i, t in enumerate(toks) if _YEAR.match(t.norm)]
    for i in years:
        year = int(toks[i].norm)
        if year > today.year:
            future.append(year)
            continue
        start, end = _year_span(year)
        text = toks[i].raw
        if i - 1 in month_of:
            start, end = _month_span(year, month_of[i - 1])
            text = f"{toks[i - 1].raw} {text}"
            tg.used.add(i - 1)
        elif i - 1 in season_of:
            a, b = _SEASONS[season_of[i - 1]]
            start = dt.date(year if a != 12 else year - 1, a, 1)
            end = _month_span(year, b)[1]
            text = f"{toks[i - 1].raw} {text}"
            tg.used.add(i - 1)
        lead = i - 1 if (i - 1 in month_of or i - 1 in season_of) else i
        n_since = _phrase_at(toks, lead, since)
        n_before = _phrase_at(toks, lead, before)
        prev_is_year = bool(specs) and _is_range_link(toks, lead)
        if prev_is_year:
            tg.ranges.append((len(specs) - 1, len(specs)))
        if n_since and not prev_is_year and len(years) == 1:
            # "since 2009": from then until today, as written (a change recipe compares the
            # first year with the latest imagery).
            specs.append(
                DateSpec(text=f"{_raw(toks, lead - n_since, lead)} {text}", start=start, end=today)
            )
        elif n_before and not prev_is_year:
            specs.append(
                DateSpec(
                    text=f"{_raw(toks, lead - n_before, lead)} {text}",
                    start=dt.date(1950, 1, 1),
                    end=start - dt.timedelta(days=1),
                )
            )
        else:
            specs.append(DateSpec(text=text, start=start, end=min(end, today)))
        tg.used.add(i)
    # "2009-2020" is one token pair with a dash between: handled as two years above.
    return specs, every, sorted(set(future))


def _is_range_link(tokens: list[Token], i: int) -> bool:
    links = {"and", "to", "until", "through", "et", "a", "au", "y", "hasta", "al", "und", "bis"}
    return i - 1 >= 0 and tokens[i - 1].norm in links


def _raw(tokens: list[Token], a: int, b: int) -> str:
    return " ".join(t.raw for t in tokens[max(a, 0) : b])


# ---------------------------------------------------------------------------- numbers


def _number_before(tokens: list[Token], i: int, span: int = 2) -> tuple[float, int] | None:
    for k in range(i - 1, max(i - 1 - span, -1), -1):
        if tokens[k].is_number and not _YEAR.match(tokens[k].norm):
            try:
                return float(tokens[k].norm), k
            except ValueError:
                return None
    return None


def _percent_positions(tg: Tagged) -> list[int]:
    """Token indices of "%" and of the words that stand for it ("percent", "pour cent")."""
    out = [i for i, t in enumerate(tg.tokens) if t.norm == "%"]
    for m in lexicon().scan(tg.tokens, ("*",)):
        if m.concept == "percent_words":
            out.append(m.start)
    return sorted(set(out))


def _units(tg: Tagged) -> tuple[AreaUnit | None, LengthUnit | None, bool]:
    area: AreaUnit | None = None
    length: LengthUnit | None = None
    share = bool(tg.concepts("share_words")) or any(
        i not in tg.used for i in _percent_positions(tg)
    )
    for m in tg.concepts("area_units."):
        area = cast(AreaUnit, m.concept.split(".")[1])
        break
    for m in tg.concepts("length_units."):
        unit = m.concept.split(".")[1]
        # "2 km around" is a radius, not the unit of the answer; "m" alone is too ambiguous.
        if _number_before(tg.tokens, m.start, 1) is None and unit != "m":
            length = cast(LengthUnit, unit)
            break
    return area, length, share


def _filters(tg: Tagged, targets: list[str]) -> tuple[Filters, float | None, list[int]]:
    """Cloud limit, size limits, largest-N, damage condition, platform; a radius."""
    f = Filters()
    toks = tg.tokens
    radius: float | None = None
    used: list[int] = []
    cloud_idx = {m.start for m in tg.concepts("targets.cloud")}
    percent = _percent_positions(tg)
    for i in percent:
        num = _number_before(toks, i, 1)
        if num is None:
            continue
        near_cloud = any(abs(c - i) <= 4 for c in cloud_idx)
        more = _phrase_at(toks, num[1], _phrases("size_larger"))
        # A percentage next to a cloud word is a limit ("nubosidad menor al 20 %", "cloud <
        # 10%", "under 10 percent cloud"), unless asked as "more than".
        if near_cloud and not more:
            f.max_cloud_pct = max(0.0, min(100.0, num[0]))
            used += [num[1], i]
    free = {t for w in lexicon().words("cloud_free") for t in norm_phrase(str(w))}
    for m in tg.concepts("targets.cloud"):
        near = [t.norm for t in toks[max(m.start - 1, 0) : m.end + 1]]
        if f.max_cloud_pct is None and any(
            n == w or (len(w) >= 6 and n.startswith(w)) for n in near for w in free
        ):
            f.max_cloud_pct = 10.0  # "cloud-free" read as at most 10 % cloud (said in notes)
    # Sizes: "lakes larger than 2 ha", "within 50 m of", "10 km around".
    larger, smaller = _phrases("size_larger"), _phrases("size_smaller")
    for m in tg.concepts("area_units."):
        num = _number_before(toks, m.start, 1)
        if num is None:
            continue
        km2 = to_km2(num[0], m.concept.split(".")[1])
        if _phrase_at(toks, num[1], larger):
            f.min_area_km2 = km2
        elif _phrase_at(toks, num[1], smaller):
            f.max_area_km2 = km2
        used += [num[1]]
    for m in tg.concepts("length_units."):
        num = _number_before(toks, m.start, 1)
        if num is None:
            continue
        used.append(num[1])
        km = to_km(num[0], m.concept.split(".")[1])
        if km > 0:
            radius = km
    for m in tg.concepts("largest_words"):
        num = _number_before(toks, m.start, 1)
        superlative = toks[m.start].norm.endswith(("est", "sten", "ten")) or toks[m.start].norm in (
            "plus", "mas",
        )  # fmt: skip
        if num is not None:
            f.largest_n = max(1, int(num[0]))
            used.append(num[1])
        elif superlative and any(t in targets for t in ("water", "buildings")):
            f.largest_n = 1 if not toks[min(m.end, len(toks) - 1)].norm.endswith("s") else 5
        elif any(t in targets for t in ("water", "buildings")):
            f.largest_n = 5
    if "buildings" in targets:
        if tg.concepts("damage.destroyed"):
            f.condition = "destroyed"
        elif tg.concepts("damage.damaged"):
            f.condition = "damaged"
    for m in tg.concepts("platforms."):
        f.platform = m.concept.split(".")[1]
        break
    return f, radius, used


# ---------------------------------------------------------------------------- intent


def _targets(tg: Tagged, place_tokens: set[int]) -> list[str]:
    seen: list[str] = []
    for m in sorted(tg.concepts("targets."), key=lambda m: m.start):
        if any(k in place_tokens for k in range(m.start, m.end)):
            continue  # "Salt Lake City" is a place, not a lake
        name = m.concept.split(".")[1]
        if name not in seen:
            seen.append(name)
    return seen


def _objects(tg: Tagged, place_tokens: set[int]) -> str | None:
    for m in sorted(tg.concepts("objects."), key=lambda m: m.start):
        if not any(k in place_tokens for k in range(m.start, m.end)):
            return m.concept.split(".", 1)[1]
    return None


def _topic(tg: Tagged, place_tokens: set[int]) -> tuple[str | None, int | None]:
    """The out-of-scope topic, named as the user wrote it and by its key ("lluvia
    (weather)"), and where it is in the question."""
    for m in sorted(tg.concepts("topics."), key=lambda m: (-m.length, m.start)):
        if not any(k in place_tokens for k in range(m.start, m.end)):
            key = m.concept.split(".", 1)[1]
            raw = " ".join(t.raw for t in tg.tokens[m.start : m.end]).lower()
            return (key if fold(raw) == key else f"{raw} ({key})"), m.start
    return None, None


def _separate_clauses(tg: Tagged, a: int, b: int) -> bool:
    """A clause link ("and", "et", "y", "und") between two positions of the question."""
    lo, hi = sorted((a, b))
    between = tg.text[tg.tokens[lo].end : tg.tokens[hi].start]
    if any(ch in between for ch in ".?!;"):
        return True  # another sentence
    links = {norm_phrase(str(w)) for w in lexicon().words("clause_links")}
    return any(
        tuple(t.norm for t in tg.tokens[i : i + len(p)]) == p
        for i in range(lo + 1, hi)
        for p in links
    )


def _relations(tg: Tagged, targets: list[str], radius: float | None) -> list[Relation]:
    """Two targets joined by a relation word: "roads near the lakes" -> roads within a
    distance of water. The first target is measured; the second is what it relates to."""
    if len(targets) < 2:
        return []
    pos = {t: tg.first_index(f"targets.{t}") for t in targets}
    a, b = targets[0], targets[1]
    ia, ib = pos[a], pos[b]
    if ia is None or ib is None:
        return []
    lo, hi = sorted((ia, ib))
    between = [m for m in tg.concepts("relations.") if lo < m.start < hi]
    if not between:
        return []
    pred = between[0].concept.split(".")[1]
    distance = radius * 1000 if (radius is not None and pred == "within_distance") else None
    if pred == "within_distance" and distance is None:
        distance = 100.0
    return [Relation(predicate=cast(Any, pred), other=cast(Target, b), distance_m=distance)]


def _task(
    tg: Tagged,
    targets: list[str],
    objects: str | None,
    topic: str | None,
    dates: list[DateSpec],
    this_image: bool,
    topic_separate: bool = False,
) -> Task:
    has = tg.concepts
    measurable = [t for t in targets if t != "imagery"]
    if has("tasks.capabilities") and not measurable and not objects and not topic:
        return "capabilities"
    if has("tasks.describe") and not measurable and not objects:
        return "describe"
    if topic and not objects and (not measurable or not topic_separate):
        # "how fragmented are the forests", "house prices in Groningen": the topic is what
        # is asked, whatever it is about; only a separate clause keeps a measurable part.
        return "out_of_scope"
    seg = [t for t in measurable if t in _SEGMENT_TARGETS]
    distinct = {(d.start, d.end) for d in dates}
    if seg and (has("tasks.change") or len(distinct) >= 2) and (dates or has("tasks.change")):
        return "change"
    if measurable and has("tasks.change") and (dates or has("date_before") or has("date_since")):
        return "change"  # "what changed in the buildings before and after the tornado"
    if objects:
        return "locate" if has("tasks.locate") and not has("tasks.count") else "count"
    if not measurable and not objects and has("data_words") and "imagery" not in targets:
        return "capabilities"  # "what kind of data do you have available?"
    if not measurable and ("imagery" in targets or has("tasks.list_imagery")):
        return "describe" if this_image else "list_imagery"
    if has("tasks.compare") and len(measurable) >= 1:
        return "compare"
    share = bool(has("share_words")) or any(t.norm == "%" for t in tg.tokens)
    units = has("length_units.") or has("area_units.")
    if measurable[:1] in (["buildings"], ["roads"]) and has("tasks.count") and not units:
        return "count"  # map features: "how many buildings", "how many road segments"
    if measurable and has("tasks.locate") and not has("tasks.measure") and not has("tasks.count"):
        return "locate"
    if measurable[:1] == ["buildings"]:
        return "measure" if (share or has("tasks.measure")) else "count"
    if measurable:
        return "measure"
    if has("tasks.describe"):
        return "describe"
    if has("data_words"):
        return "capabilities"  # "what kind of data do you have (offline)?"
    return "unknown"


def parse_rules(
    question: str,
    gaz: Gazetteer,
    today: dt.date,
    previous: Intent | None = None,
    has_area: bool = False,
    has_image: bool = False,
) -> tuple[Intent, list[int]]:
    """The intent of ``question`` read by rules, and any future years it names."""
    from agents.places import PlaceFinder
    from agents.safety import assess
    from tools.geocode import parse_coordinates

    tg = tag(question)
    coords = parse_coordinates(question)
    dates, every, future = parse_dates(tg, today)
    skip = set(tg.used)
    if coords is not None:
        skip |= {
            i
            for i, t in enumerate(tg.tokens)
            if t.is_number or t.norm in {"n", "s", "e", "w", "o", "lat", "lon"}
        }
    prelim_targets = [m.concept.split(".")[1] for m in tg.concepts("targets.")]
    filters, radius, used_nums = _filters(tg, prelim_targets)
    tg.used |= set(used_nums)
    skip |= set(used_nums)
    # Platform names and months are never places ("Sentinel", Oklahoma; "May", a surname).
    skip |= {k for m in tg.concepts("platforms.") for k in range(m.start, m.end)}
    skip |= {k for m in tg.concepts("months.") for k in range(m.start, m.end)}
    places: list[PlaceMention] = []
    notes: list[str] = []
    place_tokens: set[int] = set()
    if coords is None:
        for cand in PlaceFinder(gaz, tg.language).find(tg.tokens, skip, tg.text)[:2]:
            places.append(
                PlaceMention(
                    text=cand.text, name=cand.name, label=cand.label,
                    kind=cast(Any, cand.kind), geonameid=cand.geonameid,
                    corrected=cand.corrected, score=min(1.0, max(0.0, cand.score / 10.0)),
                )
            )  # fmt: skip
            place_tokens |= set(range(cand.start, cand.end))
            if len(places) == 1:  # only the place the answer is about gets its notes said
                notes += [n[0].upper() + n[1:] for n in cand.notes]
            part = tg.tokens[cand.start - 1] if cand.start > 0 else None
            if (
                len(places) == 1
                and part is not None
                and any(m.concept == "compass" and m.start == cand.start - 1 for m in tg.matches)
            ):
                notes.append(f"Using all of {cand.label} for “{part.raw} {cand.text}”")
    if len(places) >= 2:
        places[0] = _near_the_other(gaz, places[0], places[1], notes)
    if not places and coords is None:
        unknown = _unknown_place(tg, skip)
        if unknown is not None:
            # "around Xqzzyville, Atlantis": a place the gazetteer does not know is still the
            # place asked about; geocode says it was not found (with close spellings).
            places.append(PlaceMention(text=unknown[0], name=unknown[0], kind="unknown", score=0.2))
            place_tokens |= unknown[1]
    targets = _targets(tg, place_tokens)
    objects = _objects(tg, place_tokens)
    topic, topic_at = _topic(tg, place_tokens)
    target_at = min(
        (m.start for m in tg.concepts("targets.") if not m.concept.endswith("imagery")),
        default=None,
    )
    topic_separate = (
        topic_at is not None
        and target_at is not None
        and _separate_clauses(tg, topic_at, target_at)
    )
    if objects and "objects" not in targets:
        targets = ["objects", *targets]
    if filters.max_cloud_pct is not None and targets.count("cloud") and len(targets) > 1:
        targets.remove("cloud")  # "images with less than 10% cloud": a filter, not a target
    if filters.max_cloud_pct is not None and targets == ["cloud"]:
        targets = ["imagery"]
    area_unit, length_unit, share = _units(tg)
    this_area = bool(tg.concepts("this_area")) or (has_area and not places and coords is None)
    this_image = bool(tg.concepts("this_image")) or (has_image and not places and coords is None)
    task = _task(tg, targets, objects, topic, dates, this_image, topic_separate)
    unexplained = _unexplained(tg, place_tokens | skip)
    if (
        task == "unknown"
        and (places or coords is not None)
        and unexplained
        and not topic
        and not (previous is not None and _is_followup(tg))
    ):
        # "the best taquería in Aguascalientes", "when was Joplin founded": a question about
        # a place that no tool measures. Said plainly, with what can be measured there.
        task = "out_of_scope"
        topic = " ".join(unexplained[:4])
    if task != "change" and tg.ranges:
        # "images between 2019 and 2022": one period, not two dates to compare.
        for a, b in reversed(tg.ranges):
            if b < len(dates):
                dates[a] = DateSpec(
                    text=f"{dates[a].text}-{dates[b].text}", start=dates[a].start, end=dates[b].end
                )
                del dates[b]
    scale: Any = "auto"
    if tg.concepts("scale.central"):
        scale = "central"
    elif tg.concepts("scale.wide"):
        scale = "wide"
    measured = [t for t in targets if t != "imagery"] or (
        ["imagery"] if "imagery" in targets else []
    )
    if task == "capabilities":
        measured = [t for t in measured if t != "imagery"]
    if task == "out_of_scope":
        measured = []
    safety = assess(question)
    intent = Intent(
        task=task,
        targets=cast(list[Target], measured),
        objects=objects,
        topic=topic,
        places=places,
        coordinates=coords,
        scale=scale,
        radius_km=radius if (radius and not _relations(tg, measured, None)) else None,
        this_area=this_area,
        this_image=this_image,
        on_image="imagery" in targets
        or filters.platform is not None
        or any(m.concept == "events" for m in lexicon().scan(tg.tokens, ("*",))),
        dates=dates,
        every_year=every,
        relations=_relations(tg, measured, radius),
        filters=filters,
        wants_share=share,
        area_unit=area_unit,
        length_unit=length_unit,
        language=cast(Language, tg.language),
        safety=safety.safety,
        safety_reason=safety.reason,
        mentions_person=safety.mentions_person,
        mentions_target=safety.mentions_target,
        unexplained=unexplained,
        source="rules",
        notes=notes,
    )
    if previous is not None:
        intent = apply_previous(intent, previous, tg)
    return intent, future


def _near_the_other(
    gaz: Gazetteer, first: PlaceMention, other: PlaceMention, notes: list[str]
) -> PlaceMention:
    """ "Milton, near Pensacola": of the towns with the first name, the one nearest the second
    place (a second place named in a question is most often where the first one is)."""
    if first.kind != "city" or "," in first.name:
        return first
    towns = gaz.lookup(first.name)
    anchors = gaz.lookup(other.name.split(",")[0])
    anchor = next((c for c in anchors if c.geonameid == other.geonameid), None)
    if len(towns) < 2 or anchor is None:
        return first
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    best = min(towns, key=lambda c: geod.inv(c.lon, c.lat, anchor.lon, anchor.lat)[2])
    if best.geonameid == first.geonameid:
        return first
    region = gaz.admin_name(best) or gaz.country_name(best.country_code) or best.country_code
    label = gaz.title(best)
    notes.append(f"Read “{first.text}” as {label}, the one near {other.label or other.name}")
    return first.model_copy(
        update={"name": f"{best.name}, {region}", "label": label, "geonameid": best.geonameid}
    )


def _unknown_place(tg: Tagged, skip: set[int]) -> tuple[str, set[int]] | None:
    """Unexplained words right after a place preposition ("around xqzzyville, atlantis"):
    the name of a place the gazetteer lacks."""
    from agents.places import preceded_by_preposition

    vocab = lexicon().vocabulary
    toks = tg.tokens
    for i, t in enumerate(toks):
        if i in skip or t.is_number or t.norm in vocab or len(t.norm) < 3:
            continue
        if not preceded_by_preposition(toks, i, tg.language):
            continue
        j = i
        while j < len(toks) and j - i < 4 and not toks[j].is_number and toks[j].norm not in vocab:
            j += 1
        return tg.text[toks[i].start : toks[j - 1].end], set(range(i, j))
    return None


def _unexplained(tg: Tagged, used: set[int]) -> list[str]:
    """Words no lexicon entry, place, date or number accounts for: where the rules may have
    missed part of the question (the LLM parser is asked when there are any)."""
    covered = set(used) | set(tg.used)
    for m in tg.matches:
        covered |= set(range(m.start, m.end))
    vocab = lexicon().vocabulary
    return [
        t.raw
        for i, t in enumerate(tg.tokens)
        if i not in covered
        and not t.is_number
        and t.norm not in vocab
        and len(t.norm) > 1
        and t.norm != "%"
    ]


def _is_followup(tg: Tagged) -> bool:
    return bool(tg.concepts("followup")) or bool(tg.concepts("zoom."))


def apply_previous(intent: Intent, prev: Intent, tg: Tagged | None = None) -> Intent:
    """Fill what a follow-up leaves out from the previous turn ("and in 2020?", "what about
    roads?", "only the ones under 5% cloud", "zoom out to 10 km"), saying what was taken.

    A question is a follow-up when it names no place of its own and is short or cued ("and",
    "what about", "et en", "y en"), or when it is cued and names no measurable target ("what
    about the Sentinel-2 scene near Accomac?" keeps the previous target, takes the new place).
    """
    if intent.task in ("capabilities", "out_of_scope") or intent.safety != "ok":
        return intent
    no_place = not intent.places and intent.coordinates is None and not intent.this_area
    cue = tg is not None and _is_followup(tg)
    short = tg is not None and len(tg.tokens) <= 8
    measurable = [t for t in intent.targets if t != "imagery"]
    no_target = not measurable and not intent.objects
    if not ((no_place and (cue or short or no_target)) or (cue and no_target)):
        return intent
    upd: dict[str, Any] = {}
    inherited: list[str] = []
    notes = list(intent.notes)
    if no_place and (prev.places or prev.coordinates is not None or prev.this_area):
        upd.update(places=prev.places, coordinates=prev.coordinates, this_area=prev.this_area,
                   scale=prev.scale if intent.scale == "auto" else intent.scale)  # fmt: skip
        inherited.append("place")
        where = (
            prev.places[0].label or prev.places[0].name
            if prev.places
            else ("the coordinates" if prev.coordinates else "the area you drew")
        )
        notes.append(f"Using {where} from your previous question")
    if prev.this_image and not intent.this_image:
        upd["this_image"] = True
    if prev.on_image and not intent.on_image:
        upd["on_image"] = True
    targets = list(intent.targets)
    objects = intent.objects
    if no_target and (prev.targets or prev.objects):
        # "and what share of the image do they cover?": the previous target, still.
        targets = [t for t in prev.targets if t != "imagery"] or list(prev.targets)
        objects = prev.objects
        upd.update(targets=targets, objects=objects, relations=prev.relations)
        inherited.append("target")
    changing = tg is not None and bool(tg.concepts("tasks.change"))
    task = intent.task
    if "target" in inherited and task in ("unknown", "list_imagery", "locate", "count", "measure"):
        task = prev.task if prev.task not in ("capabilities", "out_of_scope") else "measure"
        if prev.task == "list_imagery" and intent.task == "list_imagery":
            task = "list_imagery"
    if intent.wants_share and task in ("count", "locate", "unknown"):
        task = "measure"  # "what share do they cover?" asks an area, not a count
    dates = list(intent.dates)
    segment_target = any(t in _SEGMENT_TARGETS for t in targets)
    if changing and (segment_target or prev.task == "change"):
        # "how did that change by 2020?": the previous dates and the new ones.
        dates = [*[d for d in prev.dates if d not in dates], *dates]
        task = "change"
        inherited.append("dates")
    elif not dates and prev.dates and (segment_target or task == "list_imagery"):
        dates = list(prev.dates)  # "same for vegetation", "only the ones under 5% cloud"
        inherited.append("dates")
        if prev.task == "change" and segment_target:
            task = "change"
    elif prev.task == "change" and intent.dates and "target" in inherited:
        task = "measure" if len(intent.dates) == 1 else "change"  # "and in 2015?"
    upd["task"] = task
    upd["dates"] = dates
    if intent.radius_km is None and prev.radius_km is not None:
        upd["radius_km"] = prev.radius_km
    if tg is not None and tg.concepts("zoom.out") and intent.radius_km is None:
        upd["scale"] = "wide"
    if tg is not None and tg.concepts("zoom.in") and intent.radius_km is None:
        upd["scale"] = "central"
    if "target" in inherited:
        f = intent.filters.model_dump(exclude_none=True)
        upd["filters"] = prev.filters.model_copy(update=f)
    for unit in ("area_unit", "length_unit"):
        if getattr(intent, unit) is None and getattr(prev, unit) is not None:
            upd[unit] = getattr(prev, unit)
    if not inherited:
        return intent
    upd.update(followup=True, inherited=inherited, notes=notes)
    return intent.model_copy(update=upd)
