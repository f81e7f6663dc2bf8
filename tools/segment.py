"""The ``segment`` tool: pixel classes (water, vegetation, cloud, cloud shadow) in a scene.

One scene or one raster, one target, one model: the model registry finds a model for the
target and the bands at hand (:meth:`models.registry.ModelRegistry.find`); the bands it
declares are read onto one grid over the AOI at its resolution (:mod:`tools.raster`); it
classifies through the :class:`models.protocols.Segmenter` protocol (spectral index, ONNX
cloud U-Net or a local transformers model, alike here); areas are counted from pixels (true
ground areas: see ``Grid.pixel_area_km2``), the mask is vectorised for the map and one
"mask" evidence item is returned with typed provenance.

Local transformers models come from ``ctx.extra["segmentation_models"]`` (name -> folder),
which the agents layer fills from the ``segmentation_models`` setting.
"""

from __future__ import annotations

import logging
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

from models.cards import ModelCard, ModelInputError, ModelUnavailableError, UnknownModelError
from models.protocols import BandInput, Segmentation, Segmenter
from models.registry import ModelRegistry
from models.spectral import area_with_sensitivity, masked_area, threshold_mask
from tools.base import (
    EvidenceDraft,
    GeoScoutToolError,
    IntentView,
    Quantity,
    ToolContext,
    ToolResult,
    ToolSpec,
    label_text,
)
from tools.geo import AOI, SceneRef, to_rfc7946
from tools.numbers import sig
from tools.provenance import ModelSource, Provenance, SceneSource
from tools.raster import BandStack, geometry_to_4326, read_bands, scene_from_raster

log = logging.getLogger(__name__)

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
# The ONNX cloud U-Nets as one model: the variant is chosen from the data's bands and level.
CSMASK_FAMILY = "ukis-csmask"
_CLOUD_CLASSES = ("cloud", "cloud_shadow")
_CSMASK_ALIASES = {"ukis-csmask", "csmask", "ukis_csmask", "ukis csmask", "cloudmask"}
# The cloud U-Net marks a field of small broken cumulus as one cloud, gaps included (model
# card): on the Landsat 8 Molino scene it says 90% where the image and the QA band show ~22%.
# Above this share the answer says its figure may be an upper bound.
BROKEN_CLOUD_CAVEAT_PCT = 50.0
BROKEN_CLOUD_CAVEAT = (
    "the cloud U-Net reports {cover:.0f}% cloud; it tends to mark a field of small broken "
    "clouds as one cloud, clear gaps included (on a test Landsat 8 scene it reported about 90% "
    "where the image and the scene's own quality band show about 22%), so where the clouds "
    "are broken this share is an upper bound"
)
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


def model_registry(ctx: ToolContext) -> ModelRegistry:
    """The built-in models and the local folders configured for this deployment."""
    return ModelRegistry(_local_models(ctx))


def _family(card: ModelCard) -> str:
    return CSMASK_FAMILY if card.name.startswith(CSMASK_FAMILY + "-") else card.name


def _find(registry: ModelRegistry, target: str, scene: SceneRef) -> list[ModelCard]:
    """Models for the target on this scene's bands, best first; when none fits the bands,
    the best for the target anyway (reading its bands then says which are missing)."""
    have = scene.available_bands()
    try:
        fits = registry.find("segmentation", target=target, bands=have, gsd_m=scene.gsd)
        return fits or registry.find("segmentation", target=target)
    except ValueError as exc:  # a configured folder that is not a segmentation model
        log.warning("segment: local segmentation models ignored: %s", exc)
        return _find(ModelRegistry(), target, scene)


