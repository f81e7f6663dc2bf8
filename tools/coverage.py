"""``coverage``: what data and capabilities GeoScout has, here and now.

For "what can you do?", "what data do you have?" and for honest "I can't" answers ("I have no
imagery of Paris; the nearest is 360 km away (WorldView-2, 1 m); here is what I can measure
there"). It reads the same STAC API as ``stac_search`` through the same client code, the
same local OSM sources as ``osm_overlay`` (its own :func:`~tools.osm.sources.local_sources`),
and the deployment's configuration (profile, vision model, segmentation models).

What a segmentation target needs is read from the model registry (each model card's
``inputs`` band names; ONNX cloud models also need calibrated reflectance of a product level
they were trained on, as ``segment`` checks through :func:`tools.raster.radiometry_for`), so
the rule is written once, where the models are described.

Catalogue text is untrusted: titles and descriptions never reach facts, titles or the
summary. Item ids and collection names do, stripped of everything but ``[A-Za-z0-9 _.:-]``
and cut to 60 characters; platforms, instruments and band names only when each is one plain
token (letters, digits, ``_.-``, up to 30 characters), else they are left out. Dates are
formatted from parsed values; unknown acquisition dates stay "no date".
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pyproj import CRS, Geod, Transformer
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points, unary_union
from shapely.validation import make_valid

from models.registry import ModelCard, list_models
from tools.base import (
    EvidenceDraft,
    GeoScoutToolError,
    Quantity,
    ToolContext,
    ToolResult,
    ToolSpec,
)
from tools.geo import AOI, SceneRef, geodesic_area_km2, to_rfc7946
from tools.numbers import sig
from tools.osm.sources import Source, local_sources
from tools.provenance import Provenance
from tools.raster import is_remote, radiometry_for
from tools.segment import SUPPORTED_TARGETS, model_registry
from tools.stac.client import FETCH_CAP, PAGE_SIZE, fetch_items, open_client, public_url
from tools.stac.items import item_shape, parse_datetime, scene_ref

log = logging.getLogger(__name__)

NAME = "coverage"
# Items read from the catalogue (the same cap as stac_search); past it, counts are partial.
ITEM_CAP = FETCH_CAP
COLLECTION_CAP = 200
ID_CHARS = 60
_UNSAFE = re.compile(r"[^A-Za-z0-9 _.:\-]+")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,29}")
_GEOD = Geod(ellps="WGS84")
_COMPASS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
# Band names in spectral order for display; others follow alphabetically.
_BAND_ORDER = (
    "coastal", "blue", "green", "red", "yellow", "rededge", "rededge071", "rededge075",
    "rededge078", "nir", "nir08", "nir09", "cirrus", "swir16", "swir22", "pan", "lwir",
    "lwir11", "lwir12",
)  # fmt: skip
_MAX_BANDS_SHOWN = 16
# Collections described one by one in facts (all of them are in the outputs).
FACT_COLLECTIONS = 30


def safe_text(value: Any, limit: int = ID_CHARS) -> str:
    """Catalogue text that may be shown: [A-Za-z0-9 _.:-] only, one line, ``limit`` chars."""
    flat = " ".join(_UNSAFE.sub("", str(value)).split())
    return flat[:limit].strip() or "unnamed"


def _token(value: Any) -> str | None:
    """A short catalogue enumeration (platform, instrument, band name) or None.

    These are names, not prose: a value that is not one plain token is dropped, not cleaned.
    """
    text = str(value).strip() if isinstance(value, str | int | float) else ""
    return text if _TOKEN.fullmatch(text) else None


def _config_text(value: str, limit: int = 120) -> str:
    """A configured value (URL without credentials) as one printable line."""
    return "".join(ch for ch in str(value) if ch.isprintable() and not ch.isspace())[:limit]


def _key(value: str) -> str:
    """A safe id as part of a values/facts key (no spaces)."""
    return value.replace(" ", "_")


class CoverageArgs(BaseModel):
    """Arguments of ``coverage``: all optional; liberal in, strict out."""

    model_config = ConfigDict(extra="forbid")

    aoi: AOI | None = Field(
        default=None, description="Area to check: bbox [w,s,e,n], GeoJSON geometry, or @step.aoi"
    )
    topic: str | None = Field(
        default=None,
        description="What the person asked about (e.g. 'air quality'); echoed, not interpreted",
    )
    limit: int = Field(default=5, ge=1, le=50, description="Scenes and nearest collections listed")

    @field_validator("aoi", mode="before")
    @classmethod
    def _blank_aoi(cls, value: Any) -> Any:
        return None if value in ("", [], {}) else value

    @field_validator("topic", mode="before")
    @classmethod
    def _topic(cls, value: Any) -> Any:
        if value is None:
            return None
        text = " ".join(_UNSAFE.sub(" ", str(value)[:500]).split())[:ID_CHARS].strip()
        return text or None


# --- what a scene can measure ------------------------------------------------------------


def segmentation_cards(ctx: ToolContext) -> tuple[list[ModelCard], list[str]]:
    """The segmentation model cards ``segment`` can use here, and caveats."""
    try:
        return model_registry(ctx).cards("segmentation"), []
    except (ValueError, OSError) as exc:  # a configured local folder that is not a model
        log.warning("coverage: local segmentation models ignored: %s", exc)
        return list_models("segmentation"), [
            "A configured local segmentation model could not be read and is not counted."
        ]


def measurable_targets(
    scene: SceneRef, dtype: str | None, cards: Iterable[ModelCard]
) -> dict[str, str]:
    """Target -> the model that can measure it on this scene, from the bands it carries.

    A model can run when the scene has every band in its card's ``inputs``; the ONNX cloud
    models also need calibrated reflectance of a product level they were trained on.
    """
    bands = scene.available_bands()
    rad = radiometry_for(scene, dtype or "uint16")
    cards = list(cards)
    extra = sorted({t for c in cards for t in c.targets} - set(SUPPORTED_TARGETS))
    out: dict[str, str] = {}
    for target in (*SUPPORTED_TARGETS, *extra):
        usable = [
            c
            for c in cards
            if target in c.targets
            and set(c.inputs) <= bands
            and (
                c.kind != "onnx"
                or (rad.kind == "reflectance" and rad.product_level in c.product_levels)
            )
        ]
        if usable:
            # Built-in models first (segment's defaults), then the richest input set.
            best = max(usable, key=lambda c: (c.kind != "transformers", len(c.inputs)))
            out[target] = best.name
    return out


# --- the catalogue -----------------------------------------------------------------------


@dataclass
class _Item:
    scene: SceneRef
    footprint: BaseGeometry
    start: dt.date | None
    end: dt.date | None
    platform: str | None
    instruments: list[str]
    remote: bool
    measurable: dict[str, str]

    @property
    def sid(self) -> str:
        return safe_text(self.scene.id)

    @property
    def coll(self) -> str:
        return safe_text(self.scene.collection or "no collection")

    @property
    def date_label(self) -> str:
        return _date_span(self.start, self.end)


def _date_span(start: dt.date | None, end: dt.date | None) -> str:
    if start is None or end is None:
        return "no date"
    return start.isoformat() if start == end else f"{start.isoformat()} to {end.isoformat()}"


def _dtype(item: dict[str, Any]) -> str | None:
    for asset in (item.get("assets") or {}).values():
        for band in asset.get("raster:bands") or []:
            if isinstance(band, dict) and band.get("data_type"):
                return str(band["data_type"])
    return None


def _item(raw: dict[str, Any], cards: list[ModelCard], offline: bool) -> _Item:
    scene = scene_ref(raw)
    props = raw.get("properties") or {}
    footprint = item_shape(raw)
    if not footprint.is_valid:
        footprint = make_valid(footprint)
    start = end = None
    if scene.datetime:
        when = parse_datetime(scene.datetime)
        start = end = when.date() if when else None
    elif props.get("geoscout:datetime_known") is not False:
        s, e = (
            parse_datetime(props.get("start_datetime")),
            parse_datetime(props.get("end_datetime")),
        )
        if s and e:
            start, end = s.date(), e.date()
    remote = bool(scene.assets) and all(is_remote(a.href) for a in scene.assets.values())
    measurable = measurable_targets(scene, _dtype(raw), cards)
    instruments = props.get("instruments")
    return _Item(
        scene=scene,
        footprint=footprint,
        start=start,
        end=end,
        platform=_token(props.get("platform")),
        instruments=[t for i in instruments if (t := _token(i))]
        if isinstance(instruments, list)
        else [],
        remote=remote,
        measurable={} if (offline and remote) else measurable,
    )


@dataclass
class _Collection:
    cid: str  # safe
    items: list[_Item] = field(default_factory=list)
    meta_dates: tuple[dt.date | None, dt.date | None] = (None, None)

    def dates(self) -> str:
        starts = sorted(i.start for i in self.items if i.start)
        ends = sorted(i.end for i in self.items if i.end)
        undated = sum(1 for i in self.items if i.start is None)
        if not starts:
            if not self.items and self.meta_dates[0]:
                return _date_span(*self.meta_dates) + " (catalogue extent)"
            return "no date"
        text = _date_span(starts[0], ends[-1])
        return text + (f", {undated} with no date" if undated else "")

    def gsds(self) -> list[float]:
        return sorted({sig(i.scene.gsd) for i in self.items if i.scene.gsd})

    def gsd_label(self) -> str:
        g = self.gsds()
        if not g:
            return "resolution unknown"
        if len(g) == 1:
            return f"{g[0]:g} m"
        if len(g) == 2:
            return f"{g[0]:g} and {g[1]:g} m"
        return f"{g[0]:g} to {g[-1]:g} m"

    def platforms(self) -> list[str]:
        return sorted({i.platform for i in self.items if i.platform})

    def instruments(self) -> list[str]:
        return sorted({x for i in self.items for x in i.instruments})

    def bands(self) -> list[str]:
        names = {t for i in self.items for b in i.scene.available_bands() if (t := _token(b))}
        order = {b: n for n, b in enumerate(_BAND_ORDER)}
        return sorted(names, key=lambda b: (order.get(b, len(order)), b))

    def measurable(self) -> dict[str, int]:
        """Target -> number of scenes it can be measured on."""
        out: dict[str, int] = {}
        for i in self.items:
            for t in i.measurable:
                out[t] = out.get(t, 0) + 1
        return out

    def remote_only(self) -> bool:
        return bool(self.items) and all(i.remote for i in self.items)

    def footprint(self) -> BaseGeometry | None:
        parts = [i.footprint for i in self.items if not i.footprint.is_empty]
        if not parts:
            return None
        return unary_union(parts).simplify(0.0001, preserve_topology=True)

    def measurable_label(self, offline: bool) -> str:
        m = self.measurable()
        if not m:
            if offline and self.remote_only():
                return "nothing offline (pixels are online only)"
            return "no segment target with these bands"
        n = len(self.items)
        return ", ".join(t if c == n else f"{t} ({c} of {n} scenes)" for t, c in m.items())


def _collection_meta(client: Any, url: str) -> dict[str, dict[str, Any]]:
    """Collection id -> its dict, from /collections; empty when the API lists none."""
    import requests
    from pystac_client.exceptions import APIError

    out: dict[str, dict[str, Any]] = {}
    try:
        for coll in client.get_collections():
            out[str(coll.id)] = coll.to_dict(include_self_link=False, transform_hrefs=False)
            if len(out) >= COLLECTION_CAP:
                break
    except requests.exceptions.Timeout as exc:
        raise GeoScoutToolError(
            "timeout", f"the STAC API at {url} did not list its collections in time"
        ) from exc
    except (requests.exceptions.RequestException, OSError) as exc:
        raise GeoScoutToolError(
            "service_unreachable",
            f"the STAC API at {url} stopped answering while listing collections "
            f"({type(exc).__name__})",
            "retry; if it persists, restart the command",
        ) from exc
    except (APIError, ValueError, KeyError, TypeError) as exc:  # no /collections, odd JSON
        log.warning("coverage: collections not listed (%s)", type(exc).__name__)
    return out


def _meta_dates(meta: dict[str, Any]) -> tuple[dt.date | None, dt.date | None]:
    try:
        interval = meta["extent"]["temporal"]["interval"][0]
        s, e = parse_datetime(interval[0]), parse_datetime(interval[1])
    except (KeyError, IndexError, TypeError):
        return None, None
    return (s.date() if s else None), (e.date() if e else None)


def _read_items(
    client: Any, params: dict[str, Any], url: str, cards: list[ModelCard], offline: bool
) -> tuple[list[_Item], bool, int]:
    raw, _ = fetch_items(client, params, url)
    capped = len(raw) >= int(params["max_items"])
    items: list[_Item] = []
    bad = 0
    for it in raw:
        try:
            items.append(_item(it, cards, offline))
        except Exception as exc:  # one unreadable item must not sink the report
            bad += 1
            log.warning("coverage: item ignored (%s)", type(exc).__name__)
    return items, capped, bad


# --- distances -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Nearest:
    km: float
    bearing_deg: float  # from the AOI towards the data, clockwise from north

    @property
    def direction(self) -> str:
        return _COMPASS[round((self.bearing_deg % 360) / 45.0) % 8]


def _aeqd(center: Point) -> tuple[Transformer, Transformer]:
    crs = CRS.from_proj4(
        f"+proj=aeqd +lat_0={center.y} +lon_0={center.x} +datum=WGS84 +units=m +no_defs"
    )
    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    inv = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return fwd, inv


def _projector(tr: Transformer) -> Any:
    def project(coords: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = tr.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return project


def nearest_distances(aoi: BaseGeometry, shapes: list[BaseGeometry]) -> list[Nearest]:
    """Geodesic distance (km) and bearing from ``aoi`` to each shape (0 when they meet).

    The closest pair of points is found in an azimuthal equidistant projection centred on
    the AOI (distances from there are true), then measured on the WGS84 ellipsoid.
    """
    if not shapes:
        return []
    fwd, inv = _aeqd(aoi.centroid)
    aoi_p = shapely.transform(aoi, _projector(fwd))
    projected = shapely.transform(np.array(shapes, dtype=object), _projector(fwd))
    out: list[Nearest] = []
    for geom, proj in zip(shapes, projected, strict=True):
        if geom.intersects(aoi):
            out.append(Nearest(0.0, 0.0))
            continue
        p1, p2 = nearest_points(aoi_p, proj)
        (lon1, lon2), (lat1, lat2) = inv.transform([p1.x, p2.x], [p1.y, p2.y])
        az, _, metres = _GEOD.inv(lon1, lat1, lon2, lat2)
        out.append(Nearest(float(metres) / 1000.0, float(az) % 360.0))
    return out


# --- OSM -----------------------------------------------------------------------------------


def _osm_name(src: Source) -> str:
    parts = [p for p in src.name.split("/") if p]
    shown = ":".join(parts[-2:]) if parts else src.name
    return safe_text(shown)


def _osm_holds(src: Source) -> str:
    if src.fmt != "vector":
        return "all OSM features"
    kinds = []
    if src.building_layer:
        kinds.append("buildings")
    if src.road_layer:
        kinds.append("roads")
    kinds += [f"{safe_text(k, 30)} tags" for k in sorted(src.tag_keys - {"building", "highway"})]
    return ", ".join(kinds) or "tagged features"


def _osm_date(src: Source) -> str | None:
    when = parse_datetime(src.timestamp) if src.timestamp else None
    return when.date().isoformat() if when else None


def _bbox_label(bounds: Iterable[float]) -> str:
    w, s, e, n = (round(float(v), 3) for v in bounds)
    return f"lon {w:g} to {e:g}, lat {s:g} to {n:g}"


# --- the tool --------------------------------------------------------------------------------


def run(args: CoverageArgs, ctx: ToolContext) -> ToolResult:
    offline = ctx.profile == "offline"
    url = ctx.resolve_stac_url()
    shown_url = public_url(url)
    client = open_client(url, ctx)
    cards, caveats = segmentation_cards(ctx)
    wanted = list(ctx.stac_collections) or None

    metas = _collection_meta(client, shown_url)
    params: dict[str, Any] = {"max_items": ITEM_CAP, "limit": PAGE_SIZE}
    if wanted:
        params["collections"] = wanted
    items, capped, bad = _read_items(client, params, shown_url, cards, offline)

    colls: dict[str, _Collection] = {}
    for cid, meta in metas.items():
        if wanted and cid not in wanted:
            continue
        sid = safe_text(cid)
        colls.setdefault(sid, _Collection(sid)).meta_dates = _meta_dates(meta)
    for it in items:
        colls.setdefault(it.coll, _Collection(it.coll)).items.append(it)
    ordered = sorted(colls.values(), key=lambda c: c.cid)

    values: dict[str, Quantity] = {
        "scenes": Quantity(value=len(items), unit="scenes"),
        "collections": Quantity(value=len(ordered), unit="collections"),
    }
    facts: dict[str, str] = {}
    coll_out: list[dict[str, Any]] = []
    features: list[dict[str, Any]] = []
    footprints: list[BaseGeometry | None] = []
    for n, c in enumerate(ordered):
        k = _key(c.cid)
        values[f"scenes:{k}"] = Quantity(value=len(c.items), unit="scenes")
        gsds = c.gsds()
        if gsds:
            values[f"gsd_m:{k}"] = Quantity(value=gsds[0], unit="m", note="finest")
        bands = c.bands()
        if n < FACT_COLLECTIONS:
            facts[f"collection:{k}"] = _collection_line(c, bands, offline, capped)
        fp = c.footprint()
        footprints.append(fp)
        entry: dict[str, Any] = {
            "id": c.cid,
            "scenes": len(c.items),
            "dates": c.dates(),
            "gsd_m": gsds,
            "platforms": c.platforms(),
            "instruments": c.instruments(),
            "bands": bands,
            "measurable": c.measurable(),
            "pixels": "online" if c.remote_only() else "local" if c.items else "unknown",
            "bbox": [round(v, 6) for v in fp.bounds] if fp is not None else None,
        }
        coll_out.append(entry)
        if fp is not None and not fp.is_empty:
            features.append(
                {
                    "type": "Feature",
                    "geometry": to_rfc7946(fp),
                    "properties": {
                        "source": NAME,
                        "label": f"{c.cid}: {c.dates()}, {c.gsd_label()}",
                        "collection": c.cid,
                        "dates": c.dates(),
                        "gsd": gsds[0] if gsds else None,
                        "gsd_m": gsds,
                        "scenes": len(c.items),
                    },
                }
            )
    facts["collections"] = (
        "; ".join(f"{c.cid} ({c.dates()}, {c.gsd_label()})" for c in ordered[:FACT_COLLECTIONS])
        + (f"; +{len(ordered) - FACT_COLLECTIONS} more" if len(ordered) > FACT_COLLECTIONS else "")
    ) or "no imagery in the catalogue"
    by_target: dict[str, list[str]] = {}
    for c in ordered:
        for t in c.measurable():
            by_target.setdefault(t, []).append(c.cid)
    facts["measurable"] = (
        "; ".join(f"{t}: {', '.join(cs)}" for t, cs in by_target.items())
        or "no collection has the bands segment needs"
    )
    if capped:
        caveats.append(
            f"The catalogue was read up to {ITEM_CAP} items: scene counts, dates and "
            "footprints are partial."
        )
        facts["catalogue_read"] = f"stopped at {ITEM_CAP} items: counts are partial"
    else:
        facts["catalogue_read"] = f"all {len(items)} items read"
    if bad:
        caveats.append(f"{bad} catalogue item(s) could not be read and are not counted.")
    undated = [c.cid for c in ordered if c.items and c.dates() == "no date"]
    if undated:
        caveats.append(
            "Acquisition dates are unknown for " + ", ".join(undated[:8])
            + ("..." if len(undated) > 8 else "") + "; never state one."
        )  # fmt: skip
    online_only = [c.cid for c in ordered if c.remote_only()]
    if offline and online_only:
        caveats.append(
            f"{', '.join(online_only[:5])}: only metadata offline (the pixels are online); "
            "the online profile can measure on them."
        )

    # OSM sources, as osm_overlay finds them.
    osm_sources: list[Source] = []
    if offline:
        try:
            osm_sources = local_sources(ctx)
        except Exception as exc:  # the report goes on without them
            log.warning("coverage: OSM sources not listed (%s)", exc)
            caveats.append("The local OpenStreetMap extracts could not be listed.")
        values["osm_extracts"] = Quantity(value=len(osm_sources), unit="extracts")
        facts["osm_extracts"] = (
            "; ".join(
                f"{_osm_name(s)} ({_osm_holds(s)}, {_bbox_label(s.extent.bounds)}"
                + (f", data of {d}" if (d := _osm_date(s)) else "")
                + ")"
                for s in osm_sources
            )
            or "none"
        )
    else:
        facts["osm_extracts"] = "OpenStreetMap through Overpass (online): any area"
    osm_out: dict[str, Any] = {
        "source": "local extracts" if offline else "overpass",
        "extracts": [
            {
                "name": _osm_name(s),
                "format": s.fmt,
                "holds": _osm_holds(s),
                "bbox": [round(v, 6) for v in s.extent.bounds],
                "date": _osm_date(s),
            }
            for s in osm_sources
        ],
    }

    # Capabilities configured here.
    caps = _capabilities(ctx, cards, shown_url)
    facts.update(caps["facts"])
    if args.topic:
        facts["topic"] = args.topic

    summary_aoi = ""
    aoi_out: dict[str, Any] | None = None
    if args.aoi is not None:
        aoi_out, summary_aoi = _aoi_report(
            args, ctx, client, shown_url, cards, offline, items, capped, osm_sources, values,
            facts, caveats, wanted,
        )  # fmt: skip

    union = unary_union([fp for fp in footprints if fp is not None])
    geometry = to_rfc7946(union) if not union.is_empty else None
    layer = {"type": "FeatureCollection", "features": features}
    provenance = Provenance(
        tool=NAME,
        source="STAC",
        arguments=args.model_dump(mode="json", exclude_none=True),
        sources=[s.vector_source() for s in osm_sources],
        details={
            "stac_api_url": shown_url,
            "profile": ctx.profile,
            "items_read": len(items),
            "item_cap": ITEM_CAP,
            "capped": capped,
            "collections_filter": wanted,
            "segmentation_models": [c.name for c in cards],
        },
    )
    title = (
        f"Data and capabilities: {len(ordered)} imagery collection(s), {len(items)} scene(s)"
        + (f", {len(osm_sources)} local map source(s)" if offline else ", OSM online")
    )
    evidence = EvidenceDraft(
        key="coverage",
        kind="figure",
        title=title,
        values=values,
        geometry=geometry,
        provenance=provenance,
        layer=layer,
        caveats=list(caveats),
        facts=facts,
    )
    coverage: dict[str, Any] = {
        "profile": ctx.profile,
        "stac_api": shown_url,
        "items_read": len(items),
        "capped": capped,
        "collections": coll_out,
        "measurable": by_target,
        "osm": osm_out,
        "capabilities": caps["summary"],
    }
    if args.topic:
        coverage["topic"] = args.topic
    if aoi_out is not None:
        coverage["aoi"] = aoi_out
    summary = (
        f"Catalogue: {len(items)} scene(s) in {len(ordered)} collection(s)"
        + (" (partial)" if capped else "")
        + f": {facts['collections']}. "
        + (
            f"Local map sources: {len(osm_sources)}. "
            if offline
            else "Map features: OpenStreetMap online. "
        )
        + f"Vision model: {caps['facts']['vision_model']}."
        + summary_aoi
    )
    outputs: dict[str, Any] = {"coverage": coverage}
    if args.aoi is not None:
        outputs["aoi"] = args.aoi.model_dump(mode="json")
    return ToolResult(
        status="ok", summary=summary, outputs=outputs, evidence=[evidence], caveats=caveats
    )


def _collection_line(c: _Collection, bands: list[str], offline: bool, capped: bool) -> str:
    """One collection as a short plain line of facts (safe ids, parsed dates, numbers)."""
    if not c.items:
        return f"0 scenes read; {c.dates()}" + (
            "; not sampled: the catalogue read stopped before it" if capped else ""
        )
    line = f"{len(c.items)} scene{'s' if len(c.items) != 1 else ''}; {c.dates()}; "
    line += c.gsd_label()
    if c.platforms():
        line += f"; platform {', '.join(c.platforms()[:3])}"
    if c.instruments():
        line += f"; instruments {', '.join(c.instruments()[:4])}"
    if bands:
        more = len(bands) - _MAX_BANDS_SHOWN
        line += f"; bands {' '.join(bands[:_MAX_BANDS_SHOWN])}" + (
            f" (+{more} more)" if more > 0 else ""
        )
    return line + f"; measures {c.measurable_label(offline)}"


def _capabilities(ctx: ToolContext, cards: list[ModelCard], url: str) -> dict[str, Any]:
    from tools.registry import tool_specs  # here: the registry imports this module

    names = sorted(tool_specs())
    if ctx.vlm is not None:
        host = public_url(ctx.vlm.base_url)
        vlm_text = f"{safe_text(ctx.vlm.model)} at {_config_text(host)}"
    else:
        vlm_text = "not configured: ground (finding objects such as ships by name) is unavailable"
    tools_text = ", ".join(
        n + (" (unavailable: no vision model)" if n == "ground" and ctx.vlm is None else "")
        for n in names
    )
    seg = [safe_text(c.name) for c in cards]
    facts = {
        "profile": ctx.profile,
        "stac_api": _config_text(url),
        "vision_model": vlm_text,
        "segmentation_models": ", ".join(seg) or "none",
        "segment_targets": ", ".join(SUPPORTED_TARGETS),
        "geocoding": "GeoNames gazetteer (offline)"
        if ctx.profile == "offline"
        else "Nominatim (online)",
        "tools": tools_text,
    }
    summary = {
        "vision_model": safe_text(ctx.vlm.model) if ctx.vlm is not None else None,
        "grounding": ctx.vlm is not None,
        "segmentation_models": seg,
        "segment_targets": list(SUPPORTED_TARGETS),
        "geocoding": facts["geocoding"],
        "tools": names,
    }
    return {"facts": facts, "summary": summary}


def _aoi_report(
    args: CoverageArgs,
    ctx: ToolContext,
    client: Any,
    url: str,
    cards: list[ModelCard],
    offline: bool,
    catalogue: list[_Item],
    capped: bool,
    osm_sources: list[Source],
    values: dict[str, Quantity],
    facts: dict[str, str],
    caveats: list[str],
    wanted: list[str] | None,
) -> tuple[dict[str, Any], str]:
    """What the catalogue and the map sources hold over the AOI (values/facts filled in)."""
    assert args.aoi is not None
    aoi = args.aoi
    aoi_shape = aoi.shape()
    aoi_km2 = max(geodesic_area_km2(aoi_shape), 1e-12)
    params: dict[str, Any] = {"max_items": ITEM_CAP, "limit": PAGE_SIZE}
    if aoi.geometry is not None:
        params["intersects"] = aoi.geometry
    else:
        params["bbox"] = list(aoi.bbox)
    if wanted:
        params["collections"] = wanted
    found, aoi_capped, _ = _read_items(client, params, url, cards, offline)
    # The API also returns footprints that only touch the AOI: those image none of it.
    over = [
        i
        for i in found
        if i.footprint.intersects(aoi_shape)
        and geodesic_area_km2(i.footprint.intersection(aoi_shape)) > 0
    ]
    over.sort(key=lambda i: (i.scene.gsd or math.inf, i.coll, i.sid))
    where = safe_text(aoi.name) if aoi.name else "bbox " + ", ".join(f"{v:g}" for v in aoi.bbox)
    facts["aoi"] = where
    values["aoi_scenes"] = Quantity(value=len(over), unit="scenes")
    per_coll: dict[str, list[_Item]] = {}
    for i in over:
        per_coll.setdefault(i.coll, []).append(i)
    for cid, its in sorted(per_coll.items()):
        values[f"aoi_scenes:{_key(cid)}"] = Quantity(value=len(its), unit="scenes")
    out: dict[str, Any] = {
        "bbox": [round(v, 6) for v in aoi.bbox],
        "scene_count": len(over),
        "scenes": [
            {
                "id": i.sid,
                "collection": i.coll,
                "dates": i.date_label,
                "gsd_m": sig(i.scene.gsd) if i.scene.gsd else None,
                "covers_pct": sig(
                    100 * geodesic_area_km2(i.footprint.intersection(aoi_shape)) / aoi_km2
                ),
                "measurable": list(i.measurable),
            }
            for i in over[: args.limit]
        ],
    }
    if aoi_capped:
        caveats.append(f"The search over the area stopped at {ITEM_CAP} items.")
    measurable: list[str] = []
    for i in over:
        measurable += [t for t in i.measurable if t not in measurable]
    if over:
        shown = [
            f"{i.sid} ({i.coll}, {i.date_label}, "
            + (f"{sig(i.scene.gsd):g} m" if i.scene.gsd else "resolution unknown")
            + (", pixels online only" if offline and i.remote else "")
            + ")"
            for i in over[: args.limit]
        ]
        more = len(over) - len(shown)
        facts["aoi_imagery"] = (
            f"{len(over)} scene(s): " + "; ".join(shown) + (f"; +{more} more" if more > 0 else "")
        )
        text = f" Over {where}: {len(over)} scene(s)"
    else:
        facts["aoi_imagery"] = "no imagery in the catalogue covers this area"
        text = f" Over {where}: no imagery"
        near = _nearest_by_collection(aoi_shape, catalogue, args.limit)
        out["nearest"] = near
        if near:
            first = near[0]
            values["nearest_imagery_km"] = Quantity(value=first["km"], unit="km")
            if first["gsd_m"] is not None:
                values["nearest_imagery_gsd_m"] = Quantity(value=first["gsd_m"], unit="m")
            for n in near:
                values[f"nearest_km:{_key(n['collection'])}"] = Quantity(value=n["km"], unit="km")
            facts["nearest_imagery"] = "; ".join(
                f"{n['collection']} {n['km']:g} km {n['direction']} "
                f"({n['item']}, {n['dates']}, "
                + (f"{n['gsd_m']:g} m" if n["gsd_m"] is not None else "resolution unknown")
                + (f", measures {', '.join(n['measurable'])}" if n["measurable"] else "")
                + ")"
                for n in near
            )
            text += f"; nearest: {first['collection']} {first['km']:g} km {first['direction']}"
            if capped:
                caveats.append(
                    f"The nearest imagery was sought among the first {ITEM_CAP} catalogue items."
                )
        else:
            facts["nearest_imagery"] = "none: the catalogue holds no imagery"

    # Map features over the AOI.
    osm_kinds: list[str] = []
    if offline:
        covering = [
            s
            for s in osm_sources
            if s.extent.intersects(aoi_shape) and s.extent.intersection(aoi_shape).area > 0
        ]
        if covering:
            covered = unary_union([s.extent for s in covering]).intersection(aoi_shape)
            pct = sig(min(100.0, 100 * geodesic_area_km2(covered) / aoi_km2))
            values["aoi_osm_covered_pct"] = Quantity(value=pct, unit="%")
            facts["aoi_osm"] = f"{pct:g}% of the area covered by " + ", ".join(
                f"{_osm_name(s)} ({_osm_holds(s)})" for s in covering
            )
            for s in covering:
                holds = _osm_holds(s)
                osm_kinds += [k for k in holds.split(", ") if k not in osm_kinds]
            out["osm_covered_pct"] = pct
            out["osm_sources"] = [_osm_name(s) for s in covering]
        else:
            values["aoi_osm_covered_pct"] = Quantity(value=0.0, unit="%")
            out["osm_covered_pct"] = 0.0
            out["osm_sources"] = []
            dists = nearest_distances(aoi_shape, [s.extent for s in osm_sources])
            if dists:
                j = int(np.argmin([d.km for d in dists]))
                km = sig(dists[j].km)
                values["nearest_osm_km"] = Quantity(value=km, unit="km")
                out["nearest_osm"] = {
                    "name": _osm_name(osm_sources[j]),
                    "km": km,
                    "direction": dists[j].direction,
                }
                facts["aoi_osm"] = (
                    "no local map extract covers this area; nearest: "
                    f"{_osm_name(osm_sources[j])} {km:g} km {dists[j].direction}"
                )
            else:
                facts["aoi_osm"] = "no local map extract covers this area"
    else:
        osm_kinds = ["all OSM features (Overpass)"]
        out["osm_covered_pct"] = 100.0
        facts["aoi_osm"] = "OpenStreetMap through Overpass (online) covers any area"
    out["measurable"] = measurable
    out["map_features"] = osm_kinds
    parts = []
    if measurable:
        parts.append(f"from imagery: {', '.join(measurable)}")
    if osm_kinds:
        parts.append(f"from map data: {', '.join(osm_kinds)}")
    if ctx.vlm is not None and over:
        parts.append("objects by name on the imagery (ground)")
    facts["aoi_measurable"] = "; ".join(parts) or "nothing here with the data at hand"
    text += f"; measurable there: {facts['aoi_measurable']}."
    return out, text


def _nearest_by_collection(
    aoi_shape: BaseGeometry, items: list[_Item], limit: int
) -> list[dict[str, Any]]:
    """The nearest scene of each collection, nearest collections first."""
    dists = nearest_distances(aoi_shape, [i.footprint for i in items])
    best: dict[str, tuple[Nearest, _Item]] = {}
    for d, i in zip(dists, items, strict=True):
        cur = best.get(i.coll)
        if cur is None or d.km < cur[0].km:
            best[i.coll] = (d, i)
    ranked = sorted(best.values(), key=lambda t: (t[0].km, t[1].coll))[:limit]
    return [
        {
            "collection": i.coll,
            "item": i.sid,
            "km": sig(d.km),
            "bearing_deg": round(d.bearing_deg, 1),
            "direction": d.direction,
            "gsd_m": sig(i.scene.gsd) if i.scene.gsd else None,
            "dates": i.date_label,
            "measurable": list(i.measurable),
        }
        for d, i in ranked
    ]


SPEC = ToolSpec(
    name=NAME,
    args_schema=CoverageArgs,
    run=run,
    description=(
        "What data and capabilities GeoScout has: imagery collections (scenes, dates, "
        "resolution, bands, what each can measure, footprints), OpenStreetMap extracts, the "
        "vision model and profile. With an area: the scenes over it, or the nearest imagery "
        "with its distance and direction, and whether map data covers it."
    ),
    prompt_fragment=(
        "coverage(aoi?, topic?, limit?): what GeoScout can do and which data it has. Use for "
        "'what can you do?', 'what data do you have?', and when the question asks for data "
        "GeoScout may not have (air quality, a place with no imagery): it lists the imagery "
        "collections with dates ('no date' when unknown), resolution and measurable targets, "
        "the OSM extracts and the configured capabilities. aoi: a bbox or @step.aoi; then it "
        "says which scenes cover the area, or the nearest imagery in km and its direction. "
        "topic: the thing asked about, echoed only. Outputs: aoi, coverage."
    ),
    outputs={"aoi": "aoi", "coverage": "coverage"},
    accepts={"aoi": ("aoi", "geometry", "scene")},
    label=lambda args: "Looking up the data and tools available",
    stated_only=frozenset({"limit"}),
    produces=("figure",),
)


__all__ = ["SPEC", "CoverageArgs", "Nearest", "measurable_targets", "nearest_distances", "run"]
