"""Text from tools and catalogues, reduced for drawing: one short plain line."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def plain(text: str, limit: int) -> str:
    """Short one-line text: no control characters, bounded length."""
    text = _CONTROL.sub(" ", str(text))
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text
