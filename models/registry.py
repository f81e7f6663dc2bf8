"""Model registry: what each model does, what it needs, where it comes from, under which license.

In the style of torchgeo's ``list_models`` / ``get_weight``: one :class:`ModelCard` per
model, tests parametrised over every entry. Built-in entries:

* ``ndwi``, ``ndvi``: spectral indices (no weights; see :mod:`models.spectral`);
* ``ukis-csmask-{4b,6b}-{l1c,l2a}``: the ONNX cloud / shadow U-Nets shipped inside the
  installed ``ukis-csmask`` package (found in its folder; versions from its JSON files);
* ``transformers-local`` entries: semantic segmentation models (SegFormer-class) in local
  folders. They are registered only when the caller passes ``local_models`` (name -> folder);
  this module never reads settings.

Weight hashes are computed lazily (on first access of ``weights_sha256``) and cached per
file path, size and modification time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
from collections.abc import Mapping
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, computed_field

from models import csmask as _csmask
from models.spectral import INDICES

TaskKind = Literal["segmentation", "detection", "vlm", "llm"]
AdapterKind = Literal["spectral_index", "onnx", "transformers"]
LocalModels = Mapping[str, str | Path]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".pth", ".gguf")


class UnknownModelError(KeyError):
    """No model of that name is registered here."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown model {self.name!r}; known: {', '.join(self.known) or 'none'}"


class ModelUnavailableError(RuntimeError):
    """The model is registered but cannot run here (a package or a file is missing)."""


class ModelCard(BaseModel):
    """What a model is, what it needs and where it comes from."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    task: TaskKind
    kind: AdapterKind = Field(description="Which adapter runs it")
    targets: list[str] = Field(description="Classes it can map, e.g. ['water']")
    license: str
    source: str = Field(description="Where it comes from: package, paper, folder")
    inputs: list[str] = Field(description="Common band names it reads, in order")
    weights_path: str | None = None
    reference: str | None = None
    notes: str = ""
    limitations: list[str] = Field(default_factory=list)
    default_threshold: float | None = None
    product_levels: list[str] = Field(
        default_factory=list, description="Radiometric levels it expects (l1c: TOA, l2a: surface)"
    )
    native_gsd_m: float | None = Field(default=None, description="Resolution it was trained at")

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def weights_sha256(self) -> str | None:
        """sha256 of the weights (computed on first access, cached per file)."""
        return weights_sha256(self.weights_path) if self.weights_path else None

    def provenance(self) -> dict[str, Any]:
        """The model part of an evidence item's provenance."""
        return {
            "name": self.name,
            "version": self.version,
            "license": self.license,
            "source": self.source,
            "reference": self.reference,
            "weights_sha256": self.weights_sha256,
        }


# ---- hashing -------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the cache key so a replaced file is hashed again.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha_of(path: Path) -> str:
    st = path.stat()
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


