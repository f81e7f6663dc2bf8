"""The app in a real browser: Streamlit served on 127.0.0.1, Debian's Chromium via Playwright.

Asks an example question and checks what a person sees: the steps while they run, the
answer's citations, an evidence card, the map iframe with the imagery and the layers, and
that the page asked nothing of any host but 127.0.0.1 (offline). A full-page screenshot and
the timings go to out/test-artifacts/browser/ (GEOSCOUT_TEST_ARTIFACTS to change).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
QUESTION = "How much open water is there around Accomac, Virginia?"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does)",
    ),
]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(app_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
            "--server.address", "127.0.0.1", "--server.port", str(port),
            "--server.headless", "true", "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false",
        ],
        cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("streamlit did not start:\n" + (tmp_path / "streamlit.log").read_text())
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _artifacts() -> Path:
    path = (
        Path(os.environ.get("GEOSCOUT_TEST_ARTIFACTS", ROOT / "out" / "test-artifacts")) / "browser"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _full_page(page: object, path: Path) -> None:
    """Streamlit scrolls inside its main block: grow the viewport to it, then shoot."""
    height = page.evaluate(  # type: ignore[attr-defined]
        "() => Math.max(...Array.from(document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stAppViewContainer], [data-testid=stMainBlockContainer]'"
        ")).map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": 1400, "height": int(height) + 160})  # type: ignore[attr-defined]
    page.wait_for_timeout(1500)  # type: ignore[attr-defined]
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]


def test_example_question_in_chromium(server: str, tmp_path: Path) -> None:
    out = _artifacts()
    outside: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})

            def record(request: object) -> None:
                url = request.url  # type: ignore[attr-defined]
                if not url.startswith((server, "data:", "blob:", "about:")):
                    outside.append(url)

            page.on("request", record)
            page.goto(server, wait_until="domcontentloaded")
            page.get_by_text("Try one of these").wait_for(timeout=60_000)

            t0 = time.perf_counter()
            page.get_by_role("button", name=QUESTION).click()
            page.get_by_text("Finding Accomac, Virginia").first.wait_for(timeout=60_000)
            first_step = time.perf_counter() - t0
            page.screenshot(path=str(out / "running.png"))
            page.get_by_text("Download the evidence").wait_for(timeout=180_000)
            answered = time.perf_counter() - t0

            # Citations link to evidence cards; the card names its map layer.
            cite = page.locator('a[href="#t1-e3"]').first
            cite.wait_for(timeout=10_000)
            assert cite.inner_text() == "[E3]"
            card = page.locator("#t1-e3")
            card.wait_for(timeout=10_000)
            assert "E3 · Water mask" in card.inner_text()
            assert page.get_by_text("On the map:").count() >= 3
            assert page.get_by_text("Acquired:").count() >= 3

            # The map: an iframe with the imagery overlay, the vector layers and the legend.
            frame_el = page.locator('iframe[title="streamlit_folium.st_folium"]').first
            frame_el.wait_for(timeout=30_000)
            frame = page.frame_locator('iframe[title="streamlit_folium.st_folium"]').first
            frame.locator(".leaflet-image-layer").first.wait_for(timeout=30_000)
            map_ready = time.perf_counter() - t0
            assert frame.locator("path.leaflet-interactive").count() >= 2
            legend = frame.locator(".leaflet-control-layers").inner_text()
            assert "E3 · Water mask" in legend and "E2 · image" in legend
            assert frame.locator(".leaflet-draw-draw-rectangle").count() == 1

            cite.click()  # jumps to the card
            page.wait_for_timeout(800)
            assert card.is_visible()

            # Drawing a rectangle on the map makes it the area of the next question.
            frame_el.scroll_into_view_if_needed()
            frame.locator(".leaflet-draw-draw-rectangle").click()
            box = frame_el.bounding_box()
            assert box is not None
            x, y = box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.45
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 90, y + 70, steps=8)
            page.mouse.up()
            page.get_by_text("Your drawn area").wait_for(timeout=30_000)

            _full_page(page, out / "answer.png")
            shutil.copy(out / "answer.png", tmp_path / "answer.png")
        finally:
            browser.close()

    timings = {
        "question": QUESTION,
        "first_step_visible_s": round(first_step, 2),
        "answer_visible_s": round(answered, 2),
        "map_imagery_visible_s": round(map_ready, 2),
    }
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(json.dumps(timings))
    assert outside == [], f"the page reached beyond 127.0.0.1: {outside[:5]}"
    assert first_step < answered
