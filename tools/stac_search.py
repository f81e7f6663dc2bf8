"""``stac_search``: find imagery over an area through a STAC API (local or online).

The query goes to a real STAC API with pystac-client (bbox / intersects, datetime,
collections). The local ``rustac serve`` API supports neither the ``query`` nor the
``filter`` extension, so platform, cloud and GSD refinements are a documented post-filter
on the returned items; ``query`` is pushed down as well where the API conforms to it.

Unknown acquisition dates stay unknown: such a scene never "matches" a date filter unless
its honest bounds (``geoscout:latest_possible_date``) place it inside the asked period, and
its SceneRef has ``datetime=None``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from tools import access
from tools.access import AccessPolicy
from tools.base import (
    ErrorCode,
    EvidenceDraft,
    GeoScoutToolError,
    Quantity,
    ToolContext,
    ToolResult,
    ToolSpec,
    label_text,
)
from tools.geo import AOI, DateRange, SceneAsset, SceneRef, geodesic_area_km2, to_rfc7946
from tools.numbers import sig
from tools.provenance import Provenance, SceneSource

log = logging.getLogger(__name__)

NAME = "stac_search"
OWN_PREFIX = "geoscout:"
# Items fetched before post-filtering and ranking; enough for the local catalog and for a
# bounded online search. When reached, a caveat says the ranking saw only these.
FETCH_CAP = 500
PAGE_SIZE = 100
EVIDENCE_CAP = 5
_RASTER_TYPES = ("image/tiff", "image/jp2", "geotiff", "image/vnd.stac.geotiff")
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")

# Loose platform words -> a canonical family (see _platform_matches for what each accepts).
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
_AERIAL_PLATFORMS = frozenset({"aerial", "drone", "uav", "uas", "aircraft", "airplane"})
_DRONE_PLATFORMS = frozenset({"drone", "uav", "uas"})


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
            raise ValueError(_future_message(value, dt.date.today()))
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


def _future_message(value: DateRange, today: dt.date) -> str:
    return (
        f"the period asked for ({value.label()}) is in the future (today is "
        f"{today.isoformat()}): no imagery can exist for it yet"
    )


# --- the tool ----------------------------------------------------------------------------


def run(args: StacSearchArgs, ctx: ToolContext) -> ToolResult:
    today = dt.date.fromisoformat(ctx.today) if ctx.today else dt.date.today()
    if (
        args.datetime is not None
        and args.datetime.start is not None
        and args.datetime.start > today
    ):
        raise GeoScoutToolError(
            "invalid_args",
            _future_message(args.datetime, today),
            "ask for a past period, e.g. '2020' or 'after 2011-05-22', or leave the date out",
        )
    collections = args.collections or (list(ctx.stac_collections) or None)
    url = ctx.resolve_stac_url()
    own = is_own_catalog(url)
    client = open_client(url, ctx)
    params = _search_params(args, collections, client)
    raw, capped = fetch_items(client, params, public_url(url))
    if not own:
        raw = [strip_own_fields(it) for it in raw]

    aoi_shape = args.aoi.shape() if args.aoi else None
    kept, dropped = _post_filter(raw, args, aoi_shape)
    if not kept:
        raise GeoScoutToolError(
            "no_data",
            _no_match_message(args),
            _nearby_hint(client, args, collections, dropped),
        )
    kept.sort(key=lambda c: c.rank_key)
    chosen = kept[: args.limit]
    scenes = [c.scene for c in chosen]

    best = chosen[0]
    footprint = best.footprint
    # Tiles of one mosaic (same collection and pixel size as the best scene) image the
    # ground together: "the image" of a place is their union.
    tiles = [
        c.footprint
        for c in chosen
        if c.scene.collection == best.scene.collection and c.scene.gsd == best.scene.gsd
    ]
    coverage = unary_union(tiles) if len(tiles) > 1 else footprint
    if aoi_shape is not None:
        footprint = footprint.intersection(aoi_shape)
        coverage = coverage.intersection(aoi_shape)
    provenance_params = {k: v for k, v in params.items() if k != "intersects"}
    if "intersects" in params:
        provenance_params["intersects"] = "the AOI geometry"
    provenance_params.update(
        {"platform": args.platform, "max_cloud": args.max_cloud, "max_gsd_m": args.max_gsd_m,
         "limit": args.limit}
    )  # fmt: skip
    caveats = _caveats(chosen, dropped, args, capped, len(kept))
    evidence = [
        _evidence(c, rank, len(kept), public_url(url), provenance_params, own)
        for rank, c in enumerate(chosen[:EVIDENCE_CAP], start=1)
    ]
    shown = f"{len(chosen)} shown" + (
        f", the first {EVIDENCE_CAP} as evidence" if len(chosen) > EVIDENCE_CAP else ""
    )
    summary = (
        f"{len(kept)} scene(s) matched ({shown}). Best: {best.scene.id} "
        f"({best.scene.collection}, {best.date_label}, {_fmt(best.scene.gsd)} m GSD"
        + (f", {_fmt(best.scene.cloud_cover)}% cloud" if best.scene.cloud_cover is not None else "")
        + ")."
    )
    return ToolResult(
        status="ok",
        summary=summary,
        outputs={
            "scenes": [s.model_dump(mode="json") for s in scenes],
            "scene": best.scene.model_dump(mode="json"),
            "footprint": to_rfc7946(footprint) if not footprint.is_empty else None,
            "coverage": to_rfc7946(coverage) if not coverage.is_empty else None,
        },
        evidence=evidence,
        caveats=caveats,
    )


def is_own_catalog(url: str) -> bool:
    """True when the STAC API is a local one this process started over GeoScout's own index
    (its ``geoscout:`` fields were computed by GeoScout); any other API's ``geoscout:``
    fields are data, and dropped."""
    from tools.catalog.server import is_own_stac_url

    return is_own_stac_url(url)


def strip_own_fields(item: dict[str, Any]) -> dict[str, Any]:
    """An item without the ``geoscout:`` properties a foreign catalog may set: GeoScout's own
    fields (areas, dates known, attribution, licence) are computed, never read from data."""
    props = item.get("properties")
    if not isinstance(props, dict) or not any(str(k).startswith(OWN_PREFIX) for k in props):
        return item
    clean = {k: v for k, v in props.items() if not str(k).startswith(OWN_PREFIX)}
    return {**item, "properties": clean}


def open_client(url: str, ctx: ToolContext) -> Any:
    import requests
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    # Hook for signing (Planetary Computer) or auth: a callable in ctx.extra, none by default.
    modifier: Callable[[Any], Any] | None = ctx.extra.get("stac_modifier")
    # Every request of the client goes through the access policy: the configured API is
    # trusted, links it hands back to other hosts are checked like data; one timeout per
    # request (the policy's, cut to the step deadline), no redirects, a size cap.
    stac_io = access.stac_io(
        AccessPolicy.from_context(ctx), url, headers={"User-Agent": ctx.user_agent}
    )
    shown = public_url(url)
    try:
        return Client.open(url, modifier=modifier, stac_io=stac_io)
    except requests.exceptions.Timeout as exc:
        raise GeoScoutToolError(
            "timeout", f"the STAC API at {shown} did not answer in time", _reach_hint(ctx)
        ) from exc
    except (requests.exceptions.RequestException, APIError, OSError) as exc:
        raise GeoScoutToolError(
            "service_unreachable",
            f"the STAC API at {shown} could not be reached ({type(exc).__name__})",
            _reach_hint(ctx),
        ) from exc
    except GeoScoutToolError:
        raise
    except Exception as exc:  # not a STAC API (HTML page, missing conformance, ...)
        raise GeoScoutToolError(
            "service_unreachable",
            f"{shown} did not answer as a STAC API ({type(exc).__name__})",
            _reach_hint(ctx),
        ) from exc


def public_url(url: str) -> str:
    """The URL without credentials or query string, for messages and provenance."""
    return access.public_url(url)


def _reach_hint(ctx: ToolContext) -> str:
    if ctx.profile == "offline":
        return "the local STAC API may have stopped; restart the command to start it again"
    return "check the network and GEOSCOUT_STAC_URL, or use the offline profile with local data"


def _search_params(
    args: StacSearchArgs, collections: list[str] | None, client: Any
) -> dict[str, Any]:
    from pystac_client import ConformanceClasses

    params: dict[str, Any] = {"max_items": FETCH_CAP, "limit": PAGE_SIZE}
    if args.aoi is not None:
        if args.aoi.geometry is not None:
            params["intersects"] = args.aoi.geometry
        else:
            params["bbox"] = list(args.aoi.bbox)
    if args.datetime is not None and (args.datetime.start or args.datetime.end):
        params["datetime"] = args.datetime.to_stac()
    if collections:
        params["collections"] = collections
    if args.max_cloud is not None and client.conforms_to(ConformanceClasses.QUERY):
        params["query"] = {"eo:cloud_cover": {"lte": args.max_cloud}}
    return params


def fetch_items(client: Any, params: dict[str, Any], url: str) -> tuple[list[dict[str, Any]], bool]:
    import requests
    from pystac_client.exceptions import APIError

    try:
        items = list(client.search(**params).items_as_dicts())
    except requests.exceptions.Timeout as exc:
        raise GeoScoutToolError("timeout", f"the STAC search at {url} timed out") from exc
    except (requests.exceptions.RequestException, OSError) as exc:
        raise GeoScoutToolError(
            "service_unreachable",
            f"the STAC API at {url} stopped answering during the search ({type(exc).__name__})",
            "retry; if it persists, restart the command",
        ) from exc
    except APIError as exc:
        status = getattr(exc, "status_code", None)
        code: ErrorCode = (
            "invalid_args" if status is not None and 400 <= status < 500 else "service_unreachable"
        )
        raise GeoScoutToolError(
            code,
            f"the STAC API refused the search (HTTP {status or 'error'})",
            "check the collection ids and the date range",
        ) from exc
    return items, len(items) >= FETCH_CAP


# --- filtering and ranking ---------------------------------------------------------------


class _Candidate:
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


class _Dropped(BaseModel):
    unknown_date: list[str] = Field(default_factory=list)
    outside_dates: int = 0
    platform: int = 0
    cloud: int = 0
    gsd: int = 0
    gsd_unknown: int = 0
    touching_only: int = 0
    cloud_unknown_kept: list[str] = Field(default_factory=list)


def _post_filter(
    items: list[dict[str, Any]], args: StacSearchArgs, aoi_shape: BaseGeometry | None
) -> tuple[list[_Candidate], _Dropped]:
    """Refinements the local API cannot do; applied to what the API returned."""
    kept: list[_Candidate] = []
    dropped = _Dropped()
    aoi_km2 = geodesic_area_km2(aoi_shape) if aoi_shape is not None else None
    for item in items:
        try:
            cand = _Candidate(item, aoi_shape, aoi_km2)
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


def _date_verdict(cand: _Candidate, rng: DateRange) -> str:
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


def _platform_matches(wanted: str, cand: _Candidate) -> bool:
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


# --- item -> SceneRef --------------------------------------------------------------------


def scene_ref(item: dict[str, Any]) -> SceneRef:
    """A STAC item (dict) reduced to a :class:`SceneRef`; unknown dates stay None."""
    props = item.get("properties") or {}
    known = props.get("geoscout:datetime_known") is not False
    when = props.get("datetime") if known else None
    assets = _scene_assets(item)
    gsd = props.get("gsd")
    if not isinstance(gsd, int | float):
        gsd = _scene_gsd(assets)
    cloud = props.get("eo:cloud_cover")
    bbox = item.get("bbox") or list(item_shape(item).bounds)
    if len(bbox) == 6:  # 3D bbox: keep the horizontal part
        bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
    return SceneRef(
        id=str(item["id"]),
        collection=item.get("collection"),
        datetime=str(when) if when else None,
        gsd=float(gsd) if gsd is not None else None,
        platform=props.get("platform"),
        cloud_cover=float(cloud) if isinstance(cloud, int | float) else None,
        bbox=(float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])),
        geometry=item.get("geometry"),
        assets=assets,
        license=props.get("geoscout:license_text") or props.get("license"),
        self_href=_link(item, "self"),
        title=props.get("title"),
        product_level=_product_level(item),
    )


def _scene_assets(item: dict[str, Any]) -> dict[str, SceneAsset]:
    out: dict[str, SceneAsset] = {}
    for key, asset in (item.get("assets") or {}).items():
        href = str(asset.get("href") or "")
        mtype = str(asset.get("type") or "").lower()
        if not href or not (
            any(t in mtype for t in _RASTER_TYPES) or href.lower().endswith(_RASTER_SUFFIXES)
        ):
            continue  # metadata, thumbnails, browse images
        bands = [
            str(b.get("common_name") or b.get("name") or f"b{i + 1}")
            for i, b in enumerate(asset.get("eo:bands") or [])
        ]
        gsd = asset.get("gsd")
        if not isinstance(gsd, int | float):
            band_gsd = [
                b.get("gsd")
                for b in asset.get("eo:bands") or []
                if isinstance(b.get("gsd"), int | float)
            ]
            gsd = min(band_gsd) if band_gsd else None
        out[key] = SceneAsset(
            href=href,
            bands=bands,
            gsd=float(gsd) if gsd is not None else None,
            roles=[str(r) for r in asset.get("roles") or []],
            title=asset.get("title"),
        )
    # Landsat's NIR is "nir08" in STAC (B5); offer it as "nir" when nothing else is.
    all_bands = {b for a in out.values() for b in a.bands}
    if "nir" not in all_bands and "nir08" in all_bands:
        for a in out.values():
            a.bands = ["nir" if b == "nir08" else b for b in a.bands]
    return out


def _scene_gsd(assets: dict[str, SceneAsset]) -> float | None:
    """A scene's GSD: that of its finest visible band, else its finest band."""
    visible = [a.gsd for a in assets.values() if a.gsd and {"red", "green", "blue"} & set(a.bands)]
    anyg = [a.gsd for a in assets.values() if a.gsd]
    return min(visible) if visible else (min(anyg) if anyg else None)


