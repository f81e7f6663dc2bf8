"""Cloud and cloud-shadow masks with the ONNX U-Nets of ``ukis-csmask`` (DLR, Apache-2.0).

The adapter fixes what the package leaves to the caller: which model variant runs for the
bands at hand, how nodata is kept out of the prediction, and how many threads inference
may use. It also holds the agreement measures (Cohen's kappa, F1 per class) used to check
the models against labelled patches.

Classes: 0 clear, 1 cloud, 2 cloud shadow (the package's own ids).
:class:`CSMaskSegmenter` runs them as a model (see models/protocols.py).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.cards import ModelCard, ModelInputError, ModelUnavailableError
from models.protocols import BandInput, Segmentation

CLEAR, CLOUD, SHADOW = 0, 1, 2
CLASS_NAMES: dict[int, str] = {CLEAR: "clear", CLOUD: "cloud", SHADOW: "cloud_shadow"}
BANDS_6: tuple[str, ...] = ("blue", "green", "red", "nir", "swir16", "swir22")
BANDS_4: tuple[str, ...] = ("blue", "green", "red", "nir")
PRODUCT_LEVELS = ("l1c", "l2a")
# The models were trained on imagery resampled to about 30 m (package documentation).
NATIVE_GSD_M = 30.0


class CSMaskUnavailable(ModelUnavailableError):
    """``ukis-csmask`` (with its onnxruntime extra) is not installed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "pip install 'ukis-csmask[cpu]==1.0.0'")


def variant_for(
    available: Sequence[str] | set[str], product_level: str
) -> tuple[str, tuple[str, ...]]:
    """Registry name and band order of the best variant for the bands available.

    The 6-band model (with SWIR) separates cloud from bright ground better; the 4-band model
    is the fallback. Raises ``ValueError`` when even blue, green, red and NIR are not there.
    """
    level = product_level.lower()
    if level not in PRODUCT_LEVELS:
        raise ValueError(f"product level must be one of {PRODUCT_LEVELS}, not {product_level!r}")
    have = set(available)
    if set(BANDS_6) <= have:
        return f"ukis-csmask-6b-{level}", BANDS_6
    if set(BANDS_4) <= have:
        return f"ukis-csmask-4b-{level}", BANDS_4
    missing = sorted(set(BANDS_4) - have)
    raise ValueError(f"cloud masking needs at least {list(BANDS_4)}; missing {missing}")


