"""The tool catalogue: adding a tool is adding its module's SPEC here."""

from __future__ import annotations

from functools import lru_cache

from tools.base import ToolSpec


@lru_cache(maxsize=1)
def tool_specs() -> dict[str, ToolSpec]:
    from tools import coverage, geocode, ground, osm_overlay, segment, stac_search

    specs = [
        geocode.SPEC,
        stac_search.SPEC,
        segment.SPEC,
        ground.SPEC,
        osm_overlay.SPEC,
        coverage.SPEC,
    ]
    return {s.name: s for s in specs}
