"""Typed provenance: one shape per source, the contract's flat names on output, round trips."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agents.schemas import Evidence
from tools.geo import SceneAsset, SceneRef
from tools.provenance import (
    CONTRACT_SCENE_KEYS,
    AssetSource,
    ModelSource,
    Provenance,
    SceneSource,
)


def _scene() -> SceneRef:
    return SceneRef(
        id="S2A_TEST",
        collection="sentinel-2-l1c",
        datetime="2020-05-01T10:00:00Z",
        gsd=10.0,
        platform="sentinel-2a",
        bbox=(0.0, 0.0, 1.0, 1.0),
        assets={
            "B03": SceneAsset(href="/data/b03.tif", bands=["green"], gsd=10.0),
            "B08": SceneAsset(href="/data/b08.tif", bands=["nir"], gsd=10.0),
            "B8A": SceneAsset(href="/data/b8a.tif", bands=["nir"], gsd=20.0),
            "visual": SceneAsset(href="/data/tci.tif", bands=["red", "green", "blue"], gsd=10.0),
            "preview": SceneAsset(href="/data/ql.png", bands=["red"], roles=["thumbnail"]),
        },
        license="CC-BY-SA-3.0-IGO",
        self_href="/data/item.json",
    )


def test_scene_source_keeps_every_file_with_its_band_names() -> None:
    src = SceneSource.from_scene(_scene(), stac_api_url="http://127.0.0.1:1/")
    assert src.stac_item_id == "S2A_TEST" and src.href == "/data/item.json"
    bands = src.band_files()
    assert bands["nir"] == ("/data/b08.tif", 1, 10.0)  # the finer of two files
    assert bands["blue"] == ("/data/tci.tif", 3, 10.0)
    assert bands["green"][2] == 10.0
    assert "/data/ql.png" not in {href for href, _, _ in bands.values()}  # previews skipped
    assert src.unnamed_files() == []  # every data file names its bands; previews never count
    upload = src.model_copy(
        update={"assets": {**src.assets, "raw": AssetSource(href="/data/raw.tif")}}
    )
    assert upload.unnamed_files() == ["/data/raw.tif"]


def test_contract_keys_are_written_from_the_scene_and_read_back_once() -> None:
    prov = Provenance(tool="stac_search", scene=SceneSource.from_scene(_scene()))
    dumped = prov.model_dump(mode="json")
    for key in CONTRACT_SCENE_KEYS:
        assert key in dumped, key
    assert dumped["stac_item_id"] == "S2A_TEST" and dumped["gsd"] == 10.0
    again = Provenance.model_validate(dumped)
    assert again == prov
    ev = Evidence(id="E1", kind="scene", title="t", provenance=prov)
    assert Evidence.model_validate_json(ev.model_dump_json()) == ev


def test_without_a_scene_no_contract_keys_and_unknown_keys_are_refused() -> None:
    prov = Provenance(tool="merge", derived_from=["E1", "E2"], method="difference")
    assert "stac_item_id" not in prov.model_dump()
    with pytest.raises(ValidationError):
        Provenance.model_validate({"tool": "x", "asset_hrefs": {"B04": "/a.tif"}})
    with pytest.raises(ValidationError):
        Provenance.model_validate({"source": "STAC"})  # the tool is required


def test_licenses_and_attributions_gather_every_source() -> None:
    from tools.provenance import VectorSource

    prov = Provenance(
        tool="osm_overlay",
        attribution="© OpenStreetMap contributors",
        license="ODbL-1.0",
        sources=[
            VectorSource(name="osm/a.osm.bz2", license="ODbL-1.0"),
            VectorSource(name="buildings.geojson", license="ODbL-1.0 (Microsoft)",
                         attribution="Microsoft Building Footprints"),
        ],
        model=ModelSource(name="ndwi"),
    )  # fmt: skip
    assert prov.licenses() == ["ODbL-1.0", "ODbL-1.0 (Microsoft)"]
    assert prov.attributions() == ["© OpenStreetMap contributors", "Microsoft Building Footprints"]
