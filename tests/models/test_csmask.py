"""The ukis-csmask adapter, measured against the labelled cloud/shadow patches.

The patches (``<data>/cloudmask/*.npz``) hold 512 x 512 x 6 reflectance and a labelled mask
(0 shadow, 1-3 clear, 4 cloud). Measured with the 6-band L1C model on 2 CPU threads:
Sentinel-2 kappa 0.81 (F1 clear 0.93, cloud 0.86, shadow 0.83); Landsat 7 kappa 0.79 (F1
clear 0.88, cloud 0.89, shadow 0.78). The bounds below leave about 0.08 of margin for
runtime and thread differences while still failing on a broken band order or scaling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models import csmask

KAPPA_MIN = 0.70
F1_MIN = 0.70


def test_variant_choice_follows_the_bands() -> None:
    assert csmask.variant_for(csmask.BANDS_6, "L1C") == ("ukis-csmask-6b-l1c", csmask.BANDS_6)
    name, order = csmask.variant_for(["nir", "red", "green", "blue", "pan"], "l2a")
    assert name == "ukis-csmask-4b-l2a" and order == csmask.BANDS_4
    with pytest.raises(ValueError, match="nir"):
        csmask.variant_for(["red", "green", "blue"], "l1c")
    with pytest.raises(ValueError, match="product level"):
        csmask.variant_for(csmask.BANDS_6, "l3")


def test_patch_labels_map_to_model_classes() -> None:
    msk = np.array([[0, 1, 2, 3, 4]], dtype=np.uint8)
    assert csmask.labels_from_patch_mask(msk).tolist() == [[2, 0, 0, 0, 1]]


def test_kappa_and_f1_match_their_definitions() -> None:
    # A 2-class table with a=20 (1,1), b=5 (1,0), c=10 (0,1), d=15 (0,0).
    truth = np.array([1] * 25 + [0] * 25)
    pred = np.array([1] * 20 + [0] * 5 + [1] * 10 + [0] * 15)
    n = 50
    p_o = (20 + 15) / n
    p_e = (25 / n) * (30 / n) + (25 / n) * (20 / n)
    assert csmask.cohen_kappa(truth, pred, 2) == pytest.approx((p_o - p_e) / (1 - p_e))
    f1 = csmask.f1_per_class(truth, pred, 2)
    assert f1["cloud"] == pytest.approx(2 * 20 / (25 + 30))
    assert csmask.cohen_kappa(truth, truth, 2) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, 20000), rng.integers(0, 3, 20000)
    assert abs(csmask.cohen_kappa(a, b)) < 0.03  # independent labels: chance agreement


def test_default_threads_is_positive() -> None:
    assert csmask.default_threads() >= 1


@pytest.fixture(scope="module")
def patches(data_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    files = sorted((data_dir / "cloudmask").glob("*.npz"))
    if not files:
        pytest.skip(f"no labelled cloud patches under {data_dir / 'cloudmask'}")
    out = {}
    for f in files:
        with np.load(f) as z:
            out[f.stem] = (z["img"].astype(np.float32), z["msk"])
    return out


@pytest.fixture(scope="module")
def predictions(
    patches: dict[str, tuple[np.ndarray, np.ndarray]],
) -> dict[str, csmask.CloudMask]:
    return {
        name: csmask.run_csmask(img, csmask.BANDS_6, "l1c") for name, (img, _) in patches.items()
    }


def test_agreement_with_labelled_patches(
    patches: dict[str, tuple[np.ndarray, np.ndarray]],
    predictions: dict[str, csmask.CloudMask],
) -> None:
    for name, (img, msk) in patches.items():
        assert img.shape[2] == 6, name
        result = predictions[name]
        assert result.model_name == "ukis-csmask-6b-l1c"
        assert result.model_version.startswith("1.0.0")
        assert result.valid.all()
        truth = csmask.labels_from_patch_mask(msk)
        kappa = csmask.cohen_kappa(truth, result.classes)
        f1 = csmask.f1_per_class(truth, result.classes)
        assert kappa >= KAPPA_MIN, (name, kappa, f1)
        for cls, score in f1.items():
            assert score >= F1_MIN, (name, cls, score, kappa)


def test_nodata_is_excluded_and_does_not_spoil_the_rest(
    patches: dict[str, tuple[np.ndarray, np.ndarray]],
    predictions: dict[str, csmask.CloudMask],
) -> None:
    name = next(iter(patches))
    img, full = patches[name][0], predictions[name]
    holed = img.copy()
    holed[:, :128] = np.nan  # a nodata strip, as at a swath edge
    part = csmask.run_csmask(holed, csmask.BANDS_6, "l1c")
    assert not part.valid[:, :128].any() and part.valid[:, 128:].all()
    # Away from the strip (beyond the network's context), the prediction is unchanged.
    same = np.mean(part.classes[:, 200:] == full.classes[:, 200:])
    assert same >= 0.95, same
    assert 0.0 <= part.fraction(csmask.CLOUD) <= 1.0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        csmask.run_csmask(np.zeros((8, 8), np.float32), csmask.BANDS_4)
    with pytest.raises(ValueError, match="band names"):
        csmask.run_csmask(np.zeros((8, 8, 3), np.float32), csmask.BANDS_4)
    with pytest.raises(ValueError, match="no valid pixels"):
        csmask.run_csmask(np.full((8, 8, 4), np.nan, np.float32), csmask.BANDS_4)


def test_sessions_are_cached_and_match_the_package(
    patches: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    """One ONNX session per weights file, reused; the output is the package's own, pixel for
    pixel (ukis_csmask.mask.CSmask builds a new session per call, 0.6-0.8 s each)."""
    import warnings

    from ukis_csmask.mask import CSmask

    img = next(iter(patches.values()))[0][:300, :280].copy()  # not a multiple of the tile
    csmask.clear_sessions()
    first = csmask.run_csmask(img, csmask.BANDS_6, "l1c", threads=1)
    sessions = dict(csmask._SESSIONS)
    assert len(sessions) == 1
    second = csmask.run_csmask(img, csmask.BANDS_6, "l1c", threads=1)
    assert dict(csmask._SESSIONS) == sessions  # the same session object, not a new one
    assert np.array_equal(first.classes, second.classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = CSmask(img.copy(), band_order=list(csmask.BANDS_6), product_level="l1c",
                     invalid_buffer=0, intra_op_num_threads=1, inter_op_num_threads=1,
                     providers=["CPUExecutionProvider"])  # fmt: skip
    assert np.array_equal(first.classes, ref.csm[:, :, 0])
    assert first.model_version == str(ref.model_version)


def test_concurrent_first_calls_build_one_session() -> None:
    from concurrent.futures import ThreadPoolExecutor

    csmask.clear_sessions()
    cube = np.full((64, 64, 4), 0.1, np.float32)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: csmask.run_csmask(cube, csmask.BANDS_4, "l2a", threads=1), range(4))
        )
    assert len(csmask._SESSIONS) == 1
    assert all(np.array_equal(r.classes, results[0].classes) for r in results)