def _product_level(item: dict[str, Any]) -> str | None:
    props = item.get("properties") or {}
    for key in ("geoscout:product_level", "processing:level", "landsat:processing_level"):
        if props.get(key):
            return str(props[key]).lower()
    m = re.search(r"(?:^|[-_])(l1c|l2a|l1|l2)(?:$|[-_])", str(item.get("collection") or "").lower())
    return m.group(1) if m else None


def _link(item: dict[str, Any], rel: str) -> str | None:
    for link in item.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == rel and link.get("href"):
            return str(link["href"])
    return None


def item_shape(item: dict[str, Any]) -> BaseGeometry:
    if item.get("geometry"):
        return shape(item["geometry"])
    return box(*item["bbox"][:4])


def parse_datetime(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


# --- evidence, caveats, hints ------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{sig(value):g}"


def _evidence(
    cand: _Candidate,
    rank: int,
    total: int,
    url: str,
    params: dict[str, Any],
    own: bool = True,
) -> EvidenceDraft:
    s = cand.scene
    values: dict[str, Quantity] = {
        "footprint_area_km2": Quantity(value=sig(cand.area_km2), unit="km2")
    }
    if s.gsd is not None:
        values["gsd_m"] = Quantity(value=sig(s.gsd), unit="m")
    if s.cloud_cover is not None:
        values["cloud_cover_pct"] = Quantity(value=sig(s.cloud_cover), unit="%")
    if cand.aoi_coverage is not None:
        values["aoi_covered_pct"] = Quantity(value=sig(100 * min(cand.aoi_coverage, 1.0)), unit="%")
    geom = cand.footprint.simplify(0.0001, preserve_topology=True)
    geometry = to_rfc7946(geom)
    # Licence and attribution GeoScout asserts come from its own registry (the descriptor
    # the local index was built from); what a catalog states is shown as the catalog's word.
    registry = own and cand.props.get("geoscout:license_source") == "registry"
    licence = _clean(s.license, 240) if s.license else "unknown"
    if s.license and not registry:
        licence = f"the catalog says: {licence}"
    facts = {
        "collection": _label(s.collection) or "unknown",
        "datetime": s.datetime
        or ("unknown" if cand.date_label == "date unknown" else cand.date_label),
        "platform": _label(s.platform) or "unknown",
        "license": licence,
        "rank": f"{rank} of {total}",
    }
    own_attribution = cand.props.get("geoscout:attribution") if own else None
    for key, value in (("title", s.title), ("product_level", s.product_level),
                       ("attribution", own_attribution)):  # fmt: skip
        if value:
            facts[key] = _clean(str(value), 240)  # remote text is data: one bounded line
    caveats = []
    if s.datetime is None:
        latest = cand.props.get("geoscout:latest_possible_date")
        caveats.append(
            "The acquisition date of this scene is unknown"
            + (f" (taken on or before {latest})" if latest else "")
            + "; do not state one."
        )
    if s.cloud_cover is None:
        caveats.append("Cloud cover of this scene is not recorded.")
    scene = SceneSource.from_scene(s, stac_api_url=url).model_copy(update={"license": licence})
    provenance = Provenance(
        tool=NAME,
        source="STAC",
        license=licence,
        attribution=facts.get("attribution"),
        scene=scene,
        details={
            "via_href": _link(cand.item, "via"),
            "source_file": cand.props.get("geoscout:source_file") if own else None,
            "licence_source": "registry" if registry else "catalog",
            "search": params,
        },
    )
    layer = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "source": "stac",
                    "label": f"{s.collection}: {s.id}",
                    "stac_item_id": s.id,
                    "collection": s.collection,
                    "datetime": s.datetime or "unknown",
                    "gsd_m": s.gsd,
                    "rank": rank,
                },
            }
        ],
    }
    title = (
        f"Scene {s.id} ({s.collection}, {cand.date_label}, {_fmt(s.gsd)} m"
        + (f", {_fmt(s.cloud_cover)}% cloud" if s.cloud_cover is not None else "")
        + ")"
    )
    return EvidenceDraft(
        key=f"scene:{s.id}",
        kind="scene",
        title=title,
        values=values,
        geometry=geometry,
        provenance=provenance,
        layer=layer,
        caveats=caveats,
        facts=facts,
    )


