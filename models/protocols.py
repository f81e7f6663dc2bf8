"""What tools and agents need from a model, whatever runs it.

* :class:`Segmenter`: bands on one grid -> the pixels of a target class (and, for an index,
  the continuous score that was thresholded). Spectral indices, the ONNX cloud U-Nets and
  transformers folders implement it; each declares its :class:`ModelCard` (targets, bands,
  resolution) and which bands to read for the data at hand.
* :class:`Detector`: an 8-bit picture and a query -> boxes with labels and scores. The
  vision-language model over the chat client implements it (:mod:`models.vlm`).
* :class:`ChatClient`: one OpenAI-compatible chat completion, text (and images) in, text and
  token usage out (:mod:`models.chat`); the planner, the writer and the VLM share it.

Imports nothing heavy (numpy for array types only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from models.cards import ModelCard

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.floating]

# ---- segmentation --------------------------------------------------------------------------


@dataclass(frozen=True)
class BandInput:
    """Bands on one grid, as a segmenter reads them.

    ``bands``: common band name -> (rows, cols) float values after radiometric scaling, NaN
    at nodata. ``product_level`` is "l1c" (top of atmosphere) or "l2a" (surface) for
    calibrated satellite reflectance, None otherwise. ``description`` says how file values
    became these (for the method text).
    """

    bands: Mapping[str, FloatArray]
    valid: BoolArray
    gsd_m: float
    reflectance: bool
    product_level: str | None
    description: str

    def cube(self, order: Sequence[str]) -> NDArray[np.float32]:
        """(rows, cols, len(order)) float32 in the given band order."""
        return np.stack([self.bands[b] for b in order], axis=-1).astype(np.float32)


@dataclass
class Segmentation:
    """What a segmenter found for one target.

    ``classes`` holds the pixels of every class whose share is worth reporting (the target,
    and for a cloud mask both cloud and shadow), each inside ``valid``. A thresholded score
    (a spectral index) comes back as ``scores`` and ``threshold`` so the caller can measure
    the area's sensitivity to the threshold.
    """

    card: ModelCard  # the model that ran (a variant chosen from the data, when one was)
    target: str
    mask: BoolArray  # the target's pixels, inside ``valid``
    valid: BoolArray  # pixels the model could judge
    method: str  # how, for the evidence's method line
    short_method: str
    classes: dict[str, BoolArray] = field(default_factory=dict)
    scores: NDArray[np.float32] | None = None
    threshold: float | None = None
    notes: list[str] = field(default_factory=list)  # caveats about this run


class Segmenter(Protocol):
    """A model that maps target classes per pixel on a band stack."""

    @property
    def card(self) -> ModelCard: ...

    @property
    def purpose(self) -> str:
        """A few words for read errors and logs ("NDWI (water)", "cloud masking")."""
        ...

    def bands_for(self, available: set[str]) -> tuple[str, ...]:
        """The bands to read, in order; raises ModelInputError when the data lacks them."""
        ...

    def segment(
        self, data: BandInput, target: str, threshold: float | None = None
    ) -> Segmentation: ...


# ---- detection -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Picture8:
    """An 8-bit RGB picture as PNG bytes, with its size in pixels."""

    png: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Detection:
    """One box in pixels of the picture: (x0, y0, x1, y1), x to the right, y down."""

    label: str
    score: float | None
    box_px: tuple[float, float, float, float]


@dataclass
class Detections:
    """Boxes for one query plus what provenance and cost accounting need."""

    detections: list[Detection]
    model: str
    seconds: float
    answer_format: str = "unknown"
    dropped: int = 0  # boxes dropped as empty, outside the picture or repeated
    truncated: bool = False  # too many boxes; the rest were dropped
    notes: list[str] = field(default_factory=list)
    # Set when a remote model answered (a VLM endpoint).
    endpoint_host: str | None = None
    reported_model: str | None = None  # what the server says its model is (sanitised)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


class Detector(Protocol):
    """A model that finds objects named in text."""

    @property
    def name(self) -> str: ...

    def detect(self, picture: Picture8, query: str) -> Detections: ...


# ---- chat ----------------------------------------------------------------------------------

# OpenAI chat messages: {"role": ..., "content": str | [content parts]}.
ChatMessage = Mapping[str, Any]


@dataclass(frozen=True)
class ChatReply:
    text: str
    model: str  # the configured name
    seconds: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    reported_model: str | None = None  # what the server says (untrusted text)


class ChatClient(Protocol):
    """One OpenAI-compatible endpoint and model."""

    @property
    def model(self) -> str: ...

    @property
    def endpoint_host(self) -> str: ...

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        response_format: dict[str, Any] | None = None,
    ) -> ChatReply: ...
