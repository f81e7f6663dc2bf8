"""The command line: bad input gives clear messages and documented exit codes, never tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geoscout.cli import EXIT_BAD_INPUT, EXIT_CLARIFY, EXIT_REFUSED, app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSCOUT_STATE_DB", str(tmp_path / "threads.sqlite"))
    monkeypatch.chdir(tmp_path)


def test_empty_question() -> None:
    r = runner.invoke(app, ["ask", "   "])
    assert r.exit_code == EXIT_BAD_INPUT and "empty" in r.output


def test_too_long_question() -> None:
    r = runner.invoke(app, ["ask", "water " * 20_000])
    assert r.exit_code == EXIT_BAD_INPUT and "limit" in r.output


@pytest.mark.parametrize("bbox", ["0,95,1,96", "10,0,5,1", "a,b,c,d"])
def test_bad_bbox(bbox: str) -> None:
    r = runner.invoke(app, ["ask", "How much water is here?", "--bbox", bbox])
    assert r.exit_code == EXIT_BAD_INPUT and "--bbox" in r.output


def test_missing_raster() -> None:
    r = runner.invoke(app, ["ask", "How much water?", "--raster", "nope.tif"])
    assert r.exit_code == EXIT_BAD_INPUT and "No such file" in r.output


def test_invalid_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSCOUT_PROFILE", "sideways")
    r = runner.invoke(app, ["ask", "How much water is around Accomac?"])
    assert r.exit_code == EXIT_BAD_INPUT and "Invalid settings" in r.output


def test_tracking_refused_as_json_without_tools() -> None:
    r = runner.invoke(
        app,
        [
            "ask",
            "Where does my neighbour drive every day? Track him on satellite images.",
            "--json",
        ],
    )
    assert r.exit_code == EXIT_REFUSED
    bundle = json.loads(r.stdout)
    assert bundle["refused"] is True and bundle["refusal_reason"]
    assert bundle["plan"] == [] and bundle["trace"] == []


def test_question_without_place_asks_to_clarify() -> None:
    r = runner.invoke(app, ["ask", "How much water is there?", "--json"])
    assert r.exit_code == EXIT_CLARIFY
    bundle = json.loads(r.stdout)
    assert bundle["clarification"]["question"] and not bundle["refused"]


def test_future_dates_ask_to_clarify() -> None:
    r = runner.invoke(app, ["ask", "How much water was around Accomac in 2031?", "--json"])
    assert r.exit_code == EXIT_CLARIFY
    assert "future" in json.loads(r.stdout)["answer"]["text"]


def test_console_script_never_prints_a_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("geoscout")
    env = {**os.environ, "GEOSCOUT_MAX_PIXELS": "not-a-number"}
    p = subprocess.run(
        [str(exe), "ask", "How much water around Accomac?"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == EXIT_BAD_INPUT
    assert "Traceback" not in p.stderr + p.stdout and "max_pixels" in p.stderr + p.stdout


def test_turns_saved_by_another_version_are_said_not_fatal(tmp_path: Path) -> None:
    from agents.conversations import ConversationStore

    store = ConversationStore(tmp_path / "threads.sqlite")
    old = '{"question": "x", "evidence": [{"id": "E1", "kind": "place", "title": "t", "provenance": {"aoi_method": "old"}}]}'
    with store._conn:
        store._conn.execute(
            "INSERT INTO geoscout_turns VALUES ('abcdef12', 1, 't', 'now', ?)", (old,)
        )
    store.close()
    r = runner.invoke(
        app,
        ["ask", "Where does my neighbour live? Track him.", "-c", "abcdef12", "--json"],
    )
    assert r.exit_code == EXIT_REFUSED and "Traceback" not in r.output
    assert "saved by another version of GeoScout" in r.output
