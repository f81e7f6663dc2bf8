"""Uploaded rasters: GeoTIFF only, opened with the GTiff driver, every refusal explained."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from agents.uploads import UploadError, save_upload


def _tiff_bytes(tmp_path: Path, crs: str | None = "EPSG:32618", cog: bool = False) -> bytes:
    path = tmp_path / "src.tif"
    profile = {
        "driver": "GTiff",
        "width": 256,
        "height": 256,
        "count": 3,
        "dtype": "uint8",
        "transform": from_origin(440_000, 4_175_000, 10, 10) if crs else rasterio.Affine.identity(),
    }
    if crs:
        profile["crs"] = crs
    if cog:
        profile.update(tiled=True, blockxsize=128, blockysize=128)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.full((3, 256, 256), 100, dtype=np.uint8))
        if cog:
            ds.build_overviews([2, 4])
    return path.read_bytes()


def test_a_geotiff_is_stored_and_described(tmp_path: Path) -> None:
    data = _tiff_bytes(tmp_path, cog=True)
    info = save_upload("my scene.tif", data, tmp_path / "up")
    assert Path(info.path).is_file() and Path(info.path).parent == tmp_path / "up"
    assert Path(info.path).name.startswith("upload-")  # our name, not the sender's
    assert (info.width, info.height, info.bands) == (256, 256, 3)
    assert info.crs == "EPSG:32618" and info.cloud_optimized
    w, s, e, n = info.bounds_lonlat
    assert -76 < w < e < -75 and 37 < s < n < 38
    assert "Cloud-Optimized GeoTIFF" in info.describe()


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.tif", b"", "is empty"),
        ("photo.png", b"\x89PNG\r\n\x1a\n0000", "not a GeoTIFF"),
        ("notes.tif", b"hello, this is text", "not a TIFF file"),
        ("../../etc/passwd.tif", b"hello", "not a TIFF file"),
    ],
)
def test_other_files_are_refused_with_a_reason(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    with pytest.raises(UploadError, match=message):
        save_upload(name, data, tmp_path / "up")


def test_png_renamed_to_tif_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    with pytest.raises(UploadError, match="not a TIFF"):
        save_upload("fake.tif", buf.getvalue(), tmp_path / "up")


def test_size_limit(tmp_path: Path) -> None:
    with pytest.raises(UploadError, match=r"the limit is 0\.001 MB"):
        save_upload("big.tif", b"II*\x00" + b"0" * 5000, tmp_path / "up", max_mb=0.001)


def test_tiff_without_georeference_is_refused_and_removed(tmp_path: Path) -> None:
    data = _tiff_bytes(tmp_path, crs=None)
    with pytest.raises(UploadError, match="no georeference"):
        save_upload("plain.tif", data, tmp_path / "up")
    assert not list((tmp_path / "up").glob("*.tif"))


def test_damaged_tiff_is_refused(tmp_path: Path) -> None:
    data = _tiff_bytes(tmp_path)[:600]
    with pytest.raises(UploadError, match="could not be read"):
        save_upload("cut.tif", data, tmp_path / "up")


def test_an_upload_saved_under_a_relative_folder_is_analysed(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app stores uploads under ``.geoscout/uploads`` (relative to where it runs): the
    question about the image must read that file, not look for its name in the data
    folders (it once failed with "the file 'upload-....tif' does not exist")."""
    from agents.service import Assistant
    from agents.settings import Settings

    monkeypatch.chdir(tmp_path)
    naip = next((data_dir / "naip_nd").glob("*2020*.tif"))
    info = save_upload("field.tif", naip.read_bytes(), Path(".geoscout/uploads"))
    assert Path(info.path).is_absolute() and Path(info.path).is_file()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=[data_dir],
        cache_dir=tmp_path / "cache",
        state_db=tmp_path / "threads.sqlite",
        planner="rules",
        writer="template",
    )
    relative = str(Path(info.path).relative_to(tmp_path))  # what an older app passed
    with Assistant(settings) as a:
        b = a.ask(
            "How much of this image is covered by water?",
            raster=relative,
            upload_dirs=[Path(relative).parent],
        )
    seg = next(t for t in b.trace if t.tool == "segment")
    assert seg.status == "ok", seg.error
    assert any(e.kind == "mask" and "water_area_km2" in e.values for e in b.evidence)