def _choose_model(
    args: SegmentArgs, scene: SceneRef, registry: ModelRegistry
) -> tuple[ModelCard, bool]:
    """The card to run, and whether exactly that one (False: a family picks its variant)."""
    if args.model is None:
        found = _find(registry, args.target, scene)
        if not found:
            raise GeoScoutToolError("invalid_args", f"no model maps target {args.target!r}")
        card = found[0]
        return card, _family(card) == card.name
    if args.model == CSMASK_FAMILY:
        family = [c for c in ModelRegistry().cards("segmentation") if _family(c) == CSMASK_FAMILY]
        if not family:
            raise GeoScoutToolError(
                "unavailable",
                "ukis-csmask is not installed; install it with: pip install 'ukis-csmask[cpu]==1.0.0'",
                "pip install 'ukis-csmask[cpu]==1.0.0'",
            )
        if args.target in family[0].targets:
            fits = [c for c in _find(ModelRegistry(), args.target, scene) if c in family]
            return (fits or family)[0], False
        card, exact = family[0], False
    else:
        try:
            card, exact = registry.get(args.model), True
        except UnknownModelError as exc:
            names = [c.name for c in ModelRegistry().cards("segmentation")] + list(
                registry.local_models
            )
            raise GeoScoutToolError(
                "invalid_args",
                f"unknown segmentation model {args.model!r}",
                f"use one of: {', '.join([CSMASK_FAMILY, *names])}",
                candidates=names,
            ) from exc
        except ValueError as exc:  # a configured folder that is not a segmentation model
            raise GeoScoutToolError(
                "unavailable", f"model {args.model!r} cannot be loaded: {exc}"
            ) from exc
    if args.target not in card.targets:
        label = card.name if exact else CSMASK_FAMILY
        best = _find(registry, args.target, scene)
        raise GeoScoutToolError(
            "unsupported",
            f"model {label} does not map {args.target}; it maps {', '.join(card.targets)}",
            f"for {args.target} use {_family(best[0]) if best else 'a model with that label'}",
        )
    return card, exact


# ---- classification ------------------------------------------------------------------------


@dataclass
class _Measured:
    """A segmentation turned into the figures of the evidence item."""

    seg: Segmentation
    stack: BandStack
    mask: NDArray[np.bool_]  # the target class, inside valid
    values: dict[str, Quantity]
    method: str
    caveats: list[str]
    helpers: list[ModelCard] = field(default_factory=list)  # e.g. the cloud screen


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


def _threads(ctx: ToolContext) -> int | None:
    threads = ctx.extra.get("threads")
    return int(threads) if threads else None


def _band_input(stack: BandStack) -> BandInput:
    rad = stack.radiometry
    return BandInput(
        bands=stack.bands,
        valid=stack.valid,
        gsd_m=stack.grid.ground_resolution_m(),
        reflectance=rad.kind == "reflectance",
        product_level=rad.product_level,
        description=rad.describe(),
    )


def _read_for(
    segmenter: Segmenter, args: SegmentArgs, scene: SceneRef, ctx: ToolContext
) -> BandStack:
    """The bands the model declares, at its resolution, checked against what it needs."""
    have = scene.available_bands()
    try:
        order = segmenter.bands_for(have)
    except ModelInputError as exc:
        raise GeoScoutToolError(
            "unsupported",
            f"{exc.message}; scene {scene.id} has {', '.join(sorted(have)) or 'no named bands'}",
            exc.hint,
        ) from exc
    card = segmenter.card
    stack = read_bands(
        scene,
        order,
        ctx,
        aoi=args.aoi,
        resolution_m=card.native_gsd_m,
        purpose=segmenter.purpose,
    )
    rad = stack.radiometry
    if card.needs_reflectance() and (rad.kind != "reflectance" or rad.product_level is None):
        raise GeoScoutToolError(
            "unsupported",
            f"{segmenter.purpose} needs calibrated satellite reflectance; {scene.id} holds "
            f"{rad.name}",
            "use a Sentinel-2 or Landsat scene",
        )
    return stack


def _run_model(segmenter: Segmenter, stack: BandStack, args: SegmentArgs) -> Segmentation:
    try:
        return segmenter.segment(_band_input(stack), args.target, args.threshold)
    except ModelInputError as exc:
        raise GeoScoutToolError("unsupported", exc.message, exc.hint) from exc
    except ModelUnavailableError as exc:
        raise GeoScoutToolError("unavailable", str(exc), exc.hint) from exc


