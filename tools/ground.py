"""`ground`: boxes for objects named in text ("ships", "damaged roofs") on a scene or raster.

The AOI window of the image is read as true colour (tools/raster/: windowed, pixel
budget, allowed folders), stretched to 8 bits, resized so that each side is a multiple of
28 pixels (the patch size of Qwen2-VL-class models: their absolute pixel coordinates then
refer to exactly the image sent) with the long side between 448 and 1008 pixels, and sent
with the query to a :class:`models.protocols.Detector`: the configured OpenAI-compatible
vision-language model (models/vlm.py), or a detector registered in the model registry by
capability (task "detection"; none ships today). Each returned pixel box goes back through
the window's affine transform to the raster CRS and then to EPSG:4326.

Without a detector the tool says so ("unavailable") and what would work instead. The
model's text is untrusted: only parsed numbers and sanitised short labels are kept.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from affine import Affine
from numpy.typing import NDArray
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Polygon
from shapely.ops import unary_union

from models.cards import ModelCard, ModelUnavailableError
from models.chat import ChatError
from models.protocols import Detection, Detections, Detector, Picture8
from models.vlm import MAX_DETECTIONS, VLMDetector
from prompts import load_prompt
from tools import access
from tools.access import AccessPolicy
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
from tools.geo import AOI, SceneRef, geodesic_area_km2, to_rfc7946
from tools.numbers import sig
from tools.provenance import ModelSource, Provenance, SceneSource
from tools.raster import Grid, read_bands, scene_from_raster
from tools.segment import model_registry, model_source

PROMPT_NAME = "ground_vlm"
PATCH = 28  # Qwen2/2.5-VL patch size: sides that are multiples of it are not resized again
MAX_SIDE = 1008  # 36 patches
MIN_SIDE = 448  # small windows are enlarged: VLMs find little in tiny images

UNAVAILABLE_MESSAGE = (
    "Finding objects such as ships needs a vision-language model, and none is configured."
)
UNAVAILABLE_HINT = (
    "Set GEOSCOUT_VLM_BASE_URL and GEOSCOUT_VLM_MODEL to an OpenAI-compatible vision model "
    "(for example Qwen2.5-VL served by vLLM); offline, GeoScout can still measure water, "
    "vegetation and clouds, and count mapped buildings from OpenStreetMap."
)


class GroundArgs(BaseModel):
    """Arguments of `ground`: one image source, what to find, optionally where and with what."""

    model_config = ConfigDict(extra="forbid")

    scene: SceneRef | None = Field(default=None, description="a scene from stac_search")
    raster: str | None = Field(
        default=None, description="path of a GeoTIFF under the data or upload folders"
    )
    query: str = Field(
        min_length=1, max_length=200, description="what to find, e.g. 'ships', 'damaged roofs'"
    )
    aoi: AOI | None = Field(default=None, description="look only in this area")
    model: str | None = Field(
        default=None,
        max_length=100,
        pattern=r"^[\w.\-/:@]+$",
        description="model name at the configured VLM endpoint (default: the configured one)",
    )
    bands: list[str] | None = Field(
        default=None,
        max_length=16,
        description="band names of a raster in file order, e.g. ['blue','green','red','nir']",
    )
    min_object_m: float | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="typical size of one object in metres; refused when pixels are too coarse",
    )

    @field_validator("scene", mode="before")
    @classmethod
    def _first_scene(cls, value: Any) -> Any:
        # A reference to stac_search's ranked "scenes" list: use the best one.
        if isinstance(value, list):
            return value[0] if value else None
        return value

    @field_validator("query", mode="before")
    @classmethod
    def _clean_query(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = " ".join(re.sub(r"[\x00-\x1f\x7f<>{}|`]+", " ", value).split())
        return value

    @field_validator("bands")
    @classmethod
    def _band_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for b in value:
                if not re.fullmatch(r"[A-Za-z0-9_]{1,16}", b):
                    raise ValueError(f"bad band name {b!r}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> GroundArgs:
        if (self.scene is None) == (self.raster is None):
            raise ValueError("give exactly one of scene or raster")
        if self.bands and self.scene is not None:
            raise ValueError("bands applies to a raster; a scene already names its bands")
        return self


# --------------------------------------------------------------------------- the picture


@dataclass
class Picture:
    """The 8-bit RGB image sent to the model and how its pixels map to the ground."""

    png: bytes
    width: int
    height: int
    grid: Grid  # the window read, in the raster's CRS
    bands: list[str]
    gsd_m: float  # effective ground metres per pixel of the image sent
    caveats: list[str] = field(default_factory=list)

    def to_crs(self, x: float, y: float) -> tuple[float, float]:
        """A point in pixels of the image sent -> raster CRS coordinates."""
        gx = x * self.grid.width / self.width
        gy = y * self.grid.height / self.height
        cx, cy = self.grid.transform @ (gx, gy)
        return float(cx), float(cy)


def _stretch(
    band: NDArray[np.float32], ok: NDArray[np.bool_], eight_bit: bool
) -> NDArray[np.uint8]:
    if not ok.any():
        return np.zeros(band.shape, dtype=np.uint8)
    if eight_bit:  # already display-ready (values are DN/255): keep the colours as they are
        out = np.clip(np.nan_to_num(band) * 255.0, 0, 255)
    else:
        lo, hi = np.percentile(band[ok], [2, 98])
        out = np.clip((np.nan_to_num(band) - lo) / (float(hi - lo) or 1.0) * 255.0, 0, 255)
    out = out.round().astype(np.uint8)
    out[~ok] = 0
    return out


def _sent_size(width: int, height: int) -> tuple[int, int]:
    """Multiples of PATCH with the long side in [MIN_SIDE, MAX_SIDE], aspect kept."""
    long_side = max(width, height)
    target = min(max(long_side, MIN_SIDE), MAX_SIDE)
    s = target / long_side
    return (
        max(PATCH, round(width * s / PATCH) * PATCH),
        max(PATCH, round(height * s / PATCH) * PATCH),
    )


def _valid_extent(valid: NDArray[np.bool_]) -> tuple[int, int, int, int] | None:
    """Rows/cols (r0, r1, c0, c1) holding the valid pixels, when that saves 10% or more."""
    rows = np.flatnonzero(valid.any(axis=1))
    cols = np.flatnonzero(valid.any(axis=0))
    if rows.size == 0:
        return None
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if (r1 - r0) * (c1 - c0) > 0.9 * valid.size:
        return None
    return r0, r1, c0, c1


def _sub_grid(grid: Grid, r0: int, r1: int, c0: int, c1: int) -> Grid:
    return Grid(grid.crs, grid.transform @ Affine.translation(c0, r0), c1 - c0, r1 - r0)


def read_picture(scene: SceneRef, aoi: AOI | None, ctx: ToolContext) -> Picture:
    """True-colour window of the scene over the AOI, ready for a VLM."""
    have = scene.available_bands()
    if {"red", "green", "blue"} <= have:
        names = ["red", "green", "blue"]
    else:
        single = next((b for b in ("pan", "red", "green", "nir") if b in have), None)
        if single is None:
            raise GeoScoutToolError(
                "unsupported",
                f"scene {scene.id} has no red, green and blue (or panchromatic) band to look at",
                "use an optical scene with visible bands",
            )
        names = [single]
    stack = read_bands(
        scene, names, ctx, aoi=aoi, max_dim=MAX_SIDE, purpose="finding objects in the image"
    )
    crop = _valid_extent(stack.valid)
    if crop is not None and stack.grid.ground_resolution_m() > 1.05 * min(
        stack.native_gsd_m.values()
    ):
        # Most of the window is nodata (mosaic borders, AOI outside the image) and the read
        # was decimated: read again over the imaged part only, at a finer resolution.
        r0, r1, c0, c1 = crop
        part = _sub_grid(stack.grid, r0, r1, c0, c1).footprint_4326()
        region = part.intersection(aoi.shape()) if aoi is not None else part
        if not region.is_empty and region.geom_type in {"Polygon", "MultiPolygon"}:
            sub_aoi = AOI.model_validate({"geometry": to_rfc7946(region)})
            stack = read_bands(
                scene, names, ctx, aoi=sub_aoi, max_dim=MAX_SIDE, purpose="finding objects"
            )
            crop = _valid_extent(stack.valid)
    grid = stack.grid
    bands = dict(stack.bands)
    valid = stack.valid
    if crop is not None:
        r0, r1, c0, c1 = crop
        grid = _sub_grid(grid, r0, r1, c0, c1)
        bands = {b: a[r0:r1, c0:c1] for b, a in bands.items()}
        valid = valid[r0:r1, c0:c1]
    eight_bit = stack.radiometry.name == "8-bit imagery"
    layers = [_stretch(bands[b], valid, eight_bit) for b in names]
    rgb = np.stack(layers * 3 if len(layers) == 1 else layers, axis=-1)
    width, height = _sent_size(grid.width, grid.height)
    img = Image.fromarray(rgb, mode="RGB")
    if (width, height) != (grid.width, grid.height):
        up = width > grid.width
        img = img.resize(
            (width, height), Image.Resampling.BICUBIC if up else Image.Resampling.LANCZOS
        )
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    caveats = [c for c in stack.caveats if c != stack.radiometry.caveat]
    if len(names) == 1:
        caveats.append(f"only the {names[0]} band was available: the model saw a grey image")
    # Enlarging adds no detail: the effective resolution is never finer than the window's.
    gsd = grid.ground_resolution_m() * max(1.0, grid.width / width)
    return Picture(buf.getvalue(), width, height, grid, names, gsd, caveats)


# --------------------------------------------------------------------------- the tool


def _label_key(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:30] or "object"


# Words a model may use for what the question names (singular forms).
_SYNONYMS: dict[str, frozenset[str]] = {
    "ship": frozenset({"ship", "boat", "vessel", "tanker", "freighter", "barge", "ferry"}),
    "boat": frozenset({"ship", "boat", "vessel"}),
    "vessel": frozenset({"ship", "boat", "vessel"}),
    "car": frozenset({"car", "vehicle", "automobile"}),
    "vehicle": frozenset({"car", "vehicle", "truck", "bus", "van"}),
    "building": frozenset({"building", "house", "roof"}),
    "house": frozenset({"building", "house", "roof"}),
    "roof": frozenset({"roof", "building", "house"}),
    "plane": frozenset({"plane", "airplane", "aircraft", "jet"}),
    "aircraft": frozenset({"plane", "airplane", "aircraft", "jet"}),
    "tree": frozenset({"tree"}),
}


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    return [_singular(w) for w in re.findall(r"[a-z]+", text.lower())]


def target_vocabulary(query: str) -> tuple[str, frozenset[str]]:
    """The question's object word (the last noun of the query, singular) and the words a
    model's label may use for it: ``"damaged roofs"`` -> ("roof", {"roof", "building", ...})."""
    words = _words(query)
    head = words[-1] if words else "object"
    return head, _SYNONYMS.get(head, frozenset({head}))


