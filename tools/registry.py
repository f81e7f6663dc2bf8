"""The tool catalogue: adding a tool is adding its name and module here (the module's SPEC).

The catalogue imports a tool's module when its spec is first used, not when the catalogue is
made: a refused question, or one that needs two tools, does not load the heavy libraries of
the others (geopandas, rasterio, model runtimes).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from tools.base import ToolSpec

# Tool name -> the module that defines its SPEC, in catalogue order (the LLM planner's
# prompt lists the tools in this order).
TOOL_MODULES: dict[str, str] = {
    "geocode": "tools.geocode.tool",
    "stac_search": "tools.stac.tool",
    "segment": "tools.segment",
    "ground": "tools.ground",
    "osm_overlay": "tools.osm.tool",
    "coverage": "tools.coverage",
}


class Catalogue(Mapping[str, ToolSpec]):
    """Tool name -> ToolSpec; a tool's module is imported on the first lookup of its spec."""

    def __getitem__(self, name: str) -> ToolSpec:
        return _spec(name)

    def __iter__(self) -> Iterator[str]:
        return iter(TOOL_MODULES)

    def __len__(self) -> int:
        return len(TOOL_MODULES)

    def __contains__(self, name: object) -> bool:
        return name in TOOL_MODULES


def _spec(name: str) -> ToolSpec:
    module = TOOL_MODULES[name]  # KeyError for an unknown tool, as a dict would
    spec: ToolSpec = importlib.import_module(module).SPEC
    if spec.name != name:
        raise RuntimeError(f"{module}.SPEC is named {spec.name!r}, registered as {name!r}")
    return spec


CATALOGUE = Catalogue()


def tool_specs() -> dict[str, ToolSpec]:
    """Every spec, each module imported (what lists or validates all of them needs)."""
    return dict(CATALOGUE)