def _measure(
    args: SegmentArgs,
    scene: SceneRef,
    ctx: ToolContext,
    registry: ModelRegistry,
    card: ModelCard,
    exact: bool,
) -> _Measured:
    segmenter = registry.segmenter(card, exact=exact, threads=_threads(ctx))
    stack = _read_for(segmenter, args, scene, ctx)
    seg = _run_model(segmenter, stack, args)
    pa = stack.grid.pixel_area_km2()
    t = args.target
    caveats = list(seg.notes)
    valid = seg.valid
    screen = _cloud_screen(args, scene, stack, ctx, caveats) if card.cloud_screen else None
    if screen is not None:
        valid = valid & ~screen.obscured
        if not valid.any():
            raise GeoScoutToolError(
                "no_data",
                f"the area of interest is entirely under cloud or cloud shadow in scene {scene.id}",
                "choose a clearer scene (stac_search with max_cloud) or another date",
            )
    analysed = masked_area(valid, pa)
    method = seg.method
    if seg.scores is not None and seg.threshold is not None:
        # A thresholded score: the area and its sensitivity to the threshold.
        thr = seg.threshold
        est = area_with_sensitivity(seg.scores, thr, pa, within=valid)
        mask = threshold_mask(seg.scores, thr) & valid
        values = {
            f"{t}_area_km2": Quantity(
                value=sig(est.area, keep_whole=True),
                unit="km2",
                uncertainty=sig(est.uncertainty, keep_whole=True),
                note=f"{sig(est.area_low, keep_whole=True)} to {sig(est.area_high, keep_whole=True)} km2 for thresholds "
                f"{thr + est.delta:g} and {thr - est.delta:g}",
            ),
            f"{t}_fraction_pct": Quantity(
                value=round(_pct(est.area, analysed), 1),
                unit="%",
                uncertainty=round(_pct(est.uncertainty, analysed), 1),
            ),
            "analysed_area_km2": Quantity(value=sig(analysed, keep_whole=True), unit="km2"),
        }
        method += (
            f"; area from pixel counts; uncertainty = half the area change between thresholds "
            f"{thr - est.delta:g} and {thr + est.delta:g}"
        )
    elif set(_CLOUD_CLASSES) <= set(seg.classes):
        # A cloud mask: cover and shadow shares both, whichever was asked.
        mask = seg.mask & valid
        cloud_km2 = masked_area(seg.classes["cloud"] & valid, pa)
        shadow_km2 = masked_area(seg.classes["cloud_shadow"] & valid, pa)
        values = {
            "cloud_cover_pct": Quantity(value=round(_pct(cloud_km2, analysed), 1), unit="%"),
            "cloud_shadow_pct": Quantity(value=round(_pct(shadow_km2, analysed), 1), unit="%"),
            "cloud_area_km2": Quantity(value=sig(cloud_km2, keep_whole=True), unit="km2"),
            "cloud_shadow_area_km2": Quantity(value=sig(shadow_km2, keep_whole=True), unit="km2"),
            "analysed_area_km2": Quantity(value=sig(analysed, keep_whole=True), unit="km2"),
        }
        cover = _pct(cloud_km2, analysed)
        if _family(seg.card) == CSMASK_FAMILY and cover >= BROKEN_CLOUD_CAVEAT_PCT:
            caveats.append(BROKEN_CLOUD_CAVEAT.format(cover=cover))
    else:
        mask = seg.mask & valid
        area = masked_area(mask, pa)
        values = {
            f"{t}_area_km2": Quantity(value=sig(area, keep_whole=True), unit="km2"),
            f"{t}_fraction_pct": Quantity(value=round(_pct(area, analysed), 1), unit="%"),
            "analysed_area_km2": Quantity(value=sig(analysed, keep_whole=True), unit="km2"),
        }
    if screen is not None:
        obscured = seg.valid & screen.obscured
        pct = _pct(masked_area(obscured, pa), masked_area(seg.valid, pa))
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
    elif (
        card.cloud_screen
        and t == "water"
        and scene.cloud_cover is not None
        and scene.cloud_cover >= 10
    ):
        caveats.append(
            f"the scene reports {scene.cloud_cover:.0f}% cloud cover and clouds were not masked: "
            "water under cloud is missed and cloud shadow can read as water"
        )
    helpers = [screen.card] if screen is not None else []
    return _Measured(seg, stack, mask, values, method, caveats, helpers)


class _Screen:
    def __init__(self, obscured: NDArray[np.bool_], model: str, card: ModelCard) -> None:
        self.obscured = obscured
        self.model = model
        self.card = card


