"""Typed provenance: where every evidence item comes from, one shape for every tool.

Four parts, each a pydantic model that tools write and every consumer reads:

* :class:`SceneSource`: the image (STAC item id, collection, date, GSD, its files with the
  common band names of each file, license). Scene evidence carries its own scene here; a
  mask or detections carry the scene they were computed on.
* :class:`ModelSource`: the model (name, version, license, weights hash, or the endpoint
  that answered, its timing and tokens).
* :class:`VectorSource`: an OpenStreetMap extract, an Overpass server or another vector
  file (name, timestamp, license, attribution).
* :class:`Provenance`: the computation (tool, plan step, arguments, method, what a derived
  figure was computed from) holding the parts above. ``details`` keeps the tool's own
  record (pixel grid, search parameters, radiometry) that no other module reads.

Serialised, a provenance with a scene also carries the DESIGN.md contract's flat names
(``stac_item_id``, ``collection``, ``datetime``, ``gsd``, ``href``) so readers of the
AnswerBundle JSON find them where the contract says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    model_serializer,
    model_validator,
)

if TYPE_CHECKING:
    from tools.geo import SceneRef

# Flat names of the scene part (DESIGN.md "STAC item id + collection + datetime + GSD + href").
CONTRACT_SCENE_KEYS = ("stac_item_id", "collection", "datetime", "gsd", "href")


class AssetSource(BaseModel):
    """One file of a scene and the common names of its bands, in file order."""

    model_config = ConfigDict(extra="forbid")

    href: str
    bands: list[str] = Field(default_factory=list)
    gsd: float | None = None
    roles: list[str] = Field(default_factory=list)

    @property
    def preview(self) -> bool:
        """A thumbnail or overview: too coarse to read, and often not georeferenced."""
        return bool({"thumbnail", "overview"} & set(self.roles))


class SceneSource(BaseModel):
    """The image an evidence item is, or was computed on."""

    model_config = ConfigDict(extra="forbid")

    stac_item_id: str
    collection: str | None = None
    datetime: str | None = Field(default=None, description="ISO datetime; None when unknown")
    gsd: float | None = None
    platform: str | None = None
    href: str | None = Field(default=None, description="The item's own link, else its first file")
    self_href: str | None = None
    assets: dict[str, AssetSource] = Field(default_factory=dict)
    license: str | None = None
    stac_api_url: str | None = None

    @classmethod
    def from_scene(cls, scene: SceneRef, stac_api_url: str | None = None) -> SceneSource:
        assets = {
            key: AssetSource(href=a.href, bands=list(a.bands), gsd=a.gsd, roles=list(a.roles))
            for key, a in scene.assets.items()
        }
        first = next(iter(assets.values()), None)
        return cls(
            stac_item_id=scene.id,
            collection=scene.collection,
            datetime=scene.datetime,
            gsd=scene.gsd,
            platform=scene.platform,
            href=scene.self_href or (first.href if first else None),
            self_href=scene.self_href,
            assets=assets,
            license=scene.license,
            stac_api_url=stac_api_url,
        )

    def band_files(self) -> dict[str, tuple[str, int, float]]:
        """Common band name -> (file, 1-based band index, GSD), finest file first."""
        out: dict[str, tuple[str, int, float]] = {}
        for asset in self.assets.values():
            if asset.preview:
                continue
            gsd = asset.gsd or self.gsd or 1e9
            for i, name in enumerate(asset.bands, 1):
                if name not in out or gsd < out[name][2]:
                    out[name] = (asset.href, i, gsd)
        return out

    def unnamed_files(self) -> list[str]:
        """Data files that name no band (an upload, a catalogue that lists none): the ones a
        reader must probe. Previews are left out."""
        return list(
            dict.fromkeys(a.href for a in self.assets.values() if not a.bands and not a.preview)
        )


class ModelSource(BaseModel):
    """A model: a registered card (weights, license) or an endpoint that answered."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str | None = None
    license: str | None = None
    source: str | None = Field(default=None, description="Package, folder or paper")
    reference: str | None = None
    weights_sha256: str | None = None
    endpoint_host: str | None = None
    endpoint_says_model: str | None = None
    seconds: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class VectorSource(BaseModel):
    """A vector data source: a local extract (path kept out of answers) or a server."""

    model_config = ConfigDict(extra="forbid")

    name: str
    format: str | None = None
    timestamp: str | None = Field(default=None, description="Data timestamp, or 'unknown'")
    license: str | None = None
    attribution: str | None = None
    extent_bbox: list[float] | None = None
    server: str | None = None
    retrieved: str | None = Field(default=None, description="UTC time of an online query")


class Provenance(BaseModel):
    """Where an evidence item comes from: the computation and its sources."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    step: str | None = Field(default=None, description="Plan step id; set by the merger")
    arguments: dict[str, Any] = Field(default_factory=dict)
    method: str | None = Field(default=None, description="How the values were obtained")
    source: str | None = Field(default=None, description="Data source family: STAC, GeoNames")
    license: str | None = None
    attribution: str | None = None
    scene: SceneSource | None = None
    model: ModelSource | None = None
    helper_models: list[ModelSource] = Field(default_factory=list)
    sources: list[VectorSource] = Field(default_factory=list)
    derived_from: list[str] = Field(
        default_factory=list, description="Evidence ids a derived figure was computed from"
    )
    details: dict[str, Any] = Field(
        default_factory=dict, description="The tool's own record (grid, search, radiometry)"
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_contract_copies(cls, data: Any) -> Any:
        # The flat contract names are written from ``scene`` on output; reading a bundle
        # back, they are copies and ``scene`` is the one source.
        if isinstance(data, dict) and isinstance(data.get("scene"), dict | SceneSource):
            return {k: v for k, v in data.items() if k not in CONTRACT_SCENE_KEYS}
        return data

    @model_serializer(mode="wrap")
    def _with_contract_keys(self, handler: Any, info: SerializationInfo) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if self.scene is not None:
            for key in CONTRACT_SCENE_KEYS:
                out.setdefault(key, getattr(self.scene, key))
        return out

    def licenses(self) -> list[str]:
        """Every license named: the data's, each source's, the scene's."""
        found = [self.license, *(s.license for s in self.sources)]
        if self.scene is not None:
            found.append(self.scene.license)
        return [x for x in dict.fromkeys(found) if x]

    def attributions(self) -> list[str]:
        """Every attribution to show next to the data: its own, then each source's."""
        found = [self.attribution, *(s.attribution for s in self.sources)]
        return [x for x in dict.fromkeys(found) if x]
