"""Merge ToolResults into the evidence ledger (E1..En), map layers and derived figures."""

from __future__ import annotations

import re
from typing import Any

from agents.schemas import Evidence, PlanStep
from tools.base import EvidenceDraft, Quantity, ToolResult
from tools.numbers import sig
from tools.provenance import Provenance

_SAFE_ID = re.compile(r"[^A-Za-z0-9_.:\-]")


def safe_text(text: str, limit: int = 120) -> str:
    """Tool-provided text reduced to plain, short, markup-free text."""
    text = re.sub(r"<[^>]*>", "", text)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[`\[\]{}\\]", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:limit] + ("…" if len(text) > limit else "")


def merge_results(
    steps: list[PlanStep], results: dict[str, ToolResult]
) -> tuple[list[Evidence], dict[str, Any], dict[tuple[str, str], str]]:
    """Number evidence in plan order; return the ledger, the layers and (step, key) -> id."""
    ledger: list[Evidence] = []
    index: dict[tuple[str, str], str] = {}
    features: list[dict[str, Any]] = []
    for step in steps:
        result = results.get(step.id)
        if result is None or result.status != "ok":
            continue
        for draft in result.evidence:
            eid = f"E{len(ledger) + 1}"
            index[(step.id, draft.key)] = eid
            ev = _to_evidence(eid, draft, step)
            ledger.append(ev)
            features.extend(_layer_features(eid, draft))
    for fig in derived_figures(steps, results, index, ledger):
        eid = f"E{len(ledger) + 1}"
        fig.id = eid
        ledger.append(fig)
    layers = {"type": "FeatureCollection", "features": features}
    return ledger, layers, index


def _to_evidence(eid: str, draft: EvidenceDraft, step: PlanStep) -> Evidence:
    prov = draft.provenance.model_copy(
        update={"step": step.id, "arguments": draft.provenance.arguments or dict(step.args)}
    )
    return Evidence(
        id=eid,
        kind=draft.kind,
        title=safe_text(draft.title, 160),
        values=draft.values,
        facts={k: safe_text(str(v), 200) for k, v in draft.facts.items()},
        geometry=draft.geometry,
        provenance=prov,
        caveats=list(draft.caveats),
    )


def _layer_features(eid: str, draft: EvidenceDraft) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    label = safe_text(draft.title, 80)
    if draft.layer and draft.layer.get("features"):
        for feat in draft.layer["features"]:
            if not isinstance(feat, dict) or not feat.get("geometry"):
                continue
            props = dict(feat.get("properties") or {})
            props.update({"evidence_id": eid, "kind": draft.kind, "label": label})
            out.append({"type": "Feature", "geometry": feat["geometry"], "properties": props})
    elif draft.geometry is not None:
        out.append(
            {
                "type": "Feature",
                "geometry": draft.geometry,
                "properties": {"evidence_id": eid, "kind": draft.kind, "label": label},
            }
        )
    return out


def derived_figures(
    steps: list[PlanStep],
    results: dict[str, ToolResult],
    index: dict[tuple[str, str], str],
    ledger: list[Evidence],
) -> list[Evidence]:
    """Changes between two measurements of the same target (e.g. water 2009 vs 2020)."""
    by_id = {e.id: e for e in ledger}
    masks: dict[str, list[Evidence]] = {}
    for step in steps:
        for (sid, _key), eid in index.items():
            ev = by_id.get(eid)
            if ev is not None and sid == step.id and ev.kind == "mask":
                target = str(step.args.get("target", ev.facts.get("target", "")))
                masks.setdefault(target, []).append(ev)
    figures: list[Evidence] = []
    for target, evs in masks.items():
        if len(evs) < 2:
            continue
        evs = sorted(evs, key=lambda e: e.facts.get("acquired", e.facts.get("datetime", "")) or "")
        first, last = evs[0], evs[-1]
        key = next(
            (k for k in first.values if k.endswith("_area_km2") and k != "analysed_area_km2"), None
        )
        if key is None or key not in last.values:
            continue
        a, b = first.values[key].value, last.values[key].value
        values = {
            f"{key[:-4]}_change_km2": Quantity(value=sig(b - a, keep_whole=True), unit="km2"),
            f"{key[:-4]}_start_km2": Quantity(value=a, unit="km2"),
            f"{key[:-4]}_end_km2": Quantity(value=b, unit="km2"),
        }
        if a > 0:
            values[f"{key[:-4]}_change_pct"] = Quantity(value=round((b - a) / a * 100, 1), unit="%")
        caveats = []
        ua, ub = first.values[key].uncertainty, last.values[key].uncertainty
        if ua is not None and ub is not None:
            values[f"{key[:-4]}_change_km2"].uncertainty = sig(
                (ua**2 + ub**2) ** 0.5, keep_whole=True
            )
        aa, ab = first.values.get("analysed_area_km2"), last.values.get("analysed_area_km2")
        if aa and ab and abs(aa.value - ab.value) > 0.05 * max(aa.value, ab.value):
            caveats.append(
                "The two measurements cover analysed areas of different size; the change "
                "mixes a real change with a difference in coverage."
            )
        figures.append(
            Evidence(
                id="E?",
                kind="figure",
                title=f"Change in {target} area between {first.id} and {last.id}",
                values=values,
                facts={
                    "from": first.facts.get("acquired", "unknown date"),
                    "to": last.facts.get("acquired", "unknown date"),
                    "target": target,
                },
                provenance=Provenance(
                    tool="merge",
                    derived_from=[first.id, last.id],
                    method=f"difference of {key} between the later and the earlier measurement",
                ),
                caveats=caveats,
            )
        )
    return figures
