"""The ``segment`` tool: pixel classes (water, vegetation, cloud, cloud shadow) in a scene.

One scene or one raster, one target, one model: read the needed bands onto one grid over the
AOI (:mod:`tools.raster`), classify (spectral index, ONNX cloud U-Net or a local transformers
model), count areas from pixels (true ground areas: see ``Grid.pixel_area_km2``), vectorise
the mask for the map and return one "mask" evidence item with full provenance.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from rasterio.enums import Resampling
from rasterio.features import shapes, sieve
from rasterio.warp import reproject
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from models import csmask
from models.registry import (
    ModelCard,
    ModelUnavailableError,
    UnknownModelError,
    get_model_card,
    list_models,
    load_transformers_segmenter,
)
from models.spectral import (
    INDICES,
    area_with_sensitivity,
    compute_index,
    masked_area,
    threshold_mask,
)
from tools.base import EvidenceDraft, GeoScoutToolError, Quantity, ToolContext, ToolResult, ToolSpec
from tools.geo import AOI, SceneRef, to_rfc7946
from tools.raster import BandStack, geometry_to_4326, read_bands, scene_from_raster

# Loose words -> canonical targets supported offline ("|"-separated to keep the table short).
_TARGET_WORDS: dict[str, tuple[str, ...]] = {
    target: tuple(words.split("|"))
    for target, words in {
        "water": "water|open water|surface water|water body|water bodies|lake|lakes|pond|ponds|"
        "river|rivers|reservoir|reservoirs|flood|flooding|flooded area|flood water|"
        "wetland water|standing water",
        "vegetation": "vegetation|green|greenery|green cover|green space|green spaces|trees|tree|"
        "tree cover|forest|forests|woods|grass|plants|crops|vegetated area|canopy",
        "cloud": "cloud|clouds|cloud cover|cloudiness|cloudy|cloudy area",
        "cloud_shadow": "shadow|shadows|cloud shadow|cloud shadows",
    }.items()
}
_SYNONYMS = {word: target for target, words in _TARGET_WORDS.items() for word in words}
SUPPORTED_TARGETS = tuple(_TARGET_WORDS)
_DEFAULT_MODEL = {
    "water": "ndwi",
    "vegetation": "ndvi",
    "cloud": "ukis-csmask",
    "cloud_shadow": "ukis-csmask",
}
_CSMASK_ALIASES = {"ukis-csmask", "csmask", "ukis_csmask", "ukis csmask", "cloudmask"}
# Objects smaller than this many pixels are merged into their surroundings before vectorising.
SIEVE_PIXELS = 4


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[_\-]+", " ", text.strip().lower()))


class SegmentArgs(BaseModel):
    """Arguments of ``segment``: exactly one of ``scene`` or ``raster``, and a target."""

    model_config = ConfigDict(extra="forbid")

    scene: SceneRef | None = Field(default=None, description="A scene from stac_search")
    raster: str | None = Field(
        default=None, description="Path of a GeoTIFF/COG in a data or upload folder"
    )
    bands: list[str] | None = Field(
        default=None,
        description="Common names of the raster's bands in file order, e.g. [red, green, blue, nir]",
    )
    target: str = Field(description="water, vegetation, cloud or cloud_shadow")
    aoi: AOI | None = Field(default=None, description="Area to analyse; the whole scene if absent")
    model: str | None = Field(
        default=None, description="ndwi, ndvi, ukis-csmask or a configured local model"
    )
    threshold: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="Index threshold (ndwi 0.0, ndvi 0.3 by default)"
    )
    mask_clouds: bool | None = Field(
        default=None,
        description="Leave cloud and cloud-shadow pixels out of water/vegetation areas "
        "(default: on for satellite reflectance with blue, green, red and NIR)",
    )

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        low = v.strip().lower()
        if _norm(low) in {_norm(a) for a in _CSMASK_ALIASES}:
            return "ukis-csmask"
        # Built-in names are case-insensitive; local model names are kept as configured.
        return low if low in {"ndwi", "ndvi"} or low.startswith("ukis-csmask-") else v.strip()

    @model_validator(mode="after")
    def _check(self) -> SegmentArgs:
        if (self.scene is None) == (self.raster is None):
            raise ValueError("give exactly one of scene (from stac_search) or raster (a file path)")
        if self.bands is not None and self.raster is None:
            raise ValueError("bands names the bands of a raster file; a scene already names them")
        word = _norm(self.target)
        canonical = _SYNONYMS.get(word) or _SYNONYMS.get(word.rstrip("s"))
        if canonical:
            self.target = canonical
        elif self.model and self.model.lower() not in {"ndwi", "ndvi", "ukis-csmask"}:
            # A label of a configured local model; checked against its labels when it runs.
            self.target = word.replace(" ", "_")
        else:
            raise ValueError(
                f"target {self.target!r} is not supported offline; supported: "
                f"{', '.join(SUPPORTED_TARGETS)} (or a label of a configured local model, "
                "given with `model`)"
            )
        return self


# ---- model choice --------------------------------------------------------------------------


def _local_models(ctx: ToolContext) -> dict[str, str]:
    raw = ctx.extra.get("segmentation_models") or {}
    return {str(k): str(v) for k, v in dict(raw).items()}


def _choose_model(args: SegmentArgs, ctx: ToolContext) -> ModelCard | None:
    """The card to run; None means "pick the ukis-csmask variant from the data"."""
    name = args.model or _DEFAULT_MODEL.get(args.target)
    if name is None:
        raise GeoScoutToolError("invalid_args", f"no default model for target {args.target!r}")
    if name == "ukis-csmask":
        card = None
    else:
        local = _local_models(ctx)
        try:
            card = get_model_card(name, local)
        except UnknownModelError as exc:
            names = [c.name for c in list_models("segmentation", local)]
            raise GeoScoutToolError(
                "invalid_args",
                f"unknown segmentation model {name!r}",
                f"use one of: {', '.join(['ukis-csmask', *names])}",
                candidates=names,
            ) from exc
        except ValueError as exc:  # a configured folder that is not a segmentation model
            raise GeoScoutToolError(
                "unavailable", f"model {name!r} cannot be loaded: {exc}"
            ) from exc
    targets = card.targets if card else ["cloud", "cloud_shadow"]
    if args.target not in targets:
        label = card.name if card else "ukis-csmask"
        raise GeoScoutToolError(
            "unsupported",
            f"model {label} does not map {args.target}; it maps {', '.join(targets)}",
            f"for {args.target} use {_DEFAULT_MODEL.get(args.target, 'a model with that label')}",
        )
    return card


# ---- classification ------------------------------------------------------------------------


@dataclass
class _Classified:
    """What a classifier hands to the evidence builder."""

    stack: BandStack
    card: ModelCard
    mask: NDArray[np.bool_]  # the target class, inside valid
    valid: NDArray[np.bool_]  # pixels that were analysed
    values: dict[str, Quantity]
    method: str
    short_method: str
    threshold: float | None
    caveats: list[str]
    helpers: list[ModelCard] = field(default_factory=list)  # e.g. the cloud screen


def sig(x: float, digits: int = 3) -> float:
    """Round to ``digits`` significant figures."""
    if x == 0 or not math.isfinite(x):
        return 0.0 if x == 0 else x
    return round(x, max(0, digits - 1 - math.floor(math.log10(abs(x)))))


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


def _run_index(
    args: SegmentArgs, scene: SceneRef, card: ModelCard, ctx: ToolContext
) -> _Classified:
    spec = INDICES[card.name]
    stack = read_bands(
        scene, spec.bands, ctx, aoi=args.aoi, purpose=f"{spec.name.upper()} ({args.target})"
    )
    thr = spec.default_threshold if args.threshold is None else args.threshold
    index, ok = compute_index(spec.name, stack.bands, stack.valid)
    valid = stack.valid & ok
    pa = stack.grid.pixel_area_km2()
    caveats: list[str] = []
    screen = _cloud_screen(args, scene, stack, ctx, caveats)
    if screen is not None:
        valid_before = valid
        valid = valid & ~screen.obscured
        if not valid.any():
            raise GeoScoutToolError(
                "no_data",
                f"the area of interest is entirely under cloud or cloud shadow in scene {scene.id}",
                "choose a clearer scene (stac_search with max_cloud) or another date",
            )
    est = area_with_sensitivity(index, thr, pa, within=valid)
    analysed = masked_area(valid, pa)
    t = args.target
    values = {
        f"{t}_area_km2": Quantity(
            value=sig(est.area),
            unit="km2",
            uncertainty=sig(est.uncertainty),
            note=f"{sig(est.area_low)} to {sig(est.area_high)} km2 for thresholds "
            f"{thr + est.delta:g} and {thr - est.delta:g}",
        ),
        f"{t}_fraction_pct": Quantity(
            value=round(_pct(est.area, analysed), 1),
            unit="%",
            uncertainty=round(_pct(est.uncertainty, analysed), 1),
        ),
        "analysed_area_km2": Quantity(value=sig(analysed), unit="km2"),
    }
    method = (
        f"{spec.formula(thr)}, per pixel on {stack.radiometry.describe()}; area from pixel "
        f"counts; uncertainty = half the area change between thresholds {thr - est.delta:g} "
        f"and {thr + est.delta:g}"
    )
    if screen is not None:
        obscured = valid_before & screen.obscured
        pct = _pct(masked_area(obscured, pa), masked_area(valid_before, pa))
        values["cloud_masked_pct"] = Quantity(
            value=round(pct, 1), unit="%", note=f"cloud and cloud shadow left out ({screen.model})"
        )
        method += (
            f"; cloud and cloud-shadow pixels ({screen.model} at 30 m) left out of the "
            "analysed area"
        )
        if pct >= 1.0:
            caveats.append(
                f"{pct:.0f}% of the area was under cloud or cloud shadow and was left out; the "
                f"{t} there is unknown and the fraction refers to the clear part only"
            )
    elif t == "water" and scene.cloud_cover is not None and scene.cloud_cover >= 10:
        caveats.append(
            f"the scene reports {scene.cloud_cover:.0f}% cloud cover and clouds were not masked: "
            "water under cloud is missed and cloud shadow can read as water"
        )
    return _Classified(
        stack,
        card,
        threshold_mask(index, thr) & valid,
        valid,
        values,
        method,
        f"{spec.name.upper()} > {thr:g} ({spec.reference.split(',')[0]})",
        thr,
        caveats,
        [screen.card] if screen is not None else [],
    )


class _Screen:
    def __init__(self, obscured: NDArray[np.bool_], model: str, card: ModelCard) -> None:
        self.obscured = obscured
        self.model = model
        self.card = card


def _cloud_screen(
    args: SegmentArgs, scene: SceneRef, stack: BandStack, ctx: ToolContext, caveats: list[str]
) -> _Screen | None:
    """Cloud and shadow pixels on the index grid (ukis-csmask at 30 m), when it applies.

    Runs by default on satellite reflectance that has blue, green, red and NIR; aerial and
    uncalibrated imagery are not screened (said in a caveat only when screening was asked).
    """
    if args.mask_clouds is False:
        return None
    have = scene.available_bands()
    level = stack.radiometry.product_level
    if stack.radiometry.kind != "reflectance" or level is None or not set(csmask.BANDS_4) <= have:
        if args.mask_clouds:
            caveats.append(
                "clouds could not be masked: that needs satellite reflectance with blue, green, "
                "red and NIR bands"
            )
        return None
    _, order = csmask.variant_for(have, level)
    cstack = read_bands(
        scene, order, ctx, aoi=args.aoi, resolution_m=csmask.NATIVE_GSD_M, purpose="cloud masking"
    )
    try:
        cm = csmask.run_csmask(cstack.cube(order), order, level, cstack.valid, _threads(ctx))
    except csmask.CSMaskUnavailable:
        caveats.append("clouds were not masked: ukis-csmask is not installed")
        return None
    obscured30 = ((cm.classes != csmask.CLEAR) & cm.valid).astype(np.uint8)
    obscured = np.zeros(stack.grid.shape, dtype=np.uint8)
    reproject(
        obscured30,
        obscured,
        src_transform=cstack.grid.transform,
        src_crs=cstack.grid.crs,
        dst_transform=stack.grid.transform,
        dst_crs=stack.grid.crs,
        resampling=Resampling.nearest,
    )
    return _Screen(obscured.astype(bool), cm.model_name, get_model_card(cm.model_name))


def _threads(ctx: ToolContext) -> int | None:
    threads = ctx.extra.get("threads")
    return int(threads) if threads else None


def _run_csmask(
    args: SegmentArgs, scene: SceneRef, card: ModelCard | None, ctx: ToolContext
) -> _Classified:
    have = scene.available_bands()
    try:
        _, order = csmask.variant_for(card.inputs if card else have, "l1c")
    except ValueError as exc:
        raise GeoScoutToolError(
            "unsupported",
            f"cloud masking needs the bands {', '.join(csmask.BANDS_4)} (and ideally swir16, "
            f"swir22); scene {scene.id} has {', '.join(sorted(have)) or 'no named bands'}",
            "use a Sentinel-2 or Landsat scene",
        ) from exc
    stack = read_bands(
        scene, order, ctx, aoi=args.aoi, resolution_m=csmask.NATIVE_GSD_M, purpose="cloud masking"
    )
    level = stack.radiometry.product_level
    if stack.radiometry.kind != "reflectance" or level is None:
        raise GeoScoutToolError(
            "unsupported",
            f"cloud masking needs calibrated satellite reflectance; {scene.id} holds "
            f"{stack.radiometry.name}",
            "use a Sentinel-2 or Landsat scene",
        )
    caveats: list[str] = []
    if card is not None and level not in card.product_levels:
        caveats.append(f"{card.name} expects {card.product_levels[0]} data; this scene is {level}")
        level = card.product_levels[0]
    try:
        cm = csmask.run_csmask(stack.cube(order), order, level, stack.valid, _threads(ctx))
    except csmask.CSMaskUnavailable as exc:
        raise GeoScoutToolError(
            "unavailable", str(exc), "pip install 'ukis-csmask[cpu]==1.0.0'"
        ) from exc
    used = get_model_card(cm.model_name)
    valid = stack.valid & cm.valid
    pa = stack.grid.pixel_area_km2()
    analysed = masked_area(valid, pa)
    cloud = (cm.classes == csmask.CLOUD) & valid
    shadow = (cm.classes == csmask.SHADOW) & valid
    cloud_km2, shadow_km2 = masked_area(cloud, pa), masked_area(shadow, pa)
    values = {
        "cloud_cover_pct": Quantity(value=round(_pct(cloud_km2, analysed), 1), unit="%"),
        "cloud_shadow_pct": Quantity(value=round(_pct(shadow_km2, analysed), 1), unit="%"),
        "cloud_area_km2": Quantity(value=sig(cloud_km2), unit="km2"),
        "cloud_shadow_area_km2": Quantity(value=sig(shadow_km2), unit="km2"),
        "analysed_area_km2": Quantity(value=sig(analysed), unit="km2"),
    }
    if args.threshold is not None:
        caveats.append("the threshold argument applies to spectral indices only and was ignored")
    res = stack.grid.ground_resolution_m()
    method = (
        f"{used.name} {used.version} (U-Net, classes clear/cloud/cloud shadow, argmax of "
        f"softmax) on {', '.join(order)} {level.upper()} reflectance resampled to {res:.0f} m "
        f"({stack.radiometry.describe()})"
    )
    return _Classified(
        stack,
        used,
        cloud if args.target == "cloud" else shadow,
        valid,
        values,
        method,
        f"{used.name} cloud/shadow U-Net",
        None,
        caveats,
    )


def _run_transformers(
    args: SegmentArgs, scene: SceneRef, card: ModelCard, ctx: ToolContext
) -> _Classified:
    order = ["red", "green", "blue"]
    stack = read_bands(scene, order, ctx, aoi=args.aoi, purpose=f"model {card.name}")
    try:
        seg = load_transformers_segmenter(card)
    except ModelUnavailableError as exc:
        raise GeoScoutToolError("unavailable", str(exc)) from exc
    label_id = next((i for i, lab in seg.labels.items() if lab == args.target), None)
    if label_id is None:
        raise GeoScoutToolError(
            "unsupported",
            f"model {card.name} has no class {args.target!r}",
            f"its classes: {', '.join(seg.labels.values())}",
        )
    rgb = stack.cube(order)
    caveats: list[str] = []
    if stack.radiometry.kind == "reflectance":
        # RGB models are trained on display-range pictures; reflectance 0.3 maps to white.
        rgb = np.clip(rgb / 0.3, 0.0, 1.0)
        caveats.append(
            "reflectance was stretched to a display range (0-0.3 -> 0-1) for an RGB model"
        )
    pred = seg.predict(np.nan_to_num(rgb))
    valid = stack.valid
    pa = stack.grid.pixel_area_km2()
    analysed = masked_area(valid, pa)
    mask = (pred == label_id) & valid
    area = masked_area(mask, pa)
    t = args.target
    values = {
        f"{t}_area_km2": Quantity(value=sig(area), unit="km2"),
        f"{t}_fraction_pct": Quantity(value=round(_pct(area, analysed), 1), unit="%"),
        "analysed_area_km2": Quantity(value=sig(analysed), unit="km2"),
    }
    caveats.append(f"{card.name} is a local model with unknown validation on this imagery")
    method = f"{card.name} ({card.source}): argmax class {label_id} '{t}' per pixel"
    return _Classified(stack, card, mask, valid, values, method, card.name, None, caveats)


# ---- vectorising ---------------------------------------------------------------------------


def vectorise(
    mask: NDArray[np.bool_], stack: BandStack, max_polygons: int
) -> tuple[BaseGeometry | None, int, int]:
    """Mask -> one simplified EPSG:4326 (Multi)Polygon of the largest parts.

    Returns the geometry (None when the mask is empty), the number of polygons kept and the
    number left out by the cap. Specks under ``SIEVE_PIXELS`` are merged into their
    surroundings first; simplification (half a pixel) runs on all parts together so that
    neighbouring parts do not cross.
    """
    if not mask.any():
        return None, 0, 0
    m = mask.astype(np.uint8)
    if m.size > SIEVE_PIXELS:
        m = sieve(m, size=SIEVE_PIXELS, connectivity=4)
    grid = stack.grid
    polys = [
        shape(g) for g, v in shapes(m, mask=m.astype(bool), transform=grid.transform) if v == 1
    ]
    if not polys:
        return None, 0, 0
    polys.sort(key=lambda p: p.area, reverse=True)
    kept = polys[:max_polygons]
    merged = MultiPolygon(kept).simplify(0.5 * min(grid.res), preserve_topology=True)
    geom = shapely.set_precision(geometry_to_4326(merged, grid.crs), 1e-7)  # ~1 cm
    if geom.is_empty:
        return None, 0, 0
    return geom, len(kept), len(polys) - len(kept)


def _parts(geom: BaseGeometry | None) -> list[BaseGeometry]:
    if geom is None:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]


# ---- the tool ------------------------------------------------------------------------------


def _source_scene(args: SegmentArgs, ctx: ToolContext) -> tuple[SceneRef, list[str]]:
    if args.scene is not None:
        return args.scene, []
    assert args.raster is not None  # the schema requires one of the two
    return scene_from_raster(args.raster, ctx, args.bands)


def _check_overlap(aoi: AOI | None, scene: SceneRef) -> None:
    if aoi is None:
        return
    footprint = shape(scene.geometry) if scene.geometry else shapely.box(*scene.bbox)
    if not footprint.intersects(aoi.shape()):
        raise GeoScoutToolError(
            "no_data",
            f"the area of interest does not overlap scene {scene.id}",
            "choose a scene that covers the area (stac_search with this AOI)",
        )


def run(args: SegmentArgs, ctx: ToolContext) -> ToolResult:
    scene, caveats = _source_scene(args, ctx)
    _check_overlap(args.aoi, scene)
    card = _choose_model(args, ctx)
    if card is None or card.kind == "onnx":
        res = _run_csmask(args, scene, card, ctx)
    elif card.kind == "spectral_index":
        res = _run_index(args, scene, card, ctx)
    else:
        res = _run_transformers(args, scene, card, ctx)

    stack, grid = res.stack, res.stack.grid
    geom, kept, left_out = vectorise(res.mask, stack, ctx.limits.max_vector_polygons)
    polygons = _parts(geom)
    mask_geom = (
        to_rfc7946(geom) if geom is not None else {"type": "MultiPolygon", "coordinates": []}
    )
    analysed_shape = grid.footprint_4326()
    if args.aoi is not None:
        analysed_shape = analysed_shape.intersection(args.aoi.shape())

    gsd = grid.ground_resolution_m()
    date = (scene.datetime or "")[:10] or "unknown"
    caveats += stack.caveats + res.caveats
    caveats.append(
        f"at {gsd:.0f} m per pixel, {args.target.replace('_', ' ')} features narrower than about "
        f"{2 * gsd:.0f} m are missed or mixed with their surroundings"
    )
    if date == "unknown":
        caveats.append(f"the acquisition date of scene {scene.id} is unknown")
    if left_out:
        caveats.append(
            f"the map shows the {kept} largest of {kept + left_out} polygons; "
            "areas count every pixel"
        )
    threshold_txt = "n/a" if res.threshold is None else f"{res.threshold:g}"
    props = {
        "class": args.target,
        "source": scene.id,
        "stac_item_id": scene.id,
        "model": res.card.name,
    }
    layer = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": to_rfc7946(p), "properties": dict(props)}
            for p in polygons
        ],
    }
    scene_prov = {
        "stac_item_id": scene.id,
        "collection": scene.collection,
        "datetime": scene.datetime,
        "gsd": scene.gsd,
        "self_href": scene.self_href,
        "hrefs": stack.hrefs,
        "native_gsd_m": {b: round(v, 2) for b, v in stack.native_gsd_m.items()},
    }
    provenance: dict[str, Any] = {
        "tool": "segment",
        "scene": scene_prov,
        "model": res.card.provenance(),
        "helper_models": [c.provenance() for c in res.helpers],
        "method": res.method,
        "radiometry": stack.radiometry.describe(),
        "grid": {
            "crs": grid.crs.to_string(),
            "resolution_m": round(gsd, 2),
            "width": grid.width,
            "height": grid.height,
            "bounds": [round(v, 3) for v in grid.bounds],
            "area_method": "pixel counts x pixel area ("
            + ("res_x * res_y" if np.ndim(grid.pixel_area_km2()) == 0 else "geodesic, per row")
            + ")",
        },
        "vectorised": {
            "sieve_pixels": SIEVE_PIXELS,
            "polygons": len(polygons),
            "left_out": left_out,
        },
        "arguments": _args_for_provenance(args),
    }
    facts = {
        "target": args.target,
        "model": res.card.name,
        "model_version": res.card.version,
        "method": res.short_method,
        "threshold": threshold_txt,
        "scene_id": scene.id,
        "collection": scene.collection or "unknown",
        "acquired": date,
        "datetime": scene.datetime or "unknown",
        "resolution_m": f"{gsd:.1f}",
    }
    label = args.target.replace("_", " ")
    title = f"{label.capitalize()} mask of {scene.id} ({res.card.name})"
    evidence = EvidenceDraft(
        key="mask",
        kind="mask",
        title=title,
        values=res.values,
        geometry=to_rfc7946(analysed_shape) if not analysed_shape.is_empty else None,
        provenance=provenance,
        layer=layer,
        caveats=caveats,
        facts=facts,
    )
    stats = {k: v.value for k, v in res.values.items()}
    stats.update(
        {
            f"{k}_uncertainty": v.uncertainty
            for k, v in res.values.items()
            if v.uncertainty is not None
        }
    )
    return ToolResult(
        status="ok",
        summary=_summary(args.target, res.values, scene.id, res.short_method),
        outputs={"mask": mask_geom, "stats": stats},
        evidence=[evidence],
        caveats=[],
    )


def _args_for_provenance(args: SegmentArgs) -> dict[str, Any]:
    out = args.model_dump(mode="json", exclude_none=True)
    if args.scene is not None:  # the full asset list is in provenance.scene already
        out["scene"] = {"id": args.scene.id, "collection": args.scene.collection}
    return out


def _summary(target: str, values: dict[str, Quantity], scene_id: str, method: str) -> str:
    analysed = values["analysed_area_km2"].value
    if target in {"cloud", "cloud_shadow"}:
        return (
            f"Cloud covers {values['cloud_cover_pct'].value:g}% and cloud shadow "
            f"{values['cloud_shadow_pct'].value:g}% of {analysed:g} km2 analysed in scene "
            f"{scene_id} ({method})."
        )
    area = values[f"{target}_area_km2"]
    pm = f" ± {area.uncertainty:g}" if area.uncertainty else ""
    return (
        f"{target.replace('_', ' ').capitalize()}: {area.value:g}{pm} km2 "
        f"({values[f'{target}_fraction_pct'].value:g}%) of {analysed:g} km2 analysed in scene "
        f"{scene_id} ({method})."
    )


SPEC = ToolSpec(
    name="segment",
    args_schema=SegmentArgs,
    run=run,
    description=(
        "Classify the pixels of one scene or raster into a target class (water, vegetation, "
        "cloud, cloud shadow) and measure its area inside an area of interest."
    ),
    prompt_fragment=(
        "segment(scene=@<step>.scene | raster=<file>, target=water|vegetation|cloud|"
        "cloud_shadow, aoi=@<step>.aoi, model?, threshold?): measures the target's area "
        "(km2, with uncertainty) and share of the analysed area on one image, and draws the "
        "mask. Water uses NDWI, vegetation NDVI, cloud/shadow the ukis-csmask U-Net. Needs "
        "multispectral bands (green+NIR for water, red+NIR for vegetation); an RGB-only image "
        "cannot answer water or vegetation questions. Outputs: mask (geometry), stats."
    ),
    outputs={"mask": "geometry", "stats": "stats"},
    accepts={"scene": ("scene",), "aoi": ("aoi", "geometry")},
)
