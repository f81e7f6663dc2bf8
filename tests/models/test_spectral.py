"""Normalized differences, thresholds and the threshold-sensitivity area estimate."""

from __future__ import annotations

import numpy as np
import pytest

from models.spectral import (
    INDICES,
    area_with_sensitivity,
    compute_index,
    masked_area,
    normalized_difference,
    threshold_mask,
)


def test_normalized_difference_values_and_invalid_pixels() -> None:
    a = np.array([[0.3, 0.1, 0.0, np.nan, 0.2]], dtype=np.float32)
    b = np.array([[0.1, 0.3, 0.0, 0.1, 0.2]], dtype=np.float32)
    nodata = np.array([[True, True, True, True, False]])
    nd, ok = normalized_difference(a, b, nodata)
    assert nd.dtype == np.float32
    assert nd[0, 0] == pytest.approx((0.3 - 0.1) / (0.3 + 0.1))
    assert nd[0, 1] == pytest.approx(-0.5)
    # zero denominator, NaN input and nodata are invalid, not "not water"
    assert ok.tolist() == [[True, True, False, False, False]]
    assert np.isnan(nd[0, 2:]).all()


def test_normalized_difference_is_bounded_with_negative_reflectance() -> None:
    # L1 offsets can give slightly negative values; the index must stay in [-1, 1].
    nd, ok = normalized_difference(np.array([[0.2]]), np.array([[-0.01]]))
    assert ok.all() and -1.0 <= nd[0, 0] <= 1.0


def test_shape_mismatch_and_missing_bands_raise() -> None:
    with pytest.raises(ValueError):
        normalized_difference(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(KeyError, match="nir"):
        compute_index("ndwi", {"green": np.zeros((2, 2))})


def test_registered_indices_use_their_documented_bands() -> None:
    assert INDICES["ndwi"].bands == ("green", "nir")
    assert INDICES["ndvi"].bands == ("nir", "red")
    green = np.array([[0.10, 0.05]])
    nir = np.array([[0.02, 0.40]])
    nd, _ = compute_index("ndwi", {"green": green, "nir": nir})
    assert threshold_mask(nd, INDICES["ndwi"].default_threshold).tolist() == [[True, False]]
    assert "McFeeters" in INDICES["ndwi"].formula()


def test_threshold_mask_never_selects_nan() -> None:
    assert not threshold_mask(np.array([np.nan]), -1.0).any()


def test_masked_area_scalar_and_per_row() -> None:
    mask = np.array([[True, True], [True, False], [False, False]])
    assert masked_area(mask, 2.0) == pytest.approx(6.0)
    per_row = np.array([1.0, 10.0, 100.0])
    assert masked_area(mask, per_row) == pytest.approx(2 * 1.0 + 1 * 10.0)
    with pytest.raises(ValueError):
        masked_area(mask, np.array([1.0, 2.0]))


def test_area_sensitivity_counts_the_pixels_that_flip() -> None:
    # Index values spaced 0.01 apart from -0.5 to 0.49: how many exceed t, t-0.05, t+0.05
    # follows from the construction.
    index = (np.arange(100, dtype=np.float32) / 100 - 0.5).reshape(10, 10)
    t, delta, pix = 0.0, 0.05, 0.25
    est = area_with_sensitivity(index, t, pix, delta=delta)
    expect = {x: float(np.count_nonzero(index > x)) * pix for x in (t, t - delta, t + delta)}
    assert est.area == pytest.approx(expect[t])
    assert est.area_high == pytest.approx(expect[t - delta])
    assert est.area_low == pytest.approx(expect[t + delta])
    assert est.area_low <= est.area <= est.area_high
    assert est.uncertainty == pytest.approx((expect[t - delta] - expect[t + delta]) / 2)
    assert est.pixels == np.count_nonzero(index > t)


def test_area_sensitivity_respects_within_and_is_zero_for_a_sharp_edge() -> None:
    # Pure water (0.6) against pure land (-0.6): no pixel near the threshold, no uncertainty.
    index = np.where(np.arange(20).reshape(4, 5) % 2 == 0, 0.6, -0.6).astype(np.float32)
    est = area_with_sensitivity(index, 0.0, 1.0)
    assert est.uncertainty == 0.0 and est.area == 10.0
    within = np.zeros_like(index, dtype=bool)
    within[0] = True
    assert area_with_sensitivity(index, 0.0, 1.0, within=within).area == np.count_nonzero(
        index[0] > 0
    )
    with pytest.raises(ValueError):
        area_with_sensitivity(index, 0.0, 1.0, delta=-0.1)
