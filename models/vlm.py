"""OpenAI-compatible vision-language model (VLM) client for visual grounding.

One call: an image (PNG bytes) and a text query go out as a chat message (the image as a
base64 data URL); boxes come back as text, which is parsed here. Servers such as vLLM,
llama.cpp, Ollama or LM Studio serving Qwen2.5-VL-class models speak this protocol.

The answer is untrusted text: only numbers and short plain labels are kept from it. Formats
read (the common ones of grounding VLMs):

* Qwen2.5-VL JSON: ``[{"bbox_2d": [x1, y1, x2, y2], "label": "ship"}]`` in absolute pixels of
  the image sent, bare or in a fenced ```json block, or wrapped as ``{"objects": [...]}``
  (also ``detections``/``boxes``/``results``); keys ``bbox``/``box``/``bounding_box`` are read
  like ``bbox_2d``; an optional ``score``/``confidence`` is kept.
* Qwen2-VL box tokens: ``<|object_ref_start|>ship<|object_ref_end|><|box_start|>(x1,y1),
  (x2,y2)<|box_end|>``, coordinates normalised to 0..1000.
* A box whose four numbers all lie in 0..1 is taken as normalised to the image size.

Boxes are clipped to the image; empty boxes and exact repeats (a known failure mode of
VLMs that loop) are dropped. Text that holds no readable boxes raises
:class:`VLMError` ("bad_output"); an explicit empty list means "nothing found".

This module imports nothing of the project (models/ is the bottom layer).
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

VLMErrorKind = Literal["unreachable", "timeout", "auth", "rejected", "server", "bad_output"]

MAX_DETECTIONS = 500
MAX_LABEL_CHARS = 40


class VLMError(Exception):
    """A failed VLM call, with a kind the caller maps to its own error codes."""

    def __init__(self, kind: VLMErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: VLMErrorKind = kind
        self.message = message


@dataclass(frozen=True)
class Detection:
    """One box in pixels of the image sent: (x0, y0, x1, y1), x to the right, y down."""

    label: str
    score: float | None
    box_px: tuple[float, float, float, float]


@dataclass
class GroundingAnswer:
    """Parsed detections plus what provenance and cost accounting need."""

    detections: list[Detection]
    model: str
    endpoint_host: str
    seconds: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    answer_format: str = "unknown"
    # What the server says its model is: data, sanitised; ``model`` is the configured name.
    reported_model: str | None = None
    dropped: int = 0  # boxes dropped as empty, outside the image or repeated
    truncated: bool = False  # more than MAX_DETECTIONS boxes; the rest were dropped
    finish_reason: str | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- parsing


def sanitize_label(text: Any, default: str) -> str:
    """A short plain-text label: letters, digits, spaces, hyphens; lower case."""
    if not isinstance(text, str):
        return default
    t = unicodedata.normalize("NFKC", text)
    t = re.sub(r"[^\w\s\-]", " ", t, flags=re.UNICODE).replace("_", " ")
    t = " ".join(t.split()).lower()[:MAX_LABEL_CHARS].strip()
    return t or default


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)(?:```|$)", re.S)
_BOX_TOKENS = re.compile(
    r"(?:<\|object_ref_start\|>(?P<label>[^<]{0,200})<\|object_ref_end\|>\s*)?"
    r"<\|box_start\|>\s*\(\s*(?P<x1>[-\d.]+)\s*,\s*(?P<y1>[-\d.]+)\s*\)\s*,?\s*"
    r"\(\s*(?P<x2>[-\d.]+)\s*,\s*(?P<y2>[-\d.]+)\s*\)\s*<\|box_end\|>"
)
_FLAT_OBJECT = re.compile(r"\{[^{}]*\}")
_BOX_KEYS = ("bbox_2d", "bbox", "box", "bounding_box", "box_2d_abs")
_LABEL_KEYS = ("label", "name", "class", "category", "object", "type")
_SCORE_KEYS = ("score", "confidence", "conf", "probability")
_LIST_KEYS = ("objects", "detections", "boxes", "results", "items", "annotations")


def _json_candidates(text: str) -> list[str]:
    """Text pieces that may hold JSON: fenced blocks first, else the whole answer."""
    blocks = [b.strip() for b in _FENCE.findall(text) if b.strip()]
    return blocks or [text.strip()]


def _loads_lenient(piece: str) -> Any:
    """json.loads, then the outermost [...] or {...}, then None."""
    try:
        return json.loads(piece)
    except ValueError:
        pass
    for open_, close in (("[", "]"), ("{", "}")):
        start, end = piece.find(open_), piece.rfind(close)
        if 0 <= start < end:
            try:
                return json.loads(piece[start : end + 1])
            except ValueError:
                continue
    return None


def _items(data: Any) -> list[Any] | None:
    """The list of box items in a parsed answer, or None when it is not a box answer."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in _LIST_KEYS:
            if isinstance(data.get(key), list):
                return list(data[key])
        if any(k in data for k in _BOX_KEYS):
            return [data]
    return None