def _cloud_screen(
    args: SegmentArgs, scene: SceneRef, stack: BandStack, ctx: ToolContext, caveats: list[str]
) -> _Screen | None:
    """Cloud and shadow pixels on the analysis grid, from a cloud model at its resolution.

    Runs by default on satellite reflectance that has the bands of a registered cloud model
    (ukis-csmask: blue, green, red and NIR); aerial and uncalibrated imagery are not
    screened (said in a caveat only when screening was asked).
    """
    if args.mask_clouds is False:
        return None
    have = scene.available_bands()
    level = stack.radiometry.product_level
    registry = ModelRegistry()
    cards = registry.find("segmentation", target="cloud", bands=have, product_level=level)
    if stack.radiometry.kind != "reflectance" or level is None or not cards:
        if args.mask_clouds:
            caveats.append(
                "clouds could not be masked: that needs satellite reflectance with blue, green, "
                "red and NIR bands"
            )
        return None
    screen = registry.segmenter(cards[0], threads=_threads(ctx))
    cstack = read_bands(
        scene,
        screen.bands_for(have),
        ctx,
        aoi=args.aoi,
        resolution_m=cards[0].native_gsd_m,
        purpose=screen.purpose,
    )
    try:
        seg = screen.segment(_band_input(cstack), "cloud")
    except ModelUnavailableError:
        caveats.append("clouds were not masked: ukis-csmask is not installed")
        return None
    obscured_native = np.zeros(cstack.grid.shape, dtype=np.uint8)
    for part in seg.classes.values():
        obscured_native |= part.astype(np.uint8)
    obscured = np.zeros(stack.grid.shape, dtype=np.uint8)
    reproject(
        obscured_native,
        obscured,
        src_transform=cstack.grid.transform,
        src_crs=cstack.grid.crs,
        dst_transform=stack.grid.transform,
        dst_crs=stack.grid.crs,
        resampling=Resampling.nearest,
    )
    return _Screen(obscured.astype(bool), seg.card.name, seg.card)


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


def model_source(card: ModelCard) -> ModelSource:
    """The model part of an evidence item's provenance."""
    return ModelSource(
        name=card.name,
        version=card.version,
        license=card.license,
        source=card.source,
        reference=card.reference,
        weights_sha256=card.weights_sha256,
    )


def run(args: SegmentArgs, ctx: ToolContext) -> ToolResult:
    scene, caveats = _source_scene(args, ctx)
    _check_overlap(args.aoi, scene)
    registry = model_registry(ctx)
    card, exact = _choose_model(args, scene, registry)
    res = _measure(args, scene, ctx, registry, card, exact)
    seg, stack, grid = res.seg, res.stack, res.stack.grid
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
    threshold_txt = "n/a" if seg.threshold is None else f"{seg.threshold:g}"
    props = {
        "class": args.target,
        "source": scene.id,
        "stac_item_id": scene.id,
        "model": seg.card.name,
    }
    layer = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": to_rfc7946(p), "properties": dict(props)}
            for p in polygons
        ],
    }
    provenance = Provenance(
        tool="segment",
        scene=SceneSource.from_scene(scene, ctx.stac_url if args.scene is not None else None),
        model=model_source(seg.card),
        helper_models=[model_source(c) for c in res.helpers],
        method=res.method,
        arguments=_args_for_provenance(args),
        details={
            # The band files actually read (the scene lists all of its files).
            "hrefs": stack.hrefs,
            "native_gsd_m": {b: round(v, 2) for b, v in stack.native_gsd_m.items()},
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
        },
    )
    facts = {
        "target": args.target,
        "model": seg.card.name,
        "model_version": seg.card.version,
        "method": seg.short_method,
        "threshold": threshold_txt,
        "scene_id": scene.id,
        "collection": scene.collection or "unknown",
        "acquired": date,
        "datetime": scene.datetime or "unknown",
        "resolution_m": f"{gsd:.1f}",
    }
    label = args.target.replace("_", " ")
    title = f"{label.capitalize()} mask of {scene.id} ({seg.card.name})"
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
        summary=_summary(args.target, res.values, scene.id, seg.short_method),
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
    if "cloud_cover_pct" in values:
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


# Targets some registered model maps (the built-in ones: local folders are per deployment).
SEGMENTABLE_TARGETS: tuple[str, ...] = ModelRegistry().targets("segmentation")


def _relevant(intent: IntentView) -> bool:
    return bool(set(intent.targets) & set(SEGMENTABLE_TARGETS))


# Target words a person reads in step labels.
_LABEL_WORDS = {"cloud_shadow": "cloud shadow", "built": "built-up land"}


def _label(args: dict[str, Any]) -> str:
    target = label_text(args.get("target")) or "the image"
    return f"Measuring {_LABEL_WORDS.get(target, target.replace('_', ' '))}"


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
    label=_label,
    relevant=_relevant,
    needs_area=True,
    planner_hidden=frozenset({"bands", "model", "mask_clouds"}),
    stated_only=frozenset({"threshold"}),
    arg_enums={"target": SEGMENTABLE_TARGETS},
    produces=("mask",),
)