def match_label(label: str, query: str) -> str | None:
    """A model's label mapped to the question's object word, or None when it names something
    else. The model's text never passes: only the question's own word comes out."""
    head, vocabulary = target_vocabulary(query)
    return head if any(w in vocabulary for w in _words(label)) else None


def _tool_error(exc: ChatError, host: str, model: str) -> GeoScoutToolError:
    if exc.kind == "unreachable":
        return GeoScoutToolError(
            "service_unreachable",
            f"The vision model server at {host} could not be reached.",
            hint="Check that it is running and that GEOSCOUT_VLM_BASE_URL points to it.",
        )
    if exc.kind == "timeout":
        return GeoScoutToolError(
            "timeout",
            f"The vision model at {host} did not answer in time.",
            hint="The model may still be loading or busy; try again, or a smaller area.",
        )
    if exc.kind == "auth":
        return GeoScoutToolError(
            "unavailable",
            f"The vision model server at {host} refused the API key.",
            hint="Set GEOSCOUT_VLM_API_KEY to a key that server accepts.",
        )
    if exc.kind == "rejected":
        return GeoScoutToolError(
            "unavailable",
            f"The server at {host} would not run {model!r} on an image.",
            hint="Set GEOSCOUT_VLM_MODEL to a vision model that server serves, e.g. Qwen2.5-VL.",
        )
    if exc.kind == "bad_output":
        return GeoScoutToolError(
            "bad_data",
            f"The answer of the vision model {model!r} could not be read as boxes.",
            hint="Try again with a plain object name ('ships'), or use a model trained for "
            "grounding such as Qwen2.5-VL.",
        )
    return GeoScoutToolError(
        "service_unreachable",
        f"The vision model server at {host} failed.",
        hint="Try again later; the server's log says more.",
    )


