"""Label-based quality checks: model and tool output against labels, outside the agent.

This is deliberately separate from case scoring (which reads only AnswerBundles): here the
models and tools are called directly and compared with labelled data.

* Cloud and shadow masks (``models.csmask``, the ukis-csmask U-Nets) against the labelled
  ``cloudmask/`` patches: Cohen's kappa over three classes (clear, cloud, cloud shadow), F1 per
  class, and kappa of "obscured" (cloud or shadow) against clear. The metrics are computed
  here from a confusion matrix, not with the adapter's own helpers. Caveat: the patches
  come from ukis-csmask's own test files, so they may be close to its training data and
  the scores are likely optimistic for new scenes (compare the Landsat cloud cases, where
  the model and the scene's USGS quality band disagree strongly).
* Building overlay (``osm_overlay``) against the Kampala OSM buildings and the Atlanta
  SpaceNet labels over each image's valid pixels: counts, per-building matches (by OSM id,
  else polygon IoU >= 0.5), precision, recall and the IoU of the footprint unions. No
  building detector runs offline, so this measures whether the overlay hands back the
  labelled buildings faithfully (selection, clipping, simplification), not a model.

    geoscout eval quality --report out/eval-quality
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from evals.reference import utm_for, valid_area

KAPPA_MIN = 0.70
F1_MIN = 0.70
OVERLAY_MIN = 0.98  # precision, recall and union IoU of the overlay against the labels
CLASSES = ("clear", "cloud", "cloud_shadow")


class MaskScore(BaseModel):
    patch: str
    model: str
    pixels: int
    kappa: float
    obscured_kappa: float
    f1: dict[str, float]
    label_share_pct: dict[str, float]
    predicted_share_pct: dict[str, float]
    passed: bool


class BuildingScore(BaseModel):
    name: str
    labels: int
    overlay: int
    matched: int
    precision: float
    recall: float
    union_iou: float
    passed: bool
    note: str = ""


class QualityResult(BaseModel):
    masks: list[MaskScore] = Field(default_factory=list)
    buildings: list[BuildingScore] = Field(default_factory=list)
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {"kappa": KAPPA_MIN, "f1": F1_MIN, "overlay": OVERLAY_MIN}
    )
    skipped: list[str] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.masks) and all(b.passed for b in self.buildings)


# --------------------------------------------------------------------------- metrics


def confusion(truth: NDArray[Any], pred: NDArray[Any], n: int) -> NDArray[np.int64]:
    """Rows: label; columns: prediction."""
    t = np.asarray(truth, dtype=np.int64).ravel()
    p = np.asarray(pred, dtype=np.int64).ravel()
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def kappa(cm: NDArray[np.int64]) -> float:
    total = cm.sum()
    observed = np.trace(cm) / total
    expected = float((cm.sum(0) * cm.sum(1)).sum()) / total**2
    return 1.0 if expected == 1.0 else float((observed - expected) / (1 - expected))


def f1_scores(cm: NDArray[np.int64]) -> list[float]:
    out = []
    for i in range(cm.shape[0]):
        tp = cm[i, i]
        denom = 2 * tp + (cm[i, :].sum() - tp) + (cm[:, i].sum() - tp)
        out.append(float(2 * tp / denom) if denom else math.nan)
    return out


def patch_labels(msk: NDArray[Any]) -> NDArray[np.uint8]:
    """The patches' codes (0 shadow, 1-3 clear, 4 cloud, per the data README) -> 0/1/2."""
    m = msk[..., 0] if msk.ndim == 3 else msk
    out = np.zeros(m.shape, dtype=np.uint8)
    out[m == 4] = 1
    out[m == 0] = 2
    return out


def score_mask(patch: str, model: str, truth: NDArray[Any], pred: NDArray[Any]) -> MaskScore:
    cm = confusion(truth, pred, 3)
    k = kappa(cm)
    obscured = confusion((truth > 0).astype(int), (pred > 0).astype(int), 2)
    f1 = dict(zip(CLASSES, f1_scores(cm), strict=True))
    n = int(cm.sum())
    return MaskScore(
        patch=patch,
        model=model,
        pixels=n,
        kappa=round(k, 3),
        obscured_kappa=round(kappa(obscured), 3),
        f1={c: round(v, 3) for c, v in f1.items()},
        label_share_pct={c: round(100 * cm[i, :].sum() / n, 1) for i, c in enumerate(CLASSES)},
        predicted_share_pct={c: round(100 * cm[:, i].sum() / n, 1) for i, c in enumerate(CLASSES)},
        passed=k >= KAPPA_MIN and all(v >= F1_MIN for v in f1.values() if not math.isnan(v)),
    )


# --------------------------------------------------------------------------- runs


def cloud_masks(cloudmask_dir: Path) -> list[MaskScore]:
    from models import csmask  # the model under test

    scores: list[MaskScore] = []
    for f in sorted(cloudmask_dir.glob("*.npz")):
        with np.load(f) as z:
            img, msk = z["img"].astype(np.float32), z["msk"]
        truth = patch_labels(msk)
        for bands in (csmask.BANDS_6, csmask.BANDS_4):
            cube = img if bands == csmask.BANDS_6 else img[:, :, :4]
            res = csmask.run_csmask(cube, bands, "l1c")
            # The adapter's ids are 0 clear, 1 cloud, 2 shadow: the same order as CLASSES.
            scores.append(score_mask(f.stem, res.model_name, truth, res.classes))
    return scores


def _iou(a: Any, b: Any) -> float:
    union = a.union(b).area
    return float(a.intersection(b).area / union) if union else 0.0


