"""Family A: the local-file policy, through the tools that read rasters.

Every attack is a real file (or link, or VRT, or FIFO) put where data could put it; the tool
is invoked through its SPEC like the graph does; the safe outcome is asserted on the result
and, where a server is named, on the requests the server received (none).
"""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import pytest

from tests.security.servers import RecordingServer, Route, geotiff, vrt_pointing_at
from tools.access import AccessDenied, AccessPolicy
from tools.base import ToolContext
from tools.geo import SceneAsset, SceneRef
from tools.ground import SPEC as GROUND
from tools.segment import SPEC as SEGMENT

BOX = (-99.15, 47.01, -99.14, 47.02)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """A data folder with one good raster, and an outside folder with a 'secret' raster."""
    data = tmp_path / "data"
    outside = tmp_path / "outside"
    geotiff(data / "good.tif", BOX)
    geotiff(outside / "secret.tif", BOX)
    return data, outside


def _ctx(data: Path, **extra: object) -> ToolContext:
    return ToolContext(data_dirs=(data,), extra=dict(extra))


def _segment(raster: str, ctx: ToolContext) -> tuple[str, str]:
    res = SEGMENT.invoke(
        {"raster": raster, "target": "water", "bands": ["red", "green", "blue"]}, ctx
    )
    assert res.error is not None, f"{raster!r} was read"
    return res.error.code, res.error.message