def _caveats(
    chosen: list[_Candidate], dropped: _Dropped, args: StacSearchArgs, capped: bool, total: int
) -> list[str]:
    out = []
    if total > len(chosen):
        out.append(f"{total} scenes matched; the best {len(chosen)} are listed.")
    if len(chosen) > EVIDENCE_CAP:
        out.append(f"Only the first {EVIDENCE_CAP} scenes are entered as evidence.")
    unknown = [c.scene.id for c in chosen if c.scene.datetime is None]
    if unknown:
        out.append(
            f"{len(unknown)} listed scene(s) have no known acquisition date: "
            + ", ".join(unknown[:5])
            + ("..." if len(unknown) > 5 else "")
        )
    if dropped.unknown_date:
        out.append(
            f"{len(dropped.unknown_date)} scene(s) over the area have no known acquisition date "
            "and were not counted as matching the period: " + ", ".join(dropped.unknown_date[:5])
        )
    if dropped.cloud_unknown_kept:
        out.append(
            f"Cloud cover is not recorded for {len(dropped.cloud_unknown_kept)} scene(s); "
            f"they were kept although a {_fmt(args.max_cloud)}% limit was asked."
        )
    if capped:
        out.append(f"The search stopped at {FETCH_CAP} items; the ranking considered only those.")
    return out


