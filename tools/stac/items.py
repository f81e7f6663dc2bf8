"""STAC items (dicts) read into GeoScout's terms: a :class:`SceneRef` with named bands, the
item's footprint and date, its links; GeoScout's own ``geoscout:`` fields dropped from items
of a foreign catalog.

Unknown acquisition dates stay unknown: a SceneRef of such an item has ``datetime=None``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from tools.geo import SceneAsset, SceneRef

OWN_PREFIX = "geoscout:"
_RASTER_TYPES = ("image/tiff", "image/jp2", "geotiff", "image/vnd.stac.geotiff")
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")


def strip_own_fields(item: dict[str, Any]) -> dict[str, Any]:
    """An item without the ``geoscout:`` properties a foreign catalog may set: GeoScout's own
    fields (areas, dates known, attribution, licence) are computed, never read from data."""
    props = item.get("properties")
    if not isinstance(props, dict) or not any(str(k).startswith(OWN_PREFIX) for k in props):
        return item
    clean = {k: v for k, v in props.items() if not str(k).startswith(OWN_PREFIX)}
    return {**item, "properties": clean}


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
        self_href=item_link(item, "self"),
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


def item_link(item: dict[str, Any], rel: str) -> str | None:
    """The href of the item's first link with relation ``rel`` ("self", "via"), if any."""
    for link in item.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == rel and link.get("href"):
            return str(link["href"])
    return None


def item_shape(item: dict[str, Any]) -> BaseGeometry:
    """The item's footprint: its geometry, else its bbox."""
    if item.get("geometry"):
        return shape(item["geometry"])
    return box(*item["bbox"][:4])


def parse_datetime(value: Any) -> dt.datetime | None:
    """An ISO 8601 timestamp as an aware datetime (UTC when it has no zone); None if absent
    or unreadable."""
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