def test_a01_absolute_path_outside_the_folders(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    code, msg = _segment(str(outside / "secret.tif"), _ctx(data))
    assert code == "invalid_args" and "outside the folders" in msg


def test_a02_relative_traversal(folders: tuple[Path, Path]) -> None:
    data, _ = folders
    code, _ = _segment("../outside/secret.tif", _ctx(data))
    assert code == "invalid_args"


def test_a03_symlinked_file_leaving_the_folder(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    (data / "link.tif").symlink_to(outside / "secret.tif")
    code, msg = _segment("link.tif", _ctx(data))
    assert code == "invalid_args" and "outside" in msg


def test_a04_symlinked_directory_leaving_the_folder(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    (data / "sub").symlink_to(outside, target_is_directory=True)
    code, _ = _segment("sub/secret.tif", _ctx(data))
    assert code == "invalid_args"


def test_a05_vsizip_path(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    with zipfile.ZipFile(data / "pack.zip", "w") as zf:
        zf.write(outside / "secret.tif", "secret.tif")
    code, msg = _segment(f"/vsizip/{data / 'pack.zip'}/secret.tif", _ctx(data))
    assert code == "invalid_args" and "virtual file system" in msg


def test_a06_vsicurl_to_loopback_is_never_requested(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    with RecordingServer({"/secret.tif": Route((outside / "secret.tif").read_bytes())}) as srv:
        code, _ = _segment(f"/vsicurl/{srv.url}/secret.tif", _ctx(data))
        assert srv.requests == []
    assert code == "invalid_args"


def test_a07_gdal_connection_strings(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    for raw in (f"GTIFF_DIR:1:{outside / 'secret.tif'}", "PG:dbname=x", "WMS:http://127.0.0.1:9/"):
        code, _ = _segment(raw, _ctx(data))
        assert code == "invalid_args", raw


def test_a08_vrt_disguised_as_tif_reading_outside(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    (data / "evil.tif").write_text(vrt_pointing_at(str(outside / "secret.tif")))
    code, msg = _segment("evil.tif", _ctx(data))
    assert code == "bad_data" and "not a GeoTIFF" in msg


def test_a09_vrt_disguised_as_tif_reading_a_url(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    with RecordingServer({"/s.tif": Route((outside / "secret.tif").read_bytes())}) as srv:
        (data / "evil2.tif").write_text(vrt_pointing_at(f"/vsicurl/{srv.url}/s.tif"))
        code, _ = _segment("evil2.tif", _ctx(data))
        assert srv.requests == []
    assert code == "bad_data"


def test_a10_file_url(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    code, _ = _segment(f"file://{outside / 'secret.tif'}", _ctx(data))
    assert code == "invalid_args"
    code, _ = _segment(f"file://otherhost{outside / 'secret.tif'}", _ctx(data))
    assert code == "invalid_args"


def test_a11_sidecar_overview_linking_outside(folders: tuple[Path, Path]) -> None:
    data, outside = folders
    (outside / "fake.ovr").write_bytes((outside / "secret.tif").read_bytes())
    (data / "good.tif.ovr").symlink_to(outside / "fake.ovr")
    code, msg = _segment("good.tif", _ctx(data))
    assert code == "invalid_args" and "good.tif.ovr" in msg


def test_a12_nul_byte_and_empty_names(folders: tuple[Path, Path]) -> None:
    data, _ = folders
    policy = AccessPolicy.from_context(_ctx(data))
    for raw in ("good.tif\x00../../etc/passwd", "   "):
        with pytest.raises(AccessDenied):
            policy.local_path(raw)


def test_a13_fifo_named_tif_does_not_hang(folders: tuple[Path, Path]) -> None:
    data, _ = folders
    os.mkfifo(data / "pipe.tif")
    t0 = time.monotonic()
    code, _ = _segment("pipe.tif", _ctx(data))
    assert code == "invalid_args"
    assert time.monotonic() - t0 < 5


def test_a14_scene_asset_hrefs_outside_and_remote(folders: tuple[Path, Path]) -> None:
    """A catalog item's hrefs (a scene argument) get the same policy as a raster path."""
    data, outside = folders
    with RecordingServer({"/s.tif": Route((outside / "secret.tif").read_bytes())}) as srv:
        for href, want in (
            (str(outside / "secret.tif"), "invalid_args"),
            (f"{srv.url}/s.tif", "unavailable"),  # offline: nothing remote
            (f"/vsicurl/{srv.url}/s.tif", "unavailable"),
        ):
            scene = SceneRef(
                id="poisoned",
                bbox=BOX,
                assets={"d": SceneAsset(href=href, bands=["red", "green", "blue", "nir"])},
            )
            res = SEGMENT.invoke({"scene": scene.model_dump(), "target": "water"}, _ctx(data))
            assert res.error is not None and res.error.code == want, href
        assert srv.requests == []


def test_a15_remote_href_to_loopback_refused_online(folders: tuple[Path, Path]) -> None:
    """Online, a catalog href to 127.0.0.1 (or a name for it) is refused before any request."""
    data, outside = folders
    with RecordingServer({"/s.tif": Route((outside / "secret.tif").read_bytes())}) as srv:
        ctx = ToolContext(profile="online", data_dirs=(data,), stac_url="https://example.org")
        for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0x7f000001"):
            href = f"http://{host}:{srv.port}/s.tif"
            scene = SceneRef(
                id="p", bbox=BOX, assets={"d": SceneAsset(href=href, bands=["green", "nir"])}
            )
            res = SEGMENT.invoke({"scene": scene.model_dump(), "target": "water"}, ctx)
            assert res.error is not None and res.error.code in (
                "invalid_args",
                "service_unreachable",
            ), host
        assert srv.requests == []


def test_a16_private_and_link_local_addresses_refused_online() -> None:
    policy = AccessPolicy.build(profile="online")
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x.tif",
        "http://192.168.1.1/x.tif",
        "http://[::1]/x.tif",
        "http://[fe80::1]/x.tif",
        "http://0.0.0.0/x.tif",
        "ftp://example.org/x.tif",
        "gopher://127.0.0.1:70/",
    ):
        with pytest.raises(AccessDenied):
            policy.check_url(url)


def test_a17_ground_reads_nothing_outside(folders: tuple[Path, Path]) -> None:
    """The vision tool's raster goes through the same policy (no VLM needed to be refused)."""
    data, outside = folders
    from models.vlm import MAX_DETECTIONS  # noqa: F401  (the tool's module is importable)
    from tools.base import VLMEndpoint

    ctx = ToolContext(
        data_dirs=(data,), vlm=VLMEndpoint(base_url="http://127.0.0.1:9/v1", model="m")
    )
    res = GROUND.invoke({"raster": str(outside / "secret.tif"), "query": "ships"}, ctx)
    assert res.error is not None and res.error.code == "invalid_args"


def test_a18_upload_folder_is_readable_only_when_given(folders: tuple[Path, Path]) -> None:
    """The control case: the same file is read once its folder is an upload folder."""
    data, outside = folders
    ctx = _ctx(data, upload_dirs=[str(outside)])
    res = SEGMENT.invoke(
        {
            "raster": str(outside / "secret.tif"),
            "target": "vegetation",
            "bands": ["red", "green", "blue"],
        },
        ctx,
    )
    # Read (it is allowed now); RGB has no NIR, so the tool says what is missing.
    assert res.error is None or res.error.code == "unsupported"
