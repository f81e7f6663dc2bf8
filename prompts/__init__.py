"""Prompt templates as files (Markdown). A leading HTML comment documents the template and
is removed before use; ``$name`` placeholders are filled with :class:`string.Template`."""

from __future__ import annotations

import importlib.resources
import re
from string import Template


def load_prompt(name: str, **values: str) -> str:
    """The prompt ``name``.md without its comment, with ``$placeholders`` substituted."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"bad prompt name {name!r}")
    text = importlib.resources.files(__name__).joinpath(f"{name}.md").read_text("utf-8")
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S).strip()
    return Template(text).substitute(values) if values else text