# An object needs about this many pixels across to be seen at all.
MIN_PIXELS_PER_OBJECT = 3


def run(args: GroundArgs, ctx: ToolContext) -> ToolResult:
    # Resolution first: with 10 m pixels no model will ever see a car, so the honest reason
    # is the image, not a missing vision model.
    if args.scene is not None and args.min_object_m and args.scene.gsd:
        gsd = float(args.scene.gsd)
        if gsd * MIN_PIXELS_PER_OBJECT > args.min_object_m:
            return ToolResult.fail(
                "unsupported",
                f"{args.query[:1].upper() + args.query[1:]} are about {args.min_object_m:g} m "
                f"across; this image has {gsd:g} m pixels, too coarse to see them (an object "
                f"needs about {MIN_PIXELS_PER_OBJECT} pixels).",
                hint=f"Use imagery of {sig(args.min_object_m / MIN_PIXELS_PER_OBJECT, 2):g} m per pixel "
                "or finer (aerial or drone images).",
            )
    local = _local_detector(args, ctx)
    if local is None and ctx.vlm is None:
        return ToolResult.fail("unavailable", UNAVAILABLE_MESSAGE, hint=UNAVAILABLE_HINT)
    caveats: list[str] = []
    if args.scene is not None:
        scene = args.scene
    else:
        assert args.raster is not None  # the schema asks for exactly one source
        scene, guessed = scene_from_raster(args.raster, ctx, args.bands)
        caveats += guessed
    picture = read_picture(scene, args.aoi, ctx)
    caveats += picture.caveats
    image = Picture8(picture.png, picture.width, picture.height)

    if local is not None:
        card, detector = local
        try:
            answer = detector.detect(image, args.query)
        except ModelUnavailableError as exc:
            raise GeoScoutToolError("unavailable", str(exc), exc.hint) from exc
        source = model_source(card).model_copy(update={"seconds": round(answer.seconds, 3)})
        return _result(args, ctx, scene, picture, answer, source, None, caveats)

    assert ctx.vlm is not None
    model = args.model or ctx.vlm.model
    prompt = load_prompt(PROMPT_NAME)
    # One timeout and retry policy for every network client (tools/access.py): the vision
    # model's timeout cut to what is left of the step, a retry only when the server could
    # not be reached, and none past the step's deadline.
    policy = AccessPolicy.from_context(ctx)
    policy.check_url(ctx.vlm.base_url, endpoint=True)
    policy.check_time("finding objects")
    vlm = VLMDetector.at(
        ctx.vlm.base_url,
        model,
        prompt,
        api_key=ctx.vlm.api_key,
        timeout_s=policy.timeout(ctx.vlm.timeout_s),
        max_retries=0,
    )
    host = vlm.client.endpoint_host
    try:
        answer = access.run_with_retry(
            policy,
            lambda: vlm.detect(image, args.query),
            (ChatError,),
            when=lambda e: isinstance(e, ChatError) and e.kind == "unreachable",
        )
    except ChatError as exc:
        raise _tool_error(exc, host, model) from exc
    source = ModelSource(
        name=answer.model,
        version="not reported by the endpoint",
        license=f"not reported by the endpoint; see the model card of {answer.model}",
        endpoint_host=answer.endpoint_host,
        endpoint_says_model=answer.reported_model,
        seconds=round(answer.seconds, 3),
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
    )
    prompt_record = {"name": PROMPT_NAME, "sha256": hashlib.sha256(prompt.encode()).hexdigest()}
    return _result(args, ctx, scene, picture, answer, source, prompt_record, caveats)


