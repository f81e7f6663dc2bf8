"""The template writer: an answer built from the evidence ledger only, every claim cited.

It is the permanent fallback of the LLM writer. It never copies free text from tools
(STAC descriptions, OSM names) into the answer; only numbers, units, identifiers and
sanitised short labels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from agents.intent import Intent
from agents.schemas import Answer, Evidence, Plan, TraceEntry
from agents.units import UNIT_LABEL, requested_key
from tools.base import Quantity
from tools.ground import target_vocabulary

_UNITS = {**UNIT_LABEL, "pct": "%", "%": "%"}


def fmt(x: float) -> str:
    """Human formatting that the output guard can match back to the evidence value."""
    if not math.isfinite(x):
        return "unknown"
    ax = abs(x)
    if float(x).is_integer() and ax >= 1:
        return f"{int(x):,}"
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}".rstrip("0").rstrip(".")
    if ax == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(ax)))
    return f"{x:.{digits}f}".rstrip("0").rstrip(".")


def qa(ev: Evidence, key: str, intent: Intent | None, pm: bool = False) -> str | None:
    """``key`` in the unit the user asked for, with the km² / km figure after it."""
    alt = requested_key(ev, key, intent)
    if alt == key:
        return q(ev, key, pm=pm)
    return f"{q(ev, alt, pm=pm)} ({q(ev, key)})"


def q(ev: Evidence, key: str, unit: bool = True, pm: bool = False) -> str | None:
    val = ev.values.get(key)
    if val is None:
        return None
    s = fmt(val.value)
    if pm and val.uncertainty:
        s += f" ± {fmt(val.uncertainty)}"
    if unit and val.unit not in ("count", "", "people", "1"):
        u = _UNITS.get(val.unit, val.unit)
        s += u if u == "%" else f" {u}"
    return s


def _first(ledger: Iterable[Evidence], kind: str) -> Evidence | None:
    return next((e for e in ledger if e.kind == kind), None)


def _scene_phrase(ev: Evidence) -> str:
    platform = ev.facts.get("platform") or ev.facts.get("collection") or ""
    if platform in ("", "unknown"):
        platform = "image"  # "an unknown scene" would read as if the scene itself were unknown
    when = ev.facts.get("datetime") or ev.facts.get("acquired") or "unknown"
    date = f"acquired {when[:10]}" if when and when != "unknown" else "acquisition date unknown"
    gsd = q(ev, "gsd_m")
    res = f", {gsd} resolution" if gsd else ""
    article = "an" if platform[:1].lower() in "aeiou" else "a"
    return f"{article} {platform} scene ({date}{res}) [{ev.id}]"


def _place_phrase(ledger: list[Evidence]) -> str:
    place = _first(ledger, "place")
    if place is None:
        return ""
    name = place.title or place.facts.get("name", "")
    return f" around {name} [{place.id}]"


def _generic(ev: Evidence) -> str:
    shown = [f"{k.replace('_', ' ')} {q(ev, k)}" for k in list(ev.values)[:4]]
    return f"{ev.title}: {', '.join(shown)} [{ev.id}]." if shown else f"{ev.title} [{ev.id}]."


def _mask_sentence(
    ev: Evidence, ledger: list[Evidence], with_place: bool = True, intent: Intent | None = None
) -> str:
    scene_ev = next(
        (
            e
            for e in ledger
            if e.kind == "scene"
            and ev.facts.get("scene_id")
            and e.provenance.scene is not None
            and e.provenance.scene.stac_item_id == ev.facts.get("scene_id")
        ),
        None,
    )
    on = f", measured on {_scene_phrase(scene_ev)}" if scene_ev else ""
    method = ev.facts.get("method") or ev.facts.get("model")
    how = f" with {method}" if method else ""
    where = _place_phrase(ledger) if with_place else ""
    analysed = qa(ev, "analysed_area_km2", intent)
    if "cloud_cover_pct" in ev.values:
        parts = [f"Clouds cover about {q(ev, 'cloud_cover_pct')} of the analysed image area"]
        if analysed:
            parts[0] += f" ({analysed})"
        if "cloud_shadow_pct" in ev.values:
            parts.append(f"cloud shadow another {q(ev, 'cloud_shadow_pct')}")
        return f"{'; '.join(parts)} [{ev.id}]{on}{how}."
    for key in ev.values:
        if key.endswith("_area_km2") and key != "analysed_area_km2":
            label = key[: -len("_area_km2")].replace("_", " ")
            frac_key = f"{key[: -len('_area_km2')]}_fraction_pct"
            frac = f" ({q(ev, frac_key)})" if frac_key in ev.values else ""
            of = f" of the {analysed} analysed" if analysed else ""
            part = _partial_cover(scene_ev)
            return (
                f"About {qa(ev, key, intent, pm=True)}{of}{where} is {label}{frac} [{ev.id}]"
                f"{part}{on}{how}."
            )
    return _generic(ev)


def _partial_cover(scene_ev: Evidence | None) -> str:
    """Said in the headline when the imagery covers only part of the place asked about: a
    figure for a sliver must not read as one for the whole place."""
    cov = scene_ev.values.get("aoi_covered_pct") if scene_ev is not None else None
    if scene_ev is None or cov is None or cov.value >= 90:
        return ""
    return (
        f"; the imagery covers only {q(scene_ev, 'aoi_covered_pct')} of the area asked about "
        f"[{scene_ev.id}], so this is not a figure for the whole place"
    )


def _features_sentence(ev: Evidence, intent: Intent | None = None) -> str:
    src = ev.facts.get("sources") or ev.facts.get("source") or "OpenStreetMap"
    if "road_length_km" in ev.values:
        rel = ev.facts.get("related_to") or ev.facts.get("relate_label")
        where = f"near {rel}" if rel else "in the area"
        s = f"The mapped road network {where} is {qa(ev, 'road_length_km', intent)} long [{ev.id}]"
        if "road_segment_count" in ev.values:
            s += f", in {q(ev, 'road_segment_count')} street segments"
        return s + f" (source: {src})."
    if "building_count" in ev.values:
        rel = ev.facts.get("related_to") or ev.facts.get("relate_label") or "area"
        rel = rel if rel.startswith(("the ", "a ", "an ")) else f"the {rel}"
        s = f"{q(ev, 'building_count')} mapped buildings are on {rel} [{ev.id}]"
        if "covered_share_pct" in ev.values:
            share = q(ev, "covered_share_pct")
            related = qa(ev, "related_area_km2", intent)
            s += f"; their footprints cover {share} of it"
            if related:
                s += f" ({related})"
            s += f" [{ev.id}]"
        return s + f" (source: {src})."
    if "feature_count" in ev.values:
        return f"{q(ev, 'feature_count')} mapped features match [{ev.id}] (source: {src})."
    return _generic(ev)


def _detections_sentence(ev: Evidence, intent: Intent | None = None) -> str:
    """Boxes from a vision model, in the question's own words: the count of all boxes, and of
    those whose label matches the object asked about. A model's labels never appear (they are
    its free text, and can carry instructions or numbers); ground keeps matched counts only."""
    query = ev.facts.get("query") or (intent.objects if intent is not None else None) or ""
    words = " ".join(re.findall(r"[A-Za-z][A-Za-z\- ]{0,39}", query)[:1]).strip() or "objects"
    head, _ = target_vocabulary(words)
    key = "count_" + re.sub(r"[^a-z0-9]+", "_", head.lower()).strip("_")
    text = f"The vision model marked {q(ev, 'count')} box(es) when asked for {words} [{ev.id}]"
    parts = []
    if key in ev.values:
        parts.append(f"{q(ev, key)} labelled as {head}")
    if "count_other" in ev.values:
        parts.append(f"{q(ev, 'count_other')} with another label")
    if parts:
        text += f": {', '.join(parts)} [{ev.id}]"
    area = q(ev, "searched_area_km2")
    if area:
        text += f", in the {area} searched [{ev.id}]"
    return text + "."


def _coverage_sentence(ev: Evidence) -> str | None:
    cov, asked = ev.values.get("coverage_area_km2"), ev.values.get("query_area_km2")
    if cov is None or asked is None:
        return None
    stamp = ev.facts.get("data_timestamp") or ev.facts.get("timestamp") or "unknown"
    when = (
        f" (data as of {stamp})" if stamp and stamp != "unknown" else " (date of the data unknown)"
    )
    if cov.value < 0.95 * asked.value:
        return (
            f"The local data covers only {q(ev, 'coverage_area_km2')} of the "
            f"{q(ev, 'query_area_km2')} asked about, so the figures are for that part only{when} [{ev.id}]."
        )
    return f"The data covers the whole {q(ev, 'query_area_km2')} asked about{when} [{ev.id}]."


def _coverage_sentences(ev: Evidence, intent: Intent | None, ledger: list[Evidence]) -> list[str]:
    """What data and tools exist (for "what can you do?" and honest "I can't" answers)."""
    f, cite = ev.facts, f" [{ev.id}]"
    out: list[str] = []
    place_ev = _first(ledger, "place")
    where = (place_ev.title if place_ev is not None else None) or f.get("aoi")
    if intent is not None and intent.task == "out_of_scope":
        # The user's own words, and the topic's name when the two differ: "noisy (noise)".
        topic = intent.topic or f.get("topic") or "this topic"
        asked, _, key = topic.partition(" (")
        what = f"{key.rstrip(')')} data (you asked about “{asked}”)" if key else f"{topic} data"
        place = f" for {where}" if where else ""
        out.append(f"I have no {what}{place}, and none of my tools measures it{cite}.")
    if where:
        lead = "What I can do there instead" if out else f"For {where}"
        covered = ev.values.get("aoi_scenes")
        if covered is not None and covered.value > 0:
            out.append(
                f"{lead}: imagery: {f.get('aoi_imagery', 'unknown')}; measurable: "
                f"{f.get('aoi_measurable', 'unknown')}{cite}."
            )
        else:
            # Distances, not the names of other places' data: "rotterdam_ms_1m" in an answer
            # about Paris would read as an answer from Rotterdam.
            near = ""
            if "nearest_imagery_km" in ev.values:
                gsd = q(ev, "nearest_imagery_gsd_m")
                near = f"; the nearest is {q(ev, 'nearest_imagery_km')} away" + (
                    f" ({gsd} pixels)" if gsd else ""
                )
            out.append(f"{lead}: no imagery here covers {where}{near}{cite}.")
        osm = ev.values.get("aoi_osm_covered_pct")
        if osm is not None and osm.value > 0:
            out.append(f"Map data covers {q(ev, 'aoi_osm_covered_pct')} of the area{cite}.")
        elif "nearest_osm_km" in ev.values:
            out.append(
                f"No local map data covers it; the nearest is {q(ev, 'nearest_osm_km')} away{cite}."
            )
    if not where or (intent is not None and intent.task == "capabilities"):
        out.append(
            "I find places, search imagery and measure "
            f"{f.get('segment_targets', 'water, vegetation and cloud')} on it (one date or "
            "the change between dates), count and measure mapped buildings and roads, and list "
            f"the imagery available; finding objects by name needs a vision model "
            f"({f.get('vision_model', 'unknown')}){cite}."
        )
        out.append(f"Imagery I have: {f.get('collections', 'none')}{cite}.")
        out.append(f"Map data: {f.get('osm_extracts', 'none')}{cite}.")
    return out


def _figure_sentence(ev: Evidence) -> str:
    change_key = next((k for k in ev.values if k.endswith("_change_km2")), None)
    if change_key is None:
        return _generic(ev)
    base = change_key[: -len("_change_km2")]
    label = base.replace("_area", "").replace("_", " ")
    d = ev.values[change_key].value
    direction = "grew" if d > 0 else "shrank" if d < 0 else "did not change"
    start, end = q(ev, f"{base}_start_km2"), q(ev, f"{base}_end_km2")
    pct = f" ({q(ev, f'{base}_change_pct')})" if f"{base}_change_pct" in ev.values else ""
    src = ", ".join(ev.provenance.derived_from)
    return (
        f"Between the two dates the {label} area {direction}, from {start} to {end}: a change of "
        f"{q(ev, change_key, pm=True)}{pct} [{ev.id}] (derived from {src})."
    )


def template_answer(
    intent_label: str,
    ledger: list[Evidence],
    trace: list[TraceEntry],
    question: str,
    *,
    intent: Intent | None = None,
    plan: Plan | None = None,
) -> Answer:
    """Write the answer from the ledger; failures and unavailable steps are said plainly."""
    why = {s.id: s.why for s in plan.steps} if plan is not None else {}
    sentences: list[str] = []
    caveats: list[str] = []
    figures = [e for e in ledger if e.kind == "figure"]
    masks = [e for e in ledger if e.kind == "mask"]
    feats = [e for e in ledger if e.kind == "features"]
    dets = [e for e in ledger if e.kind == "detections"]
    scenes = [e for e in ledger if e.kind == "scene"]

    for fig in figures:
        if fig.provenance.tool == "coverage":
            sentences += _coverage_sentences(fig, intent, ledger)
        else:
            sentences.append(_figure_sentence(fig))
    for i, m in enumerate(masks):
        sentences.append(_mask_sentence(m, ledger, with_place=(i == 0), intent=intent))
    for f in feats:
        sentences.append(_features_sentence(f, intent))
        cov = _coverage_sentence(f)
        if cov:
            sentences.append(cov)
    for d in dets:
        sentences.append(_detections_sentence(d, intent))
    if not (figures or masks or feats or dets) and scenes:
        listed = "; ".join(_scene_phrase(s) for s in scenes[:5])
        sentences.append(f"Imagery found{_place_phrase(ledger)}: {listed}.")
    if scenes and intent is not None and intent.on_image and feats:
        sentences.append(f"The image used is {_scene_phrase(scenes[0])}.")

    for t in trace:
        if t.status == "unavailable":
            msg = t.error or f"{t.tool} is not available here"
            hint = f" {t.hint}" if t.hint else ""
            sentences.append(f"I could not run {t.tool}: {msg}{hint}")
        elif t.status == "error":
            hint = f" {t.hint}" if t.hint else ""
            what = why.get(t.step) or f"Step {t.step} ({t.tool})"
            sentences.append(f"{what}: not possible. {t.error}{hint}")
        elif t.status == "skipped":
            what = why.get(t.step) or f"Step {t.step} ({t.tool})"
            caveats.append(f"{what} was skipped because a step it needs did not succeed.")

    if not sentences:
        sentences.append(
            "I found no evidence to answer this question with the data available here."
        )

    for ev in ledger:
        for c in ev.caveats:
            caveats.append(c)
    if masks and not any(m.caveats for m in masks):
        caveats.append(
            "Areas come from classifying the pixels of one image at a time; they depend on the "
            "threshold, the season, the tide and the image resolution."
        )
    if dets:
        caveats.append("Detected objects are unverified model output; check them on the map.")
    for s in scenes:
        if (s.facts.get("datetime") or "unknown") == "unknown" and not any(
            "date" in c and "unknown" in c for c in caveats
        ):
            caveats.append(
                f"The acquisition date of scene "
                f"{s.provenance.scene.stac_item_id if s.provenance.scene else s.id} is not "
                "recorded in the data, so it is reported as unknown."
            )
    caveats = _dedupe_caveats(caveats)
    text = " ".join(s.strip() for s in sentences)
    cited = sorted({c for c in _citations(text)}, key=lambda c: int(c[1:]))
    return Answer(text=text, citations=cited, caveats=caveats, writer="template")


def with_understanding(answer: Answer, intent: Intent | None, plan: Plan | None) -> Answer:
    """Say first how the question was read (a place taken from the previous question, a
    corrected spelling) and which parts were not done, whoever wrote the rest."""
    lead: list[str] = []
    if intent is not None:
        lead += [n.rstrip(".") + "." for n in intent.notes]
    if plan is not None:
        for n in plan.notes:
            if n.startswith("not done: "):
                what = n[len("not done: ") :]
                lead.append(f"Not done: {what[:1].upper() + what[1:]}.")
    if not lead:
        return answer
    return answer.model_copy(update={"text": " ".join([*lead, answer.text]).strip()})


def _dedupe_caveats(caveats: list[str]) -> list[str]:
    """One caveat per idea, phrased for people (tool notes meant for writers are rephrased)."""
    out: list[str] = []
    seen: set[str] = set()
    for c in caveats:
        c = c.replace("; do not state one", "").strip()
        if not c:
            continue
        c = c[0].upper() + c[1:]
        if not c.endswith((".", "!", "?")):
            c += "."
        key = re.sub(r"[^a-z ]", "", c.lower())
        if key in seen:
            continue
        seen.add(key)
        out.append(c)
    return out


def _citations(text: str) -> list[str]:
    return re.findall(r"\[(E\d+)\]", text)


__all__ = ["Quantity", "fmt", "template_answer"]
