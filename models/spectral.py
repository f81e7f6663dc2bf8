"""Spectral indices (normalized differences), thresholds and an area uncertainty estimate.

numpy only. Arrays are 2-D; invalid pixels (nodata, zero denominator, non-finite input) are
NaN in an index and ``False`` in the ``valid`` mask that goes with it, so they are never
counted as "not water" (which would shrink fractions) nor as "water".

Uncertainty of an area (``area_with_sensitivity``): the area is counted at the chosen
threshold ``t`` and again at ``t - delta`` and ``t + delta`` (default ``delta = 0.05``).
Because the index rises monotonically across a water or vegetation edge, the pixels that
flip within that band are mostly mixed pixels at edges and dim or turbid targets: the ones
whose class depends on an arbitrary choice of threshold. The reported uncertainty is the
half-range ``(A(t - delta) - A(t + delta)) / 2``. It measures sensitivity to the threshold
only; it does not cover errors where the index itself is wrong (cloud shadow or dark roofs
read as water, for example), which the caveats of the segment tool name separately.

:class:`SpectralIndexSegmenter` runs a registered index as a model (see models/protocols.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.cards import ModelCard, ModelInputError
from models.protocols import BandInput, Segmentation

FloatArray = NDArray[np.floating]
BoolArray = NDArray[np.bool_]

# Half-width of the threshold band used for the area sensitivity (index units).
DEFAULT_SENSITIVITY_DELTA = 0.05


@dataclass(frozen=True)
class IndexSpec:
    """A normalized difference ``(a - b) / (a + b)`` and how to threshold it."""

    name: str
    a: str  # common band name of the first term
    b: str  # common band name of the second term
    target: str
    default_threshold: float
    reference: str
    threshold_note: str

    @property
    def bands(self) -> tuple[str, str]:
        return (self.a, self.b)

    def formula(self, threshold: float | None = None) -> str:
        t = self.default_threshold if threshold is None else threshold
        return (
            f"{self.name.upper()} = ({self.a} - {self.b}) / ({self.a} + {self.b}) > {t:g} "
            f"({self.reference})"
        )


INDICES: dict[str, IndexSpec] = {
    "ndwi": IndexSpec(
        name="ndwi",
        a="green",
        b="nir",
        target="water",
        # McFeeters defines water as NDWI > 0: open water reflects more green than NIR, soil
        # and vegetation the reverse. 0.0 is the published, widely reproduced value; turbid
        # or shallow water can fall slightly below it and bright built-up surfaces slightly
        # above, which is what the +/-0.05 sensitivity band reports as uncertainty.
        default_threshold=0.0,
        reference="McFeeters 1996, doi:10.1080/01431169608948714",
        threshold_note="0.0 is McFeeters' original water/non-water boundary",
    ),
    "ndvi": IndexSpec(
        name="ndvi",
        a="nir",
        b="red",
        target="vegetation",
        # 0.3 separates green vegetation from bare soil, rock, water and built-up areas in
        # most land-cover studies; sparse or senescent vegetation (NDVI 0.15-0.3) is left out.
        default_threshold=0.3,
        reference="Rouse et al. 1974; Tucker 1979, doi:10.1016/0034-4257(79)90013-0",
        threshold_note="0.3 keeps green vegetation and leaves out sparse or dry cover",
    ),
}


def normalized_difference(
    a: FloatArray, b: FloatArray, valid: BoolArray | None = None
) -> tuple[NDArray[np.float32], BoolArray]:
    """``(a - b) / (a + b)`` as float32 with NaN where it is undefined, and the valid mask.

    A pixel is invalid when either input is non-finite, ``valid`` says so, or ``a + b`` is
    zero (no signal: the ratio has no meaning there).
    """
    if a.shape != b.shape:
        raise ValueError(f"band shapes differ: {a.shape} vs {b.shape}")
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    total = a64 + b64
    ok = np.isfinite(a64) & np.isfinite(b64) & (total != 0)
    if valid is not None:
        ok &= valid.astype(bool)
    out = np.full(a.shape, np.nan, dtype=np.float32)
    np.divide(a64 - b64, total, out=out, where=ok, casting="unsafe")
    # Reflectance can be slightly negative after offsets; keep the index in its domain.
    np.clip(out, -1.0, 1.0, out=out)
    return out, ok


def compute_index(
    name: str, bands: dict[str, FloatArray], valid: BoolArray | None = None
) -> tuple[NDArray[np.float32], BoolArray]:
    """Compute a registered index (``"ndwi"``, ``"ndvi"``) from bands keyed by common name."""
    spec = INDICES[name]
    missing = [band for band in spec.bands if band not in bands]
    if missing:
        raise KeyError(f"{name} needs bands {list(spec.bands)}; missing {missing}")
    return normalized_difference(bands[spec.a], bands[spec.b], valid)


def threshold_mask(index: FloatArray, threshold: float) -> BoolArray:
    """Pixels strictly above the threshold; NaN compares False, so invalid pixels stay out."""
    with np.errstate(invalid="ignore"):
        return np.asarray(index > threshold)


def masked_area(mask: BoolArray, pixel_area: float | FloatArray) -> float:
    """Area of the True pixels. ``pixel_area`` is a scalar or a per-row array (rows,) or
    (rows, 1), for grids whose pixel area varies with latitude (geographic, Web Mercator)."""
    if np.ndim(pixel_area) == 0:
        return float(np.count_nonzero(mask)) * float(pixel_area)
    per_row = np.asarray(pixel_area, dtype=np.float64).reshape(-1)
    if per_row.shape[0] != mask.shape[0]:
        raise ValueError("per-row pixel areas must have one value per mask row")
    return float(np.count_nonzero(mask, axis=1) @ per_row)


@dataclass(frozen=True)
class AreaEstimate:
    """Area above a threshold with its threshold sensitivity (same unit as pixel_area)."""

    area: float
    area_low: float  # at threshold + delta (stricter)
    area_high: float  # at threshold - delta (looser)
    uncertainty: float  # half-range (area_high - area_low) / 2
    pixels: int
    threshold: float
    delta: float


def area_with_sensitivity(
    index: FloatArray,
    threshold: float,
    pixel_area: float | FloatArray,
    delta: float = DEFAULT_SENSITIVITY_DELTA,
    within: BoolArray | None = None,
) -> AreaEstimate:
    """Area where ``index > threshold``, with the threshold-sensitivity uncertainty.

    ``within`` restricts the count (for example to pixels inside an AOI polygon).
    """
    if delta < 0:
        raise ValueError("delta must be >= 0")

    def area_at(t: float) -> tuple[float, int]:
        m = threshold_mask(index, t)
        if within is not None:
            m &= within
        return masked_area(m, pixel_area), int(np.count_nonzero(m))

    area, pixels = area_at(threshold)
    high, _ = area_at(threshold - delta)
    low, _ = area_at(threshold + delta)
    return AreaEstimate(
        area=area,
        area_low=low,
        area_high=high,
        uncertainty=(high - low) / 2.0,
        pixels=pixels,
        threshold=threshold,
        delta=delta,
    )


# ---- the Segmenter -------------------------------------------------------------------------


class SpectralIndexSegmenter:
    """A registered index as a :class:`~models.protocols.Segmenter`: score, then threshold."""

    def __init__(self, card: ModelCard) -> None:
        self._card = card
        self.spec = INDICES[card.name]

    @property
    def card(self) -> ModelCard:
        return self._card

    @property
    def purpose(self) -> str:
        return f"{self.spec.name.upper()} ({self.spec.target})"

    def bands_for(self, available: set[str]) -> tuple[str, ...]:
        # Always the index's two bands: the reader says which of them the data lacks.
        return self.spec.bands

    def segment(self, data: BandInput, target: str, threshold: float | None = None) -> Segmentation:
        spec = self.spec
        if target != spec.target:
            raise ModelInputError(f"{spec.name} maps {spec.target}, not {target}")
        thr = spec.default_threshold if threshold is None else threshold
        index, ok = compute_index(spec.name, dict(data.bands), data.valid)
        valid = data.valid & ok
        mask = threshold_mask(index, thr) & valid
        return Segmentation(
            card=self._card,
            target=target,
            mask=mask,
            valid=valid,
            method=f"{spec.formula(thr)}, per pixel on {data.description}",
            short_method=f"{spec.name.upper()} > {thr:g} ({spec.reference.split(',')[0]})",
            classes={target: mask},
            scores=index,
            threshold=thr,
        )