def _local_detector(args: GroundArgs, ctx: ToolContext) -> tuple[ModelCard, Detector] | None:
    """A detector registered by capability (task "detection") in the model registry: the
    one ``model`` names, else the best one when no vision model endpoint is configured."""
    registry = model_registry(ctx)
    try:
        cards = registry.find("detection")
    except ValueError:  # a broken segmentation folder: segment reports it, not ground
        return None
    named = [c for c in cards if c.name == args.model]
    if named:
        card = named[0]
    elif cards and ctx.vlm is None:
        card = cards[0]
    else:
        return None
    try:
        return card, registry.detector(card)
    except ModelUnavailableError as exc:
        raise GeoScoutToolError("unavailable", str(exc), exc.hint) from exc


def _box_polygon(det: Detection, picture: Picture, to_ll: Transformer) -> Polygon:
    x0, y0, x1, y1 = det.box_px
    corners = [picture.to_crs(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
    lons, lats = to_ll.transform([c[0] for c in corners], [c[1] for c in corners])
    return Polygon(zip(lons, lats, strict=True))


def _result(
    args: GroundArgs,
    ctx: ToolContext,
    scene: SceneRef,
    picture: Picture,
    answer: Detections,
    model: ModelSource,
    prompt: dict[str, str] | None,
    caveats: list[str],
) -> ToolResult:
    to_ll = Transformer.from_crs(picture.grid.crs, "EPSG:4326", always_xy=True)
    dets = answer.detections
    polys = [_box_polygon(d, picture, to_ll) for d in dets]
    # Labels are the model's text: each is matched to the question's object word, or counted
    # as "other"; no label the model wrote is kept anywhere (values, map, facts, titles).
    head, _ = target_vocabulary(args.query)
    labels = [match_label(d.label, args.query) or "other" for d in dets]
    features = [
        {
            "type": "Feature",
            "geometry": to_rfc7946(p),
            "properties": {
                "label": lab,
                "score": None if d.score is None else round(d.score, 3),
                "source": scene.id,
                "stac_item_id": scene.id if scene.collection != "local-raster" else None,
                "model": answer.model,
                "kind": "vlm_box",
            },
        }
        for d, p, lab in zip(dets, polys, labels, strict=True)
    ]
    count = len(dets)
    per_label = Counter(labels)
    values: dict[str, Quantity] = {"count": Quantity(value=count, unit="count")}
    if per_label.get(head):
        values[f"count_{_label_key(head)}"] = Quantity(value=per_label[head], unit="count")
    if per_label.get("other"):
        values["count_other"] = Quantity(value=per_label["other"], unit="count")
    scores = [d.score for d in dets if d.score is not None]
    if scores:
        values["score_mean"] = Quantity(value=round(float(np.mean(scores)), 3), unit="score")
        values["score_min"] = Quantity(value=round(min(scores), 3), unit="score")
        values["score_max"] = Quantity(value=round(max(scores), 3), unit="score")
    footprint = picture.grid.footprint_4326()
    values["searched_area_km2"] = Quantity(value=sig(geodesic_area_km2(footprint)), unit="km2")
    values["image_gsd_m"] = Quantity(value=sig(picture.gsd_m), unit="m")

    date = scene.datetime[:10] if scene.datetime else "unknown"
    facts = {
        "model": answer.model,
        "query": args.query,
        "scene_id": scene.id,
        "acquisition_date": date,
        "answer_format": answer.answer_format,
        "target": head,
    }
    if answer.endpoint_host is not None:
        facts["endpoint"] = answer.endpoint_host
    caveats = [
        f"Boxes are unverified output of the vision-language model {answer.model}: they were "
        "not checked against labels, and such models miss objects and mislabel others.",
        *caveats,
        f"The model saw the image at about {sig(picture.gsd_m, 2):g} m per pixel: objects "
        f"smaller than about {sig(3 * picture.gsd_m, 2):g} m cannot be found.",
        *answer.notes,
    ]
    if date == "unknown":
        caveats.append(f"The acquisition date of {scene.id} is unknown.")
    if answer.truncated:
        caveats.append(f"Only the first {MAX_DETECTIONS} boxes were kept.")
    if answer.dropped:
        caveats.append(
            f"{answer.dropped} box(es) were empty, outside the image or repeated, and were dropped."
        )
    if not scores:
        caveats.append("The model gives no confidence scores.")

    g = picture.grid
    details: dict[str, Any] = {
        "pixel_window": {
            "crs": g.crs.to_string(),
            "transform": [
                g.transform.a,
                g.transform.b,
                g.transform.c,
                g.transform.d,
                g.transform.e,
                g.transform.f,
            ],
            "width": g.width,
            "height": g.height,
            "sent_width": picture.width,
            "sent_height": picture.height,
            "bands": picture.bands,
        },
    }
    if prompt is not None:
        details["prompt"] = prompt
    provenance = Provenance(
        tool="ground",
        scene=SceneSource.from_scene(scene, ctx.stac_url if args.scene is not None else None),
        model=model,
        method=f"boxes for {args.query!r} from {answer.model} ({answer.answer_format}), "
        "mapped from picture pixels through the window's transform to EPSG:4326",
        arguments={
            **args.model_dump(mode="json", exclude={"scene"}),
            "scene": scene.id if args.scene is not None else None,
        },
        details=details,
    )
    layer = {"type": "FeatureCollection", "features": features}
    label_text = ", ".join(f"{n} {lab}" for lab, n in per_label.most_common(2))
    query = args.query[:1].upper() + args.query[1:]
    title = f"{query} detected by {answer.model} in scene {scene.id}"
    evidence = EvidenceDraft(
        key="detections",
        kind="detections",
        title=title,
        values=values,
        geometry=to_rfc7946(footprint),
        provenance=provenance,
        layer=layer,
        caveats=caveats,
        facts=facts,
    )
    merged = unary_union(polys) if polys else MultiPolygon()
    parts = list(getattr(merged, "geoms", [merged])) if not merged.is_empty else []
    boxes = to_rfc7946(MultiPolygon([p for p in parts if p.geom_type == "Polygon"]))
    summary = f"{title}: {count} box(es)" + (f" ({label_text})" if len(per_label) > 1 else "") + "."
    return ToolResult(
        status="ok",
        summary=summary,
        outputs={"boxes": boxes, "count": count},
        evidence=[evidence],
        caveats=caveats,
    )


def _relevant(intent: IntentView) -> bool:
    return bool(intent.objects)


SPEC = ToolSpec(
    name="ground",
    args_schema=GroundArgs,
    run=run,
    description=(
        "Find objects named in text ('ships', 'cars', 'damaged roofs') in a scene or raster "
        "with a vision-language model: georeferenced boxes and a count. Unavailable when no "
        "vision model is configured."
    ),
    prompt_fragment=(
        "ground(scene=@step.scene | raster=path, query='ships', aoi=@step.aoi): boxes of the "
        "objects in the image and their count, from a vision-language model (unverified). "
        "Outputs @step.boxes (geometry) and @step.count."
    ),
    outputs={"boxes": "geometry", "count": "count"},
    accepts={"scene": ("scene", "scenes"), "aoi": ("aoi", "geometry")},
    label=lambda a: f"Looking for {label_text(a.get('query')) or 'objects'} in the image",
    relevant=_relevant,
    needs_area=True,
    planner_hidden=frozenset({"model"}),
    produces=("detections",),
)