def _no_match_message(args: StacSearchArgs) -> str:
    parts = []
    if args.aoi is not None:
        parts.append(
            f"over {args.aoi.name or 'the area ' + str([round(v, 4) for v in args.aoi.bbox])}"
        )
    if args.datetime is not None:
        parts.append(f"for {args.datetime.label()}")
    if args.platform:
        parts.append(f"from platform {args.platform}")
    if args.collections:
        parts.append(f"in {', '.join(args.collections)}")
    if args.max_cloud is not None:
        parts.append(f"with at most {_fmt(args.max_cloud)}% cloud")
    if args.max_gsd_m is not None:
        parts.append(f"with pixels of {_fmt(args.max_gsd_m)} m or finer")
    return (
        "no imagery found " + " ".join(parts) if parts else "the STAC catalog returned no imagery"
    )


def _nearby_hint(
    client: Any,
    args: StacSearchArgs,
    collections: list[str] | None,
    dropped: _Dropped,
) -> str:
    """What the catalog does have: scenes over the area with other dates, or nearby collections."""
    try:
        if args.aoi is not None:
            params: dict[str, Any] = {"max_items": FETCH_CAP, "limit": PAGE_SIZE}
            if args.aoi.geometry is not None:
                params["intersects"] = args.aoi.geometry
            else:
                params["bbox"] = list(args.aoi.bbox)
            if collections:
                params["collections"] = collections
            aoi_shape = args.aoi.shape()
            items = list(client.search(**params).items_as_dicts())
            cands = []
            for it in items:
                try:
                    c = _Candidate(it, aoi_shape)
                except Exception:
                    continue
                if c.aoi_overlap_km2:
                    cands.append(c)
            if cands:
                return _area_summary(cands, dropped)
        return _collections_hint(client, args, collections)
    except Exception as exc:  # the hint is a courtesy; never let it hide the real answer
        log.warning("stac_search: no hint (%s)", exc)
        return "try a larger area, another period, or fewer filters"