def _four_numbers(value: Any) -> list[float] | None:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]  # [[x1, y1, x2, y2]]
    if isinstance(value, dict):
        keys = ("x1", "y1", "x2", "y2")
        alt = ("xmin", "ymin", "xmax", "ymax")
        value = [value.get(k, value.get(a)) for k, a in zip(keys, alt, strict=True)]
    if not (isinstance(value, list | tuple) and len(value) == 4):
        return None
    try:
        nums = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return nums if all(math.isfinite(n) for n in nums) else None


def _parsed_item(item: Any, default_label: str) -> tuple[list[float], str, float | None] | None:
    if isinstance(item, list):  # a bare [x1, y1, x2, y2]
        nums = _four_numbers(item)
        return (nums, default_label, None) if nums else None
    if not isinstance(item, dict):
        return None
    nums = None
    for key in _BOX_KEYS:
        if key in item:
            nums = _four_numbers(item[key])
            break
    if nums is None and all(k in item for k in ("x1", "y1", "x2", "y2")):
        nums = _four_numbers(item)
    if nums is None:
        return None
    label = next((item[k] for k in _LABEL_KEYS if isinstance(item.get(k), str)), None)
    score: float | None = None
    for key in _SCORE_KEYS:
        raw = item.get(key)
        if isinstance(raw, int | float) and math.isfinite(raw) and not isinstance(raw, bool):
            score = float(raw) / 100.0 if 1.0 < raw <= 100.0 else float(raw)
            score = score if 0.0 <= score <= 1.0 else None
            break
    return nums, sanitize_label(label, default_label), score


def parse_detections(
    text: str, width: int, height: int, default_label: str = "object"
) -> tuple[list[Detection], str, int, bool]:
    """Boxes from a VLM answer: (detections, format name, dropped count, truncated).

    Raises VLMError("bad_output") when the answer holds no box structure at all.
    """
    if not isinstance(text, str) or not text.strip():
        raise VLMError("bad_output", "the vision model gave an empty answer")
    default_label = sanitize_label(default_label, "object")
    raw: list[tuple[list[float], str, float | None]] = []
    fmt = ""
    normalised_1000 = False

    tokens = list(_BOX_TOKENS.finditer(text))
    if tokens:
        fmt, normalised_1000 = "qwen2-vl box tokens (0..1000)", True
        for m in tokens:
            try:
                nums = [float(m[k]) for k in ("x1", "y1", "x2", "y2")]
            except ValueError:
                continue
            raw.append((nums, sanitize_label(m["label"], default_label), None))
    else:
        found_structure = False
        for piece in _json_candidates(text):
            items = _items(_loads_lenient(piece))
            if items is None:
                # Truncated or malformed JSON (the model hit its token limit): salvage the
                # complete flat objects that carry a box.
                salvaged = [_loads_lenient(o) for o in _FLAT_OBJECT.findall(piece)]
                items = [o for o in salvaged if isinstance(o, dict) and _parsed_item(o, "x")]
                if not items:
                    continue
                fmt = "json objects salvaged from malformed JSON"
            if _four_numbers(items) is not None:
                items = [items]  # one bare box
            parsed_items = [p for p in (_parsed_item(i, default_label) for i in items) if p]
            if items and not parsed_items:
                continue  # a list, but not of boxes (points, prose): not an answer
            found_structure = True
            raw.extend(parsed_items)
            fmt = fmt or "json boxes (pixels)"
        if not found_structure:
            raise VLMError(
                "bad_output",
                "the vision model's answer holds no boxes GeoScout can read "
                '(expected JSON like [{"bbox_2d": [x1, y1, x2, y2], "label": ...}])',
            )

    detections: list[Detection] = []
    seen: set[tuple[int, int, int, int, str]] = set()
    dropped = 0
    for nums, label, score in raw:
        x0, y0, x1, y1 = nums
        if normalised_1000:
            x0, x1 = x0 * width / 1000.0, x1 * width / 1000.0
            y0, y1 = y0 * height / 1000.0, y1 * height / 1000.0
        elif max(abs(v) for v in nums) <= 1.0 and width > 2 and height > 2:
            x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        x0, x1 = min(max(x0, 0.0), float(width)), min(max(x1, 0.0), float(width))
        y0, y1 = min(max(y0, 0.0), float(height)), min(max(y1, 0.0), float(height))
        key = (round(x0), round(y0), round(x1), round(y1), label)
        if x1 - x0 <= 0 or y1 - y0 <= 0 or key in seen:
            dropped += 1
            continue
        seen.add(key)
        detections.append(Detection(label=label, score=score, box_px=(x0, y0, x1, y1)))
    truncated = len(detections) > MAX_DETECTIONS
    return detections[:MAX_DETECTIONS], fmt, dropped, truncated