def building_overlay(
    name: str, labels: Path, image: Path, data_dirs: list[Path], cache: Path
) -> BuildingScore:
    import geopandas as gpd
    from shapely.geometry import mapping, shape
    from shapely.ops import unary_union

    from tools.base import ToolContext
    from tools.osm.tool import SPEC

    area = valid_area([image])
    ctx = ToolContext(data_dirs=tuple(data_dirs), cache_dir=cache)
    res = SPEC.invoke(
        {"features": "buildings", "relate_to": mapping(area), "predicate": "intersects"}, ctx
    )
    if res.status != "ok" or not res.evidence:
        return BuildingScore(
            name=name, labels=0, overlay=0, matched=0, precision=0, recall=0, union_iou=0,
            passed=False, note=f"overlay failed: {res.error.message if res.error else res.status}",
        )  # fmt: skip
    feats = (res.evidence[0].layer or {}).get("features", [])
    frame = gpd.read_file(labels).to_crs("EPSG:4326")
    frame = frame[frame.intersects(area)]
    utm = utm_for(area.centroid.x, area.centroid.y)
    lab = list(frame.to_crs(utm).geometry.make_valid())
    got = list(
        gpd.GeoSeries([shape(f["geometry"]) for f in feats], crs="EPSG:4326")
        .to_crs(utm)
        .make_valid()
    )
    ids_l = [str(v) for v in frame["osm_id"]] if "osm_id" in frame.columns else []
    ids_g = [str(f["properties"].get("osm_id", "")) for f in feats]
    matched = 0
    if ids_l and all(ids_g):
        matched = len(set(ids_l) & set(ids_g))
        how = "matched by osm_id"
    else:
        used: set[int] = set()
        for g in got:
            best = max(
                ((j, _iou(g, h)) for j, h in enumerate(lab) if j not in used),
                key=lambda t: t[1],
                default=(-1, 0.0),
            )
            if best[1] >= 0.5:
                used.add(best[0])
                matched += 1
        how = "matched by polygon IoU >= 0.5"
    iou = _iou(unary_union(got), unary_union(lab)) if got and lab else 0.0
    precision = matched / len(got) if got else 0.0
    recall = matched / len(lab) if lab else 0.0
    return BuildingScore(
        name=name,
        labels=len(lab),
        overlay=len(got),
        matched=matched,
        precision=round(precision, 4),
        recall=round(recall, 4),
        union_iou=round(iou, 4),
        passed=min(precision, recall, iou) >= OVERLAY_MIN,
        note=f"{how}; labels touching the image's valid pixels",
    )


def _find(data_dirs: list[Path], relative: str) -> Path | None:
    return next((Path(d) / relative for d in data_dirs if (Path(d) / relative).exists()), None)


def run_quality(data_dirs: list[Path], cache_dir: Path) -> QualityResult:
    result = QualityResult()
    cm_dir = _find(data_dirs, "cloudmask")
    if cm_dir is None:
        result.skipped.append("cloudmask/: not in the data folders")
    else:
        result.masks = cloud_masks(cm_dir)
    for name, labels, image in (
        ("kampala-osm", "kampala/osm_buildings.geojson", "kampala/kampala_oam_0.15m.tif"),
        ("atlanta-spacenet", "spacenet/atlanta_buildings.geojson", "spacenet/atlanta_pan_0.5m.tif"),
    ):
        lp, ip = _find(data_dirs, labels), _find(data_dirs, image)
        if lp is None or ip is None:
            result.skipped.append(f"{name}: {labels} or {image} missing")
            continue
        result.buildings.append(building_overlay(name, lp, ip, data_dirs, cache_dir))
    return result


def quality_markdown(r: QualityResult) -> str:
    lines = [
        "### Label-based quality",
        "",
        f"Pass: kappa >= {KAPPA_MIN}, F1 >= {F1_MIN} per class; overlay precision, recall and "
        f"union IoU >= {OVERLAY_MIN}. Overall: **{'pass' if r.passed else 'FAIL'}**.",
        "",
        "| patch | model | kappa (3 classes) | kappa obscured/clear | F1 clear | F1 cloud | F1 shadow | label % clear/cloud/shadow | predicted % | pass |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for m in r.masks:
        ls = "/".join(f"{m.label_share_pct[c]:g}" for c in CLASSES)
        ps = "/".join(f"{m.predicted_share_pct[c]:g}" for c in CLASSES)
        lines.append(
            f"| {m.patch} | {m.model} | {m.kappa:.3f} | {m.obscured_kappa:.3f} | "
            + " | ".join(f"{m.f1[c]:.3f}" for c in CLASSES)
            + f" | {ls} | {ps} | {'✓' if m.passed else '✗'} |"
        )
    lines += [
        "",
        "The patches come from ukis-csmask's own test files: expect these scores to be "
        "optimistic for scenes the model has not seen.",
        "",
        "| buildings | labels | overlay | matched | precision | recall | union IoU | pass | how |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for b in r.buildings:
        lines.append(
            f"| {b.name} | {b.labels} | {b.overlay} | {b.matched} | {b.precision:.3f} | "
            f"{b.recall:.3f} | {b.union_iou:.3f} | {'✓' if b.passed else '✗'} | {b.note} |"
        )
    if r.skipped:
        lines += ["", "Skipped: " + "; ".join(r.skipped)]
    return "\n".join(lines) + "\n"


def write_quality(r: QualityResult, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "quality.json": json.dumps(
            {**r.model_dump(mode="json"), "passed": r.passed}, indent=1, allow_nan=True
        ),
        "quality.md": quality_markdown(r),
    }
    for name, text in files.items():
        (out_dir / name).write_text(text, encoding="utf-8")
    return {name: out_dir / name for name in files}
