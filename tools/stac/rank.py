"""Candidates and their ranking: what the API returned, post-filtered and ordered.

The refinements the local API cannot do (dates known or not, platform, cloud, pixel size,
footprints that only touch the area) are applied here to the returned items, and every
item left out is counted by reason. Unknown acquisition dates stay unknown: such a scene
never "matches" a date filter unless its honest bounds (``geoscout:latest_possible_date``)
place it inside the asked period.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from pydantic import BaseModel, Field
from shapely.geometry.base import BaseGeometry

from tools.geo import DateRange, geodesic_area_km2
from tools.stac.args import StacSearchArgs, normalize_platform
from tools.stac.items import item_shape, parse_datetime, scene_ref

log = logging.getLogger(__name__)

_AERIAL_PLATFORMS = frozenset({"aerial", "drone", "uav", "uas", "aircraft", "airplane"})
_DRONE_PLATFORMS = frozenset({"drone", "uav", "uas"})


class Candidate:
    """A returned item with what ranking, evidence and outputs need."""

    def __init__(
        self, item: dict[str, Any], aoi_shape: BaseGeometry | None, aoi_km2: float | None = None
    ) -> None:
        self.item = item
        self.props: dict[str, Any] = item.get("properties") or {}
        self.scene = scene_ref(item)
        self.footprint = item_shape(item)
        self.when = parse_datetime(self.scene.datetime)
        # Computed here from the footprint, never read from the item.
        self.area_km2 = geodesic_area_km2(self.footprint)
        self.aoi_overlap_km2 = (
            geodesic_area_km2(self.footprint.intersection(aoi_shape))
            if aoi_shape is not None
            else None
        )
        self.aoi_coverage = (
            self.aoi_overlap_km2 / max(aoi_km2 or geodesic_area_km2(aoi_shape), 1e-12)
            if aoi_shape is not None and self.aoi_overlap_km2 is not None
            else None
        )

    @property
    def date_label(self) -> str:
        if self.scene.datetime:
            return self.scene.datetime[:10]
        start, end = self.props.get("start_datetime"), self.props.get("end_datetime")
        if self.props.get("geoscout:datetime_known") is not False and start and end:
            return f"{str(start)[:10]} to {str(end)[:10]}"
        return "date unknown"

    @property
    def rank_key(self) -> tuple[float, float, float, float, str]:
        # Finest GSD, then least cloud (unknown after known), then most recent (unknown
        # last), then the largest share of the AOI covered.
        gsd = self.scene.gsd if self.scene.gsd is not None else math.inf
        cloud = self.scene.cloud_cover if self.scene.cloud_cover is not None else 101.0
        recent = -self.when.timestamp() if self.when else math.inf
        coverage = -(self.aoi_coverage or 0.0)
        return (gsd, cloud, recent, coverage, self.scene.id)


class Dropped(BaseModel):
    """The items :func:`post_filter` left out, by reason (for caveats and hints)."""

    unknown_date: list[str] = Field(default_factory=list)
    outside_dates: int = 0
    platform: int = 0
    cloud: int = 0
    gsd: int = 0
    gsd_unknown: int = 0
    touching_only: int = 0
    cloud_unknown_kept: list[str] = Field(default_factory=list)


def post_filter(
    items: list[dict[str, Any]], args: StacSearchArgs, aoi_shape: BaseGeometry | None
) -> tuple[list[Candidate], Dropped]:
    """Refinements the local API cannot do, applied to what the API returned: the kept
    candidates (unranked) and what was left out."""
    kept: list[Candidate] = []
    dropped = Dropped()
    aoi_km2 = geodesic_area_km2(aoi_shape) if aoi_shape is not None else None
    for item in items:
        try:
            cand = Candidate(item, aoi_shape, aoi_km2)
        except Exception as exc:  # an item we cannot read is not a match; say so in the log
            log.warning("stac_search: item %r ignored: %s", item.get("id"), exc)
            continue
        if args.datetime is not None:
            verdict = _date_verdict(cand, args.datetime)
            if verdict == "unknown":
                dropped.unknown_date.append(cand.scene.id)
                continue
            if verdict == "outside":
                dropped.outside_dates += 1
                continue
        if args.platform and not _platform_matches(args.platform, cand):
            dropped.platform += 1
            continue
        if args.max_cloud is not None:
            if cand.scene.cloud_cover is None:
                dropped.cloud_unknown_kept.append(cand.scene.id)
            elif cand.scene.cloud_cover > args.max_cloud:
                dropped.cloud += 1
                continue
        if args.max_gsd_m is not None:
            if cand.scene.gsd is None:
                dropped.gsd_unknown += 1
                continue
            if cand.scene.gsd > args.max_gsd_m:
                dropped.gsd += 1
                continue
        # The API matches footprints that merely touch the AOI: those image none of it.
        if cand.aoi_overlap_km2 is not None and cand.aoi_overlap_km2 <= 0:
            dropped.touching_only += 1
            continue
        kept.append(cand)
    return kept, dropped


def _date_verdict(cand: Candidate, rng: DateRange) -> str:
    """ "inside", "outside", or "unknown" (the scene's date cannot be placed in the period)."""
    start = rng.start or dt.date.min
    end = rng.end or dt.date.max
    if cand.when is not None:
        return "inside" if start <= cand.when.date() <= end else "outside"
    props = cand.props
    if props.get("geoscout:datetime_known") is False:
        # Inside only if every possible date is: [unknown start, latest possible date].
        latest = props.get("geoscout:latest_possible_date")
        if latest and rng.start is None and dt.date.fromisoformat(str(latest)[:10]) <= end:
            return "inside"
        return "unknown"
    s, e = parse_datetime(props.get("start_datetime")), parse_datetime(props.get("end_datetime"))
    if s and e:  # a composite over a real range: it overlaps the period or not
        return "inside" if s.date() <= end and e.date() >= start else "outside"
    return "unknown"


def _platform_matches(wanted: str, cand: Candidate) -> bool:
    platform = normalize_platform(str(cand.props.get("platform") or ""))
    constellation = normalize_platform(str(cand.props.get("constellation") or ""))
    collection = (cand.scene.collection or "").lower()
    fields = " ".join([platform, constellation, collection])
    if wanted == "sentinel-2":
        return (
            platform.startswith("sentinel-2")
            or constellation == "sentinel-2"
            or collection.startswith("sentinel-2")
        )
    if wanted in ("landsat-8", "landsat-9"):
        return platform == wanted or wanted in collection
    if wanted == "landsat":
        return "landsat" in fields
    if wanted == "drone":
        return platform in _DRONE_PLATFORMS
    if wanted == "aerial":
        return platform in _AERIAL_PLATFORMS or "naip" in fields
    if wanted == "naip":
        return "naip" in fields
    if wanted == "worldview":
        return platform.startswith("worldview")
    return bool(wanted) and wanted in fields