def _area_summary(cands: list[_Candidate], dropped: _Dropped) -> str:
    dates = sorted(c.when.date() for c in cands if c.when)
    unknown = sum(1 for c in cands if c.when is None)
    colls = sorted({c.scene.collection or "?" for c in cands})
    platforms = sorted({c.scene.platform for c in cands if c.scene.platform})
    gsds = sorted(c.scene.gsd for c in cands if c.scene.gsd is not None)
    clouds = sorted(c.scene.cloud_cover for c in cands if c.scene.cloud_cover is not None)
    text = f"the catalog has {len(cands)} scene(s) over this area"
    if dates:
        text += f", dated {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "")
    if unknown:
        text += f"{' and' if dates else ','} {unknown} of unknown date"
    text += f"; collections: {', '.join(colls[:5])}"
    if platforms:
        text += f"; platforms: {', '.join(platforms[:5])}"
    if gsds:
        text += f"; pixel size {_span(gsds[0], gsds[-1])} m"
    if clouds:
        text += f"; cloud cover {_span(clouds[0], clouds[-1])}%"
    reasons = [
        (len(dropped.unknown_date), "of unknown date (never counted as in a period)"),
        (dropped.outside_dates, "outside the period"),
        (dropped.platform, "from other platforms"),
        (dropped.cloud, "too cloudy"),
        (dropped.gsd + dropped.gsd_unknown, "with coarser or unknown pixel size"),
        (dropped.touching_only, "only touching the area's edge"),
    ]
    left_out = [f"{n} {why}" for n, why in reasons if n]
    if left_out:
        text += ". Left out: " + ", ".join(left_out)
    return text + ". Widen the period or relax the filters to use them."


