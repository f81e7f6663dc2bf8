"""The arguments of ``stac_search``: liberal in (strings, loose platform words), strict out."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.geo import AOI, DateRange

# Loose platform words -> a canonical family (see tools.stac.rank for what each accepts).
_PLATFORM_ALIASES: dict[str, tuple[str, ...]] = {
    "sentinel-2": ("sentinel-2", "sentinel2", "s2", "s-2", "msi", "sentinel-2a", "sentinel-2b",
                   "sentinel-2c", "sentinel"),
    "landsat-8": ("landsat-8", "landsat8", "l8", "lc8", "landsat-8-oli"),
    "landsat-9": ("landsat-9", "landsat9", "l9", "lc9"),
    "landsat": ("landsat", "landsat-c2", "usgs-landsat"),
    "drone": ("drone", "uav", "uas", "unmanned", "drones", "quadcopter"),
    "aerial": ("aerial", "airborne", "aircraft", "airplane", "plane", "orthophoto",
               "aerial-photo", "aerial-photography", "aerial-imagery"),
    "naip": ("naip",),
    "worldview-2": ("worldview-2", "world-view-2", "worldview2", "wv2", "wv-2"),
    "worldview-3": ("worldview-3", "world-view-3", "worldview3", "wv3", "wv-3"),
    "worldview": ("worldview", "world-view", "maxar", "wv", "digitalglobe"),
}  # fmt: skip
_ALIAS_TO_FAMILY = {alias: fam for fam, aliases in _PLATFORM_ALIASES.items() for alias in aliases}


def normalize_platform(value: str) -> str:
    """ "Sentinel 2", "s2" -> "sentinel-2"; "UAV" -> "drone"; unknown words stay (normalised)."""
    key = re.sub(r"[\s_/]+", "-", value.strip().lower()).strip("-")
    return _ALIAS_TO_FAMILY.get(key, key)


class StacSearchArgs(BaseModel):
    """Arguments of ``stac_search``; liberal in (strings, single values), strict out."""

    model_config = ConfigDict(extra="forbid")

    aoi: AOI | None = Field(default=None, description="Area: bbox, GeoJSON geometry, or @step.aoi")
    datetime: DateRange | None = Field(
        default=None,
        description='Period: "2020", "May 2011", "after 2011-05-22", "2009 to 2020"',
    )
    collections: list[str] | None = Field(default=None, description="STAC collection ids")
    platform: str | None = Field(
        default=None, description='"sentinel-2", "landsat", "aerial", "drone", "naip", "worldview"'
    )
    max_cloud: float | None = Field(default=None, ge=0, le=100, description="Max cloud cover, %")
    max_gsd_m: float | None = Field(default=None, gt=0, description="Coarsest pixel size, m")
    limit: int = Field(default=10, ge=1, le=50)

    @field_validator("datetime", mode="before")
    @classmethod
    def _blank_datetime(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("datetime")
    @classmethod
    def _not_future(cls, value: DateRange | None) -> DateRange | None:
        # Checked again against ctx.today in run(); this catches it at planning time.
        if value is not None and value.start is not None and value.start > dt.date.today():
            raise ValueError(future_message(value, dt.date.today()))
        return value

    @field_validator("collections", mode="before")
    @classmethod
    def _collections(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v for v in re.split(r"[,\s]+", value) if v]
        if isinstance(value, list | tuple):
            value = [str(v).strip() for v in value if str(v).strip()]
            return value or None
        return value

    @field_validator("platform", mode="before")
    @classmethod
    def _platform(cls, value: Any) -> Any:
        if isinstance(value, str):
            return normalize_platform(value) or None
        return value


def future_message(value: DateRange, today: dt.date) -> str:
    """Why a period that starts after ``today`` cannot be searched (planning and run time)."""
    return (
        f"the period asked for ({value.label()}) is in the future (today is "
        f"{today.isoformat()}): no imagery can exist for it yet"
    )
