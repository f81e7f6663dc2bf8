"""Packages whose public names are imported on first use (PEP 562).

A package re-exports its modules' public names so callers write ``from tools.raster import
read_bands``; importing the package must still not import every part (a refused question
reads the gazetteer, not shapely and pyproj).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: name -> the submodule (``where[name]``)
    that defines it, imported when the name is first read."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__
