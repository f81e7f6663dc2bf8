"""Model cards: what a model does, what it reads, where it comes from, under which license.

Kept apart from :mod:`models.registry` so that the adapters (spectral indices, the ONNX cloud
U-Nets, transformers folders) can name the card they run without importing the registry,
which imports them. Imports nothing heavy: pydantic and the standard library.
"""

from __future__ import annotations

import hashlib
import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

TaskKind = Literal["segmentation", "detection", "vlm", "llm"]
AdapterKind = Literal["spectral_index", "onnx", "transformers"]

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

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ModelInputError(ValueError):
    """The data cannot go into this model (bands missing, not calibrated reflectance).

    ``message`` says what the model needs; the caller adds what the data has.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


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
    builtin: bool = Field(default=True, description="Shipped with GeoScout or its packages")
    cloud_screen: bool = Field(
        default=False,
        description="Clouds and their shadows read as (or hide) its targets: screen them first",
    )

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def weights_sha256(self) -> str | None:
        """sha256 of the weights (computed on first access, cached per file)."""
        return weights_sha256(self.weights_path) if self.weights_path else None

    def needs_reflectance(self) -> bool:
        """Whether it only makes sense on calibrated satellite reflectance (no 'dn' level)."""
        return bool(self.product_levels) and "dn" not in self.product_levels


def label_key(label: Any) -> str:
    """A class label as a target name: ``"Open Water"`` -> ``"open_water"``."""
    return re.sub(r"[\s\-]+", "_", str(label).strip().lower())


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
