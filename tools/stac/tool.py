"""``stac_search``: find imagery over an area through a STAC API (local or online).

The run: search the API (:mod:`tools.stac.client`), read and post-filter the items
(:mod:`tools.stac.items`, :mod:`tools.stac.rank`), rank them, and enter the best scenes as
evidence; when nothing matches, say what the catalog does have over or near the area.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from tools.base import (
    EvidenceDraft,
    GeoScoutToolError,
    Quantity,
    ToolContext,
    ToolResult,
    ToolSpec,
    label_text,
)
from tools.geo import to_rfc7946
from tools.numbers import sig
from tools.provenance import Provenance, SceneSource
from tools.stac.args import StacSearchArgs, future_message
from tools.stac.client import (
    FETCH_CAP,
    PAGE_SIZE,
    fetch_items,
    is_own_catalog,
    open_client,
    public_url,
    search_params,
)
from tools.stac.items import item_link, strip_own_fields
from tools.stac.rank import Candidate, Dropped, post_filter

log = logging.getLogger(__name__)

NAME = "stac_search"
EVIDENCE_CAP = 5


def run(args: StacSearchArgs, ctx: ToolContext) -> ToolResult:
    today = dt.date.fromisoformat(ctx.today) if ctx.today else dt.date.today()
    if (
        args.datetime is not None
        and args.datetime.start is not None
        and args.datetime.start > today
    ):
        raise GeoScoutToolError(
            "invalid_args",
            future_message(args.datetime, today),
            "ask for a past period, e.g. '2020' or 'after 2011-05-22', or leave the date out",
        )
    collections = args.collections or (list(ctx.stac_collections) or None)
    url = ctx.resolve_stac_url()
    own = is_own_catalog(url)
    client = open_client(url, ctx)
    params = search_params(args, collections, client)
    raw, capped = fetch_items(client, params, public_url(url))
    if not own:
        raw = [strip_own_fields(it) for it in raw]

    aoi_shape = args.aoi.shape() if args.aoi else None
    kept, dropped = post_filter(raw, args, aoi_shape)
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


# --- evidence, caveats, hints ------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{sig(value):g}"


def _evidence(
    cand: Candidate,
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
            "via_href": item_link(cand.item, "via"),
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
    chosen: list[Candidate], dropped: Dropped, args: StacSearchArgs, capped: bool, total: int
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
    dropped: Dropped,
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
                    c = Candidate(it, aoi_shape)
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


def _area_summary(cands: list[Candidate], dropped: Dropped) -> str:
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