# --------------------------------------------------------------------------- the client


def render_prompt(template: str, query: str, width: int, height: int) -> str:
    """Fill {query}, {width}, {height} (plain replacement: the template holds JSON braces)."""
    return (
        template.replace("{query}", query)
        .replace("{width}", str(width))
        .replace("{height}", str(height))
    )


class VLMClient:
    """A grounding client for one OpenAI-compatible endpoint and model."""

    def __init__(
        self,
        base_url: str,
        model: str,
        prompt_template: str,
        *,
        api_key: str = "not-needed",
        timeout_s: float = 120.0,
        max_retries: int = 0,
        max_tokens: int = 2048,
    ) -> None:
        """``timeout_s`` bounds one call (the whole exchange, connection to last byte);
        ``max_retries`` is the openai client's own retry count, 0 by default: callers retry
        through their one retry policy (tools/access.py), within their deadline."""
        from openai import OpenAI

        self.base_url = base_url
        self.model = model
        self.prompt_template = prompt_template
        self.max_tokens = max_tokens
        self.endpoint_host = urlsplit(base_url).netloc or base_url
        self._client = OpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            timeout=timeout_s,
            max_retries=max_retries,
        )

    def detect(self, image_png: bytes, query: str, width: int, height: int) -> list[Detection]:
        """Boxes (pixels of the image sent) for ``query``; see :meth:`ground` for details."""
        return self.ground(image_png, query, width, height).detections

    def ground(self, image_png: bytes, query: str, width: int, height: int) -> GroundingAnswer:
        """Ask the model for boxes and parse them. Raises VLMError on any failure."""
        prompt = render_prompt(self.prompt_template, query, width, height)
        data_url = "data:image/png;base64," + base64.b64encode(image_png).decode("ascii")
        messages: Any = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": data_url}},
                    {"type": "text", "text": prompt},
                ],
            }
        ]
        t0 = time.perf_counter()
        try:
            resp = self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=0.0, max_tokens=self.max_tokens
            )
        except Exception as exc:
            raise _vlm_error(exc, self.endpoint_host, self.model) from exc
        seconds = time.perf_counter() - t0
        try:
            choice = resp.choices[0]
            text = choice.message.content or ""
            finish = choice.finish_reason
        except (AttributeError, IndexError, TypeError) as exc:
            raise VLMError(
                "bad_output", f"the vision model at {self.endpoint_host} sent no answer"
            ) from exc
        dets, fmt, dropped, truncated = parse_detections(text, width, height, query)
        usage = getattr(resp, "usage", None)
        reported = getattr(resp, "model", None)
        answer = GroundingAnswer(
            detections=dets,
            model=self.model,
            reported_model=sanitize_label(reported, "") or None,
            endpoint_host=self.endpoint_host,
            seconds=seconds,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            answer_format=fmt,
            dropped=dropped,
            truncated=truncated,
            finish_reason=str(finish) if finish else None,
        )
        if finish == "length":
            answer.notes.append(
                "the model's answer was cut at its token limit: some boxes may be missing"
            )
        return answer


def _vlm_error(exc: Exception, host: str, model: str) -> VLMError:
    """Map openai exceptions to kinds, without echoing the server's text (untrusted)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return VLMError("timeout", f"the vision model at {host} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return VLMError("unreachable", f"the vision model server at {host} could not be reached")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return VLMError("auth", f"the vision model server at {host} refused the API key")
    if isinstance(exc, openai.NotFoundError):
        return VLMError("rejected", f"the server at {host} does not serve the model {model!r}")
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return VLMError(
            "rejected",
            f"the server at {host} rejected the request for {model!r} (does it accept images?)",
        )
    if isinstance(exc, openai.APIStatusError):
        return VLMError(
            "server", f"the vision model server at {host} failed (HTTP {exc.status_code})"
        )
    return VLMError(
        "server", f"the call to the vision model at {host} failed ({type(exc).__name__})"
    )
