"""Semantic segmentation models saved with transformers' ``save_pretrained`` in a folder.

SegFormer-class models (``AutoModelForSemanticSegmentation``) on RGB in [0, 1], tile by tile.
torch and transformers are imported when a model is loaded, never on import of this module.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.cards import ModelCard, ModelInputError, ModelUnavailableError, label_key
from models.protocols import BandInput, Segmentation

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
RGB = ("red", "green", "blue")
# RGB models are trained on display-range pictures: reflectance 0.3 maps to white.
_REFLECTANCE_WHITE = 0.3


class TransformersModel:
    """A local ``AutoModelForSemanticSegmentation``: float RGB (rows, cols, 3) in [0, 1] ->
    class ids (rows, cols). Tiles of ``tile`` pixels bound memory; they do not overlap, so
    seams are possible on objects that cross tile edges."""

    def __init__(self, folder: str | Path, tile: int = 512) -> None:
        try:
            import torch
            from transformers import AutoModelForSemanticSegmentation
        except ImportError as exc:
            raise ModelUnavailableError(
                "running a transformers model needs torch and transformers",
                "pip install 'geoscout[torch]'",
            ) from exc
        path = Path(folder)
        self._torch: Any = torch
        self.model = AutoModelForSemanticSegmentation.from_pretrained(
            str(path), local_files_only=True
        )
        self.model.eval()
        self.labels: dict[int, str] = {
            int(k): label_key(v) for k, v in self.model.config.id2label.items()
        }
        mean, std = _IMAGENET_MEAN, _IMAGENET_STD
        pre = path / "preprocessor_config.json"
        if pre.is_file():
            cfg = json.loads(pre.read_text())
            if cfg.get("do_normalize", True):
                mean = tuple(cfg.get("image_mean", mean))
                std = tuple(cfg.get("image_std", std))
            else:
                mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self.mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
        self.std = np.asarray(std, np.float32).reshape(1, 1, 3)
        self.tile = tile

    def predict(self, rgb: NDArray[np.floating]) -> NDArray[np.int64]:
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError("rgb must have shape (rows, cols, 3)")
        torch = self._torch
        x = (np.nan_to_num(rgb.astype(np.float32)) - self.mean) / self.std
        rows, cols = x.shape[:2]
        out = np.zeros((rows, cols), dtype=np.int64)
        with torch.inference_mode():
            for r0 in range(0, rows, self.tile):
                for c0 in range(0, cols, self.tile):
                    part = x[r0 : r0 + self.tile, c0 : c0 + self.tile]
                    t = torch.from_numpy(np.ascontiguousarray(part.transpose(2, 0, 1)))[None]
                    logits = self.model(pixel_values=t).logits
                    up = torch.nn.functional.interpolate(
                        logits, size=part.shape[:2], mode="bilinear", align_corners=False
                    )
                    rows_p, cols_p = part.shape[:2]
                    out[r0 : r0 + rows_p, c0 : c0 + cols_p] = up.argmax(dim=1)[0].numpy()
        return out


@lru_cache(maxsize=2)
def _model(folder: str, mtime_ns: int) -> TransformersModel:
    return TransformersModel(folder)


def load_model(card: ModelCard) -> TransformersModel:
    """Load (and keep the two most recent) local transformers models."""
    if card.kind != "transformers" or not card.weights_path:
        raise ValueError(f"{card.name} is not a local transformers model")
    cfg = Path(card.weights_path) / "config.json"
    if not cfg.is_file():
        raise ModelUnavailableError(f"the model folder {card.weights_path} is gone")
    return _model(card.weights_path, cfg.stat().st_mtime_ns)


class TransformersSegmenter:
    """A local transformers folder as a :class:`~models.protocols.Segmenter` (RGB input)."""

    def __init__(self, card: ModelCard) -> None:
        self._card = card

    @property
    def card(self) -> ModelCard:
        return self._card

    @property
    def purpose(self) -> str:
        return f"model {self._card.name}"

    def bands_for(self, available: set[str]) -> tuple[str, ...]:
        return RGB

    def segment(self, data: BandInput, target: str, threshold: float | None = None) -> Segmentation:
        card = self._card
        model = load_model(card)
        label_id = next((i for i, lab in model.labels.items() if lab == target), None)
        if label_id is None:
            raise ModelInputError(
                f"model {card.name} has no class {target!r}",
                f"its classes: {', '.join(model.labels.values())}",
            )
        rgb = data.cube(RGB)
        notes: list[str] = []
        if data.reflectance:
            rgb = np.clip(rgb / _REFLECTANCE_WHITE, 0.0, 1.0)
            notes.append(
                "reflectance was stretched to a display range (0-0.3 -> 0-1) for an RGB model"
            )
        pred = model.predict(np.nan_to_num(rgb))
        mask = (pred == label_id) & data.valid
        notes.append(f"{card.name} is a local model with unknown validation on this imagery")
        return Segmentation(
            card=card,
            target=target,
            mask=mask,
            valid=data.valid,
            method=f"{card.name} ({card.source}): argmax class {label_id} '{target}' per pixel",
            short_method=card.name,
            classes={target: mask},
            notes=notes,
        )