def _span(low: float, high: float) -> str:
    return _fmt(low) if _fmt(low) == _fmt(high) else f"{_fmt(low)} to {_fmt(high)}"


def _collections_hint(client: Any, args: StacSearchArgs, collections: list[str] | None) -> str:
    center = args.aoi.shape().centroid if args.aoi is not None else None
    found: list[tuple[float, str]] = []
    for coll in client.get_collections():
        try:
            bboxes = list(coll.extent.spatial.bboxes)
            # After the overall extent, STAC lists the collection's clusters: use those.
            areas = [box(*b[:2], *b[2:4]) if len(b) == 4 else box(b[0], b[1], b[3], b[4])
                     for b in (bboxes[1:] if len(bboxes) > 1 else bboxes)]  # fmt: skip
        except (AttributeError, IndexError, TypeError, ValueError):
            continue
        if not areas:
            continue
        # The distance only: a collection's title or id names another place ("Kampala
        # drone"), which must not read as an answer for the place asked about.
        label = _clean(coll.id, 60)
        dist = min(_distance_km(center, a) for a in areas) if center is not None else 0.0
        found.append((dist, label))
        if len(found) >= 200:
            break
    if not found:
        return "the STAC catalog holds no collections"
    found.sort()
    if center is None:
        return "the catalog holds: " + "; ".join(label for _, label in found[:5])
    near = ", then ".join(f"about {_fmt(d)} km" for d, _ in found[:3])
    scope = f"of {', '.join(collections)} " if collections else "in the catalog "
    return (
        f"no scene {scope}covers this area. The nearest imagery is {near} away "
        "(ask “what data do you have?” for the places covered)"
    )