def default_threads() -> int:
    """CPU cores this process may use (cgroup/affinity aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class CloudMask:
    classes: NDArray[np.uint8]  # (rows, cols): 0 clear, 1 cloud, 2 shadow (0 where invalid)
    valid: NDArray[np.bool_]  # (rows, cols): True where the input had data
    model_name: str
    model_version: str
    model_file: str
    band_order: tuple[str, ...]

    def fraction(self, cls: int) -> float:
        """Share of valid pixels in a class (0..1); 0 when nothing is valid."""
        n = int(np.count_nonzero(self.valid))
        return float(np.count_nonzero((self.classes == cls) & self.valid)) / n if n else 0.0


# ---- the networks: one ONNX session per weights file, shared by every call ----------------

_SESSIONS: dict[tuple[str, int], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def _session(model_file: str, threads: int) -> Any:
    """The onnxruntime session of a weights file, built on first use and then reused.

    Building one costs 0.6-0.8 s (most of a small question), running it on a small area far
    less. ``InferenceSession.run`` may be called from several threads at once; building is
    done under a lock so that concurrent first calls make one session, not several.
    """
    key = (model_file, threads)
    session = _SESSIONS.get(key)
    if session is not None:
        return session
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            import onnxruntime

            so = onnxruntime.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                model_file, sess_options=so, providers=["CPUExecutionProvider"]
            )
            _SESSIONS[key] = session
    return session


def clear_sessions() -> None:
    """Drop the cached sessions (tests; freeing memory)."""
    with _SESSIONS_LOCK:
        _SESSIONS.clear()


@dataclass(frozen=True)
class _Net:
    """One ukis-csmask network: its weights file, metadata and cached session.

    ``predict`` is the package's own inference (``CSmask._csm`` in ukis-csmask 1.0.0):
    normalise with the training mean/std, cut 256 px tiles with 20% overlap, softmax per
    tile, blend the tiles back smoothly and take the argmax, done here so that the session
    is not rebuilt on every call (the package's ``CSmask`` builds one per instance).
    """

    model_file: str
    version: str
    band_names: tuple[str, ...]
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    tile: tuple[int, int]
    threads: int

    def predict(self, cube: NDArray[np.float32]) -> NDArray[np.uint8]:
        from scipy.special import softmax
        from ukis_csmask.utils import tile_array, untile_array

        session = _session(self.model_file, self.threads)
        input_name = session.get_inputs()[0].name
        # As the package does it (in place on float32): each step computed, then stored, in float32.
        img = (cube - self.mean).astype(np.float32)
        img = (img / self.std).astype(np.float32)
        tiles = np.moveaxis(
            tile_array(img, xsize=self.tile[0], ysize=self.tile[1], overlap=0.2), -1, 1
        )
        probs = np.concatenate(
            [
                softmax(session.run(None, {input_name: tiles[i : i + 1]})[0], axis=1)
                for i in range(len(tiles))
            ]
        )
        blended = untile_array(
            np.moveaxis(probs, 1, -1),
            (img.shape[0], img.shape[1], probs.shape[1]),
            overlap=0.2,
            smooth_blending=True,
        )
        return np.asarray(np.argmax(blended, axis=2), dtype=np.uint8)


_NETS: dict[tuple[str, bool, int], _Net] = {}


def _net(product_level: str, six_bands: bool, threads: int) -> _Net:
    """The network for a product level and band count (metadata read once)."""
    key = (product_level, six_bands, threads)
    net = _NETS.get(key)
    if net is not None:
        return net
    try:
        import onnxruntime  # noqa: F401
        import ukis_csmask
    except ImportError as exc:  # ukis_csmask raises ImportError without onnxruntime
        raise CSMaskUnavailable(
            "ukis-csmask is not installed; install it with: pip install 'ukis-csmask[cpu]==1.0.0'"
        ) from exc
    folder = Path(ukis_csmask.__file__).parent
    model_file = folder / f"model_{6 if six_bands else 4}b_{product_level}.onnx"
    meta = json.loads(model_file.with_suffix(".json").read_text(encoding="utf-8"))
    stats = meta["data"]["dataset_statistics"]
    net = _Net(
        model_file=str(model_file),
        version=str(meta["model"]["version"]),
        band_names=tuple(str(b).lower() for b in stats["band_names"]),
        mean=np.asarray(stats["img"][0], np.float64),
        std=np.asarray(stats["img"][1], np.float64),
        tile=(int(meta["data"]["target_size"][0]), int(meta["data"]["target_size"][1])),
        threads=threads,
    )
    _NETS[key] = net  # a race builds the same value twice: harmless
    return net


def run_csmask(
    reflectance: NDArray[np.floating],
    band_order: Sequence[str],
    product_level: str = "l1c",
    valid: NDArray[np.bool_] | None = None,
    threads: int | None = None,
) -> CloudMask:
    """Segment clouds and shadows in a reflectance cube (rows, cols, bands) in [0, 1].

    ``band_order`` names the bands of the cube by common name (blue, green, red, nir, swir16,
    swir22); extra bands are ignored. Pixels that are NaN or False in ``valid`` are nodata:
    they get a neutral fill (the band median) so they do not read as dark shadow to the
    network near their edges, and they come back as ``valid = False``.
    The ONNX session is built once per weights file and reused (see :func:`_session`).
    """
    if reflectance.ndim != 3:
        raise ValueError("reflectance must have shape (rows, cols, bands)")
    order = [b.lower() for b in band_order]
    if len(order) != reflectance.shape[2]:
        raise ValueError(f"{len(order)} band names for {reflectance.shape[2]} bands")
    name, needed = variant_for(order, product_level)
    cube = np.stack([reflectance[:, :, order.index(b)] for b in needed], axis=-1).astype(np.float32)
    net = _net(product_level.lower(), len(needed) == len(BANDS_6), threads or default_threads())
    if tuple(net.band_names) != needed:
        raise ValueError(f"{net.model_file} expects the bands {net.band_names}, not {needed}")
    ok = np.all(np.isfinite(cube), axis=-1)
    if valid is not None:
        ok &= valid.astype(bool)
    if not ok.any():
        raise ValueError("the image has no valid pixels")
    if not ok.all():
        medians = np.array([np.median(cube[:, :, i][ok]) for i in range(cube.shape[2])], np.float32)
        cube[~ok] = medians

    classes = net.predict(cube)
    classes[~ok] = CLEAR
    return CloudMask(
        classes=classes,
        valid=ok,
        model_name=name,
        model_version=net.version,
        model_file=net.model_file,
        band_order=needed,
    )


class CSMaskSegmenter:
    """The cloud / shadow U-Nets as a :class:`~models.protocols.Segmenter`.

    ``exact``: run this card's variant whatever the data's product level (with a note when
    they differ); otherwise the card stands for the family, and the variant is chosen from
    the bands at hand and the data's level (top of atmosphere or surface reflectance).
    ``card_of`` finds the card of the variant that ran (the registry's lookup).
    """

    purpose = "cloud masking"

    def __init__(
        self,
        card: ModelCard,
        card_of: Callable[[str], ModelCard],
        *,
        exact: bool = True,
        threads: int | None = None,
    ) -> None:
        self._card = card
        self.card_of = card_of
        self.exact = exact
        self.threads = threads

    @property
    def card(self) -> ModelCard:
        return self._card

    def bands_for(self, available: set[str]) -> tuple[str, ...]:
        try:
            _, order = variant_for(self._card.inputs if self.exact else available, "l1c")
        except ValueError as exc:
            raise ModelInputError(
                f"cloud masking needs the bands {', '.join(BANDS_4)} (and ideally swir16, swir22)",
                "use a Sentinel-2 or Landsat scene",
            ) from exc
        return order

    def segment(self, data: BandInput, target: str, threshold: float | None = None) -> Segmentation:
        if target not in ("cloud", "cloud_shadow"):
            raise ModelInputError(f"{self._card.name} maps cloud and cloud_shadow, not {target}")
        level = data.product_level
        if not data.reflectance or level is None:
            raise ModelInputError(
                "cloud masking needs calibrated satellite reflectance",
                "use a Sentinel-2 or Landsat scene",
            )
        notes: list[str] = []
        levels = self._card.product_levels
        if self.exact and levels and level not in levels:
            notes.append(f"{self._card.name} expects {levels[0]} data; this scene is {level}")
            level = levels[0]
        order = self.bands_for(set(data.bands))
        cm = run_csmask(data.cube(order), order, level, data.valid, self.threads)
        used = self.card_of(cm.model_name)
        valid = data.valid & cm.valid
        cloud = (cm.classes == CLOUD) & valid
        shadow = (cm.classes == SHADOW) & valid
        if threshold is not None:
            notes.append("the threshold argument applies to spectral indices only and was ignored")
        return Segmentation(
            card=used,
            target=target,
            mask=cloud if target == "cloud" else shadow,
            valid=valid,
            method=(
                f"{used.name} {used.version} (U-Net, classes clear/cloud/cloud shadow, argmax of "
                f"softmax) on {', '.join(order)} {level.upper()} reflectance resampled to "
                f"{data.gsd_m:.0f} m ({data.description})"
            ),
            short_method=f"{used.name} cloud/shadow U-Net",
            classes={"cloud": cloud, "cloud_shadow": shadow},
            notes=notes,
        )


# ---- agreement with labelled patches -------------------------------------------------------


def labels_from_patch_mask(msk: NDArray[np.integer]) -> NDArray[np.uint8]:
    """Map the labelled patches' codes (0 shadow, 1-3 clear, 4 cloud) to the model's ids."""
    m = np.asarray(msk)
    if m.ndim == 3:
        m = m[:, :, 0]
    out = np.full(m.shape, CLEAR, dtype=np.uint8)
    out[m == 0] = SHADOW
    out[m == 4] = CLOUD
    return out


def confusion_matrix(
    truth: NDArray[np.integer], pred: NDArray[np.integer], n_classes: int = 3
) -> NDArray[np.int64]:
    """Rows: reference class; columns: predicted class."""
    t = np.asarray(truth).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    if t.shape != p.shape:
        raise ValueError("truth and prediction differ in size")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def cohen_kappa(truth: NDArray[np.integer], pred: NDArray[np.integer], n_classes: int = 3) -> float:
    """Agreement beyond chance: (p_o - p_e) / (1 - p_e)."""
    cm = confusion_matrix(truth, pred, n_classes).astype(np.float64)
    n = cm.sum()
    if n == 0:
        raise ValueError("no pixels to compare")
    p_o = np.trace(cm) / n
    p_e = float((cm.sum(axis=0) * cm.sum(axis=1)).sum()) / n**2
    return 1.0 if p_e == 1.0 else float((p_o - p_e) / (1.0 - p_e))


def f1_per_class(
    truth: NDArray[np.integer], pred: NDArray[np.integer], n_classes: int = 3
) -> dict[str, float]:
    """F1 per class name; NaN for a class absent from both reference and prediction."""
    cm = confusion_matrix(truth, pred, n_classes).astype(np.float64)
    out: dict[str, float] = {}
    for i in range(n_classes):
        denom = cm[i, :].sum() + cm[:, i].sum()
        out[CLASS_NAMES.get(i, str(i))] = float(2 * cm[i, i] / denom) if denom else float("nan")
    return out
