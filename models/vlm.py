"""Visual grounding with a vision-language model (VLM): a :class:`Detector` over the chat client.

One call: a picture (PNG bytes) and a text query go out as one chat message through
:class:`models.chat.OpenAIChatClient` (the image as a base64 data URL); boxes come back as
text, which is parsed here. Servers such as vLLM, llama.cpp, Ollama or LM Studio serving
Qwen2.5-VL-class models speak this protocol.

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
:class:`ChatError` ("bad_output"); an explicit empty list means "nothing found".

This module imports nothing of the project (models/ is the bottom layer).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from models.chat import ChatError, OpenAIChatClient, user_message
from models.json_text import json_values
from models.protocols import ChatClient, Detection, Detections, Picture8

MAX_DETECTIONS = 500
MAX_LABEL_CHARS = 40


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
_BOX_KEYS = ("bbox_2d", "bbox", "box", "bounding_box", "box_2d_abs")
_LABEL_KEYS = ("label", "name", "class", "category", "object", "type")
_SCORE_KEYS = ("score", "confidence", "conf", "probability")
_LIST_KEYS = ("objects", "detections", "boxes", "results", "items", "annotations")


def _json_candidates(text: str) -> list[str]:
    """Text pieces that may hold JSON: fenced blocks first, else the whole answer."""
    blocks = [b.strip() for b in _FENCE.findall(text) if b.strip()]
    return blocks or [text.strip()]


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

    Raises ChatError("bad_output") when the answer holds no box structure at all.
    """
    if not isinstance(text, str) or not text.strip():
        raise ChatError("bad_output", "the vision model gave an empty answer")
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
            # Each JSON value in the piece: one for a well-formed answer; the complete items
            # of a list cut at the model's token limit; each list of an answer that has two.
            values = list(json_values(piece))
            groups = 0
            for value in values:
                items = _items(value)
                if items is None:
                    continue
                if _four_numbers(items) is not None:
                    items = [items]  # one bare box
                parsed_items = [p for p in (_parsed_item(i, default_label) for i in items) if p]
                if items and not parsed_items:
                    continue  # a list, but not of boxes (points, prose): not an answer
                found_structure = True
                groups += 1
                raw.extend(parsed_items)
            if groups and len(values) > 1:
                fmt = "json objects salvaged from malformed JSON"
            fmt = fmt or ("json boxes (pixels)" if groups else "")
        if not found_structure:
            raise ChatError(
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


class VLMDetector:
    """A :class:`~models.protocols.Detector`: one vision model behind a chat client."""

    def __init__(self, client: ChatClient, prompt_template: str, max_tokens: int = 2048) -> None:
        self.client = client
        self.prompt_template = prompt_template
        self.max_tokens = max_tokens

    @classmethod
    def at(
        cls,
        base_url: str,
        model: str,
        prompt_template: str,
        *,
        api_key: str = "not-needed",
        timeout_s: float = 120.0,
        max_retries: int = 0,
    ) -> VLMDetector:
        """A detector for a model at an OpenAI-compatible endpoint."""
        client = OpenAIChatClient(
            base_url, model, api_key=api_key, timeout_s=timeout_s, max_retries=max_retries
        )
        return cls(client, prompt_template)

    @property
    def name(self) -> str:
        return self.client.model

    def detect(self, picture: Picture8, query: str) -> Detections:
        """Ask the model for boxes and parse them. Raises ChatError on any failure."""
        w, h = picture.width, picture.height
        prompt = render_prompt(self.prompt_template, query, w, h)
        reply = self.client.complete(
            [user_message(prompt, picture.png)], max_tokens=self.max_tokens, temperature=0.0
        )
        dets, fmt, dropped, truncated = parse_detections(reply.text, w, h, query)
        answer = Detections(
            detections=dets,
            model=self.client.model,
            seconds=reply.seconds,
            answer_format=fmt,
            dropped=dropped,
            truncated=truncated,
            endpoint_host=self.client.endpoint_host,
            reported_model=sanitize_label(reply.reported_model, "") or None,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            finish_reason=reply.finish_reason,
        )
        if reply.finish_reason == "length":
            answer.notes.append(
                "the model's answer was cut at its token limit: some boxes may be missing"
            )
        return answer