def _distance_km(point: BaseGeometry, area: BaseGeometry) -> float:
    from pyproj import Geod
    from shapely.ops import nearest_points

    if area.contains(point):
        return 0.0
    p1, p2 = nearest_points(point, area)
    _, _, metres = Geod(ellps="WGS84").inv(p1.x, p1.y, p2.x, p2.y)
    return float(metres) / 1000.0


def _clean(text: str, limit: int) -> str:
    """Titles from a remote API are data: one short printable line, nothing more."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in str(text)).split())
    return flat[:limit]


def _label(text: str | None, limit: int = 40) -> str:
    """A catalog identifier (platform, collection) as writers may show it: letters, digits,
    dots and hyphens, lower case, bounded; free text never passes through whole."""
    if not text:
        return ""
    return re.sub(r"[^a-z0-9.\-]+", "-", str(text).lower()).strip("-")[:limit]


def _step_label(args: dict[str, Any]) -> str:
    when = label_text(args.get("datetime"), 23)
    return f"Searching imagery ({when})" if when else "Searching imagery"


SPEC = ToolSpec(
    name=NAME,
    args_schema=StacSearchArgs,
    run=run,
    description=(
        "Find satellite, aerial or drone imagery (STAC scenes) over an area, optionally for "
        "a period, platform, cloud limit or pixel size. Returns the matching scenes, the "
        "best one, and its footprint over the area."
    ),
    prompt_fragment=(
        "stac_search(aoi, datetime?, collections?, platform?, max_cloud?, max_gsd_m?, limit?): "
        "imagery over an area. aoi: a bbox [w,s,e,n] or @step.aoi. datetime: '2020', "
        "'May 2011', 'after 2011-05-22', '2009 to 2020' (never in the future). platform: "
        "sentinel-2, landsat, aerial, drone, naip, worldview. max_cloud in %, max_gsd_m in "
        "metres. Outputs: scenes (all), scene (the best: finest pixels, least cloud, most "
        "recent), footprint (the best scene's imaged area within the aoi), coverage (the "
        "union of the best scene's mosaic tiles within the aoi). Scenes of unknown "
        "date never match a date filter."
    ),
    outputs={"scenes": "scenes", "scene": "scene", "footprint": "geometry", "coverage": "geometry"},
    accepts={"aoi": ("aoi", "geometry")},
    label=_step_label,
    # Itself relevant when the images are the subject; tools that read a scene bring it in
    # through their ``accepts`` (the planner adds the producers of what they need).
    relevant=lambda intent: "imagery" in intent.targets or intent.on_image,
    planner_hidden=frozenset({"collections"}),
    stated_only=frozenset({"max_cloud", "max_gsd_m", "limit"}),
    produces=("scene",),
)