def weights_sha256(path: str | Path) -> str | None:
    """sha256 of a weights file; for a folder, of its only weights file, or of the sorted
    ``"<name> <sha256>"`` lines when it holds several. None when nothing is there."""
    p = Path(path)
    if p.is_file():
        return _sha_of(p)
    if not p.is_dir():
        return None
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in _WEIGHT_SUFFIXES)
    if not files:
        return None
    if len(files) == 1:
        return _sha_of(files[0])
    lines = "".join(f"{f.relative_to(p).as_posix()} {_sha_of(f)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


# ---- built-in entries ----------------------------------------------------------------------


def _spectral_cards() -> list[ModelCard]:
    cards = []
    for spec in INDICES.values():
        cards.append(
            ModelCard(
                name=spec.name,
                version="1",
                task="segmentation",
                kind="spectral_index",
                targets=[spec.target],
                license="none needed (published formula, no weights)",
                source="models.spectral (numpy)",
                inputs=list(spec.bands),
                reference=spec.reference,
                notes=f"{spec.formula()}; {spec.threshold_note}. Area uncertainty from the "
                "area change at threshold +/- 0.05.",
                default_threshold=spec.default_threshold,
                product_levels=["l1c", "l2a", "dn"],
                limitations=_SPECTRAL_LIMITS[spec.name],
            )
        )
    return cards


_SPECTRAL_LIMITS: dict[str, list[str]] = {
    "ndwi": [
        "cloud shadows, dark roofs and asphalt can read as water; clouds hide water",
        "water bodies narrower than about two pixels are missed or mixed with land",
        "turbid, shallow or vegetated water can fall below the threshold",
    ],
    "ndvi": [
        "does not tell crops, grass and trees apart",
        "sparse, dry or senescent vegetation falls below the threshold",
        "values from top-of-atmosphere reflectance run lower than from surface reflectance",
    ],
}


def _csmask_folder() -> Path | None:
    spec = importlib.util.find_spec("ukis_csmask")  # no import: it would load onnxruntime
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _csmask_cards() -> list[ModelCard]:
    folder = _csmask_folder()
    if folder is None:
        return []
    try:
        pkg_version = importlib.metadata.version("ukis-csmask")
    except importlib.metadata.PackageNotFoundError:
        pkg_version = "unknown"
    cards = []
    for meta_path in sorted(folder.glob("model_*b_*.json")):
        onnx_path = meta_path.with_suffix(".onnx")
        m = re.fullmatch(r"model_(\d)b_(l1c|l2a)", meta_path.stem)
        if m is None or not onnx_path.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        model = meta.get("model", {})
        bands = list(meta["data"]["dataset_statistics"]["band_names"])
        level = m[2]
        cards.append(
            ModelCard(
                name=f"ukis-csmask-{m[1]}b-{level}",
                version=str(model.get("version", pkg_version)),
                task="segmentation",
                kind="onnx",
                targets=["cloud", "cloud_shadow"],
                license="Apache-2.0",
                source=f"ukis-csmask {pkg_version} (PyPI; DLR, github.com/dlr-eoc/ukis-csmask)",
                inputs=bands,
                weights_path=str(onnx_path),
                reference="Wieland, Li, Martinis 2019, doi:10.1016/j.rse.2019.05.022",
                notes=(
                    f"{model.get('decoder_name', 'unet')} with {model.get('encoder_name', '?')} "
                    f"encoder; classes clear / cloud / cloud shadow; "
                    f"{'top-of-atmosphere' if level == 'l1c' else 'surface'} reflectance in [0, 1]."
                ),
                limitations=[
                    "trained on Sentinel-2 and Landsat imagery at about 30 m; finer imagery is "
                    "resampled to 30 m first",
                    "thin cirrus and haze are often labelled cloud; dark forest and water can be "
                    "labelled cloud shadow",
                    "snow and bright sand can be confused with cloud",
                ],
                product_levels=[level],
                native_gsd_m=_csmask.NATIVE_GSD_M,
            )
        )
    return cards


@lru_cache(maxsize=1)
def _builtin_cards() -> dict[str, ModelCard]:
    cards = _spectral_cards() + _csmask_cards()
    return {c.name: c for c in cards}


# ---- transformers models in local folders --------------------------------------------------


def _license_from_readme(folder: Path) -> str | None:
    """The ``license:`` of a Hugging Face model card's YAML front matter, if any."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(errors="replace")
    m = re.match(r"---\s*\n(.*?)\n---", text, flags=re.S)
    if not m:
        return None
    lic = re.search(r"^license:\s*['\"]?([^'\"\n]+)", m[1], flags=re.M)
    return lic[1].strip() if lic else None


def transformers_local_card(name: str, folder: str | Path) -> ModelCard:
    """Card for a semantic segmentation model saved with ``save_pretrained`` in a folder.

    Reads ``config.json`` only (no torch import). Raises ``ValueError`` when the folder is
    not a transformers semantic segmentation model.
    """
    path = Path(folder).expanduser()
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{path} has no config.json: not a transformers model folder")
    config = json.loads(config_path.read_text())
    archs = [a for a in config.get("architectures") or [] if a.endswith("ForSemanticSegmentation")]
    if not archs:
        raise ValueError(
            f"{path} holds a {config.get('model_type', 'unknown')} model without a semantic "
            "segmentation head (architectures should end in ForSemanticSegmentation)"
        )
    id2label = config.get("id2label") or {}
    labels = [_label_key(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))]
    return ModelCard(
        name=name,
        version=str(config.get("model_version") or "local"),
        task="segmentation",
        kind="transformers",
        targets=labels,
        license=_license_from_readme(path) or "unknown (not stated in the model folder)",
        source=f"local folder {path} ({archs[0]}, transformers {config.get('transformers_version', '?')})",
        inputs=["red", "green", "blue"],
        weights_path=str(path),
        notes="RGB in [0, 1], normalised with the folder's preprocessor mean/std "
        "(ImageNet's when absent); logits upsampled to the input size, argmax per pixel.",
        limitations=["quality depends on the model's training data; check its model card"],
    )


def _label_key(label: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(label).strip().lower())


def _local_cards(local_models: LocalModels | None) -> dict[str, ModelCard]:
    out: dict[str, ModelCard] = {}
    for name, folder in (local_models or {}).items():
        out[name] = transformers_local_card(name, folder)
    return out


# ---- public API ----------------------------------------------------------------------------


def list_models(
    task: TaskKind | None = None, local_models: LocalModels | None = None
) -> list[ModelCard]:
    """All registered cards (built-in, then local transformers folders), optionally by task."""
    cards = list(_builtin_cards().values()) + list(_local_cards(local_models).values())
    return [c for c in cards if task is None or c.task == task]


def get_model_card(name: str, local_models: LocalModels | None = None) -> ModelCard:
    """The card of a model by exact name; raises :class:`UnknownModelError` with known names."""
    builtin = _builtin_cards()
    if name in builtin:
        return builtin[name]
    if local_models and name in local_models:
        return transformers_local_card(name, local_models[name])
    known = list(builtin) + list(local_models or {})
    raise UnknownModelError(name, known)


def models_for_target(target: str, local_models: LocalModels | None = None) -> list[ModelCard]:
    return [c for c in list_models("segmentation", local_models) if target in c.targets]


# ---- transformers adapter ------------------------------------------------------------------

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class TransformersSegmenter:
    """Runs a local ``AutoModelForSemanticSegmentation`` on an RGB array, tile by tile.

    Input: float (rows, cols, 3) in [0, 1]. Output: class ids (rows, cols). Tiles of
    ``tile`` pixels bound memory; they do not overlap, so seams are possible on objects
    that cross tile edges.
    """

    def __init__(self, folder: str | Path, tile: int = 512) -> None:
        try:
            import torch
            from transformers import AutoModelForSemanticSegmentation
        except ImportError as exc:
            raise ModelUnavailableError(
                "running a transformers model needs torch and transformers: "
                "pip install 'geoscout[torch]'"
            ) from exc
        path = Path(folder)
        self._torch = torch
        self.model = AutoModelForSemanticSegmentation.from_pretrained(
            str(path), local_files_only=True
        )
        self.model.eval()
        self.labels: dict[int, str] = {
            int(k): _label_key(v) for k, v in self.model.config.id2label.items()
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
                    out[r0 : r0 + part.shape[0], c0 : c0 + part.shape[1]] = up.argmax(dim=1)[
                        0
                    ].numpy()
        return out


@lru_cache(maxsize=2)
def _segmenter(folder: str, mtime_ns: int) -> TransformersSegmenter:
    return TransformersSegmenter(folder)


def load_transformers_segmenter(card: ModelCard) -> TransformersSegmenter:
    """Load (and keep the two most recent) local transformers models."""
    if card.kind != "transformers" or not card.weights_path:
        raise ValueError(f"{card.name} is not a local transformers model")
    cfg = Path(card.weights_path) / "config.json"
    if not cfg.is_file():
        raise ModelUnavailableError(f"the model folder {card.weights_path} is gone")
    return _segmenter(card.weights_path, cfg.stat().st_mtime_ns)
