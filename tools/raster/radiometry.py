"""Radiometry: how a product's file values become reflectance, per sensor and processing level.

:func:`radiometry_for` decides from the scene's collection, platform, product level, date and
data type; :func:`finalise_float` settles floating-point files once their values are read.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from tools.geo import SceneRef

# Sentinel-2 processing baseline 04.00 (from 25 January 2022) adds 1000 to every DN.
_S2_OFFSET_SINCE = dt.date(2022, 1, 25)

RadiometryKind = Literal["reflectance", "relative"]


@dataclass(frozen=True)
class Radiometry:
    """How file values become reflectance (``value * scale + offset``)."""

    name: str
    scale: float
    offset: float
    kind: RadiometryKind  # reflectance (usable by reflectance-trained models) or relative
    product_level: str | None  # "l1c" (top of atmosphere) or "l2a" (surface), for csmask
    zero_is_nodata: bool  # the product uses DN 0 as fill
    caveat: str | None = None

    def describe(self) -> str:
        if self.scale == 1.0 and self.offset == 0.0:
            return f"{self.name}: file values used as they are"
        offset = f" {'+' if self.offset >= 0 else '-'} {abs(self.offset):g}" if self.offset else ""
        return f"{self.name}: value * {self.scale:g}{offset}"


def _scene_text(scene: SceneRef) -> str:
    parts = [scene.collection, scene.platform, scene.id, scene.product_level, scene.title]
    return " ".join(p for p in parts if p).lower()


def _scene_date(scene: SceneRef) -> dt.date | None:
    if not scene.datetime:
        return None
    try:
        return dt.date.fromisoformat(scene.datetime[:10])
    except ValueError:
        return None


def radiometry_for(scene: SceneRef, dtype: str) -> Radiometry:
    """Reflectance scaling for a scene's product, from its collection/platform and data type."""
    text = _scene_text(scene)
    level = (scene.product_level or "").lower()
    if dtype == "uint8":
        return Radiometry(
            "8-bit imagery",
            1 / 255.0,
            0.0,
            "relative",
            None,
            zero_is_nodata=False,
            caveat="8-bit imagery (aerial or drone) is not calibrated reflectance: values are "
            "DN/255, so indices are normalized differences of brightness and thresholds are "
            "less reliable than on satellite reflectance",
        )
    if re.search(r"sentinel-?2|\bs2[ab]?\b|^s2", text):
        l2a = level == "l2a" or "l2a" in text
        date = _scene_date(scene)
        offset = -0.1 if date and date >= _S2_OFFSET_SINCE else 0.0
        if date is None:
            caveat = (
                "acquisition date unknown: Sentinel-2 DN/10000 assumed; scenes processed with "
                "baseline 04.00 or later (2022 on) would read about 0.1 too bright"
            )
        elif offset:
            caveat = "Sentinel-2 baseline 04.00+ offset applied: (DN - 1000) / 10000"
        else:
            caveat = None
        return Radiometry(
            f"Sentinel-2 {'L2A' if l2a else 'L1C'}",
            1e-4,
            offset,
            "reflectance",
            "l2a" if l2a else "l1c",
            zero_is_nodata=True,
            caveat=caveat,
        )
    if "landsat" in text or re.search(r"\blc0[89]\b|^lc0[89]", text):
        if level in {"l2", "l2a", "l2sp"} or re.search(r"c2-l2|\bl2sp\b", text):
            return Radiometry(
                "Landsat Collection 2 L2 surface reflectance",
                2.75e-5,
                -0.2,
                "reflectance",
                "l2a",
                zero_is_nodata=True,
            )
        return Radiometry(
            "Landsat 8/9 L1 top-of-atmosphere",
            2.0e-5,
            -0.1,
            "reflectance",
            "l1c",
            zero_is_nodata=True,
            caveat="Landsat L1 reflectance uses the standard USGS rescaling (DN * 2.0e-5 - 0.1) "
            "without the sun-elevation correction (the scene metadata is not read), so values "
            "run lower than true top-of-atmosphere reflectance",
        )
    if dtype.startswith("float"):
        # Decided after reading: reflectance when the values look like it (see finalise_float).
        return Radiometry("floating-point values", 1.0, 0.0, "relative", None, False)
    return Radiometry(
        f"uncalibrated {dtype} values",
        1.0,
        0.0,
        "relative",
        None,
        zero_is_nodata=False,
        caveat=f"unknown radiometric calibration ({dtype}): indices use raw values, which is "
        "fine for normalized differences only if the bands share one scale and no offset",
    )


def finalise_float(rad: Radiometry, arrays: Sequence[NDArray[np.float32]]) -> Radiometry:
    """The radiometry of a floating-point file once its values are read (others unchanged).

    Values between 0 and 1 are taken as reflectance; anything else stays uncalibrated.
    """
    if rad.name != "floating-point values":
        return rad
    finite = [a[np.isfinite(a)] for a in arrays]
    vals = np.concatenate(finite) if finite else np.empty(0, np.float32)
    if vals.size and float(np.percentile(vals, 99)) <= 1.5 and float(vals.min()) >= -0.5:
        return replace(
            rad,
            kind="reflectance",
            caveat="floating-point values between 0 and 1 were taken as reflectance",
        )
    return replace(
        rad,
        caveat="floating-point values outside 0..1: treated as uncalibrated; indices use raw values",
    )
