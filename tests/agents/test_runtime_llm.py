"""Services and the embedded LLM server: shared across processes, supervised, `geoscout llm`.

A fake model server (tests/fakes/llm_serve_fake.py) runs through the real launch, lock,
state-file and idle-watchdog code; no weights are loaded.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents import runtime
from agents.llm import LLMUnavailable
from agents.runtime import LLM_RESTARTED_NOTE, MAX_LLM_RESTARTS, Services, _SharedLLMServers
from agents.settings import Settings
from models import llm_server
from models.llm_server import LLMSetupError, LocalLLMServer, SharedLLMServer, stop_shared_server
from models.process import pid_alive, stop_pid

FAKE = [
    sys.executable,
    str(Path(__file__).parents[1] / "fakes" / "llm_serve_fake.py"),
    "--model",
    "fake.gguf",
]
runner = CliRunner()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache folder whose 'assembled model' is a stub and whose server is the fake."""
    cache = tmp_path / "cache"
    (cache / "llm").mkdir(parents=True)
    model = cache / "llm" / "m.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setattr(llm_server, "assemble_model", lambda cache_dir, model_=None: model)
    _new_process(monkeypatch, cache)
    yield cache
    stop_shared_server(cache, timeout_s=5)
    log = cache / "launches.txt"
    for pid in map(int, log.read_text().split()) if log.exists() else []:
        if pid_alive(pid):
            stop_pid(pid, timeout_s=5)
    for proc in llm_server._LAUNCHED:
        proc.poll()


def _new_process(monkeypatch: pytest.MonkeyPatch, cache: Path, *extra: str) -> None:
    """What a new process sees: a registry of its own (the server is found on disk)."""
    shared = _SharedLLMServers()
    shared.command = [*FAKE, "--launch-log", str(cache / "launches.txt"), *extra]
    monkeypatch.setattr(runtime, "SHARED_LLM", shared)


def _settings(cache: Path, **kw: object) -> Settings:
    opts: dict[str, object] = {
        "cache_dir": cache,
        "state_db": cache.parent / "threads.sqlite",
        "planner": "llm",
        "writer": "llm",
        "llm_threads": 2,
        "llm_idle_s": 60.0,
    }
    opts.update(kw)
    return Settings(_env_file=None, **opts)  # type: ignore[arg-type]


def _launches(cache: Path) -> list[int]:
    log = cache / "launches.txt"
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def _ask(services: Services, role: str = "planner") -> str:
    chat = services.chat_model(role)
    return str(chat.chat([{"role": "user", "content": "hi"}]).text)


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        for proc in llm_server._LAUNCHED:
            proc.poll()
        time.sleep(0.05)


def test_the_server_outlives_the_services_and_is_reused(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Services(_settings(cache))
    assert first.server_pids() == ()  # nothing runs yet
    assert first.llm_alive() is None and _ask(first) == "hi"
    server = first._llm_server
    assert isinstance(server, SharedLLMServer) and not server.reused
    pid = server.pid
    assert pid is not None and first.server_pids() == (pid,)
    first.close()
    assert pid_alive(pid)  # shared: still serving after the "command" ended

    _new_process(monkeypatch, cache)
    second = Services(_settings(cache))
    assert second.server_pids() == (pid,)  # the cost meter sees it before the first call
    assert _ask(second, "writer") == "hi"
    assert second._llm_server.reused and second._llm_server.pid == pid
    assert second.llm_startup_seconds is not None and second.llm_startup_seconds < 5
    second.close()
    assert _launches(cache) == [pid]


def test_a_killed_server_is_restarted_once_and_reported_once(
    cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    services = Services(_settings(cache))
    assert _ask(services) == "hi"
    old_url = services.chat_model("planner").base_url
    pid = services._llm_server.pid
    _kill(pid)
    assert services.llm_alive() is False
    with caplog.at_level(logging.WARNING, logger="agents.runtime"):
        assert _ask(services, "writer") == "hi"  # the next call restarts it
        assert _ask(services, "planner") == "hi"
        assert _ask(services, "writer") == "hi"
    assert services.llm_alive() is True and services._llm_server.pid != pid
    assert services.chat_model("planner").base_url != old_url  # rebuilt for the new port
    assert services.llm_restarts == 1
    warnings = [r for r in caplog.records if LLM_RESTARTED_NOTE in r.getMessage()]
    assert len(warnings) == 1
    assert services.llm_restart_note == LLM_RESTARTED_NOTE
    assert services.take_llm_note() == LLM_RESTARTED_NOTE
    assert services.take_llm_note() == ""  # reported once
    assert len(_launches(cache)) == 2
    services.close()


def test_a_server_that_keeps_dying_is_given_up(cache: Path) -> None:
    services = Services(_settings(cache))
    assert _ask(services) == "hi"
    for _ in range(MAX_LLM_RESTARTS):
        _kill(services._llm_server.pid)
        assert _ask(services) == "hi"
    _kill(services._llm_server.pid)
    with pytest.raises(LLMUnavailable, match="not restarted again"):
        services.chat_model("planner")
    with pytest.raises(LLMUnavailable, match="not restarted again"):
        services.chat_model("writer")  # remembered
    assert services.llm_restarts == MAX_LLM_RESTARTS
    services.close()


def test_an_idle_exit_is_restarted_quietly(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    services = Services(_settings(cache, llm_idle_s=1.0))
    assert _ask(services) == "hi"
    pid = services._llm_server.pid
    deadline = time.monotonic() + 8
    while services.llm_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert services.llm_alive() is False, "the idle server did not exit"
    with caplog.at_level(logging.WARNING, logger="agents.runtime"):
        assert _ask(services) == "hi"
    assert services._llm_server.pid != pid
    assert services.llm_restarts == 0 and services.take_llm_note() == ""
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    services.close()


def test_a_failed_restart_is_remembered(cache: Path) -> None:
    services = Services(_settings(cache))
    assert _ask(services) == "hi"
    server = services._llm_server
    server.command = [*server.command, "--crash"]  # it will not load again
    _kill(server.pid)
    with pytest.raises(LLMUnavailable, match="could not be restarted") as err:
        services.chat_model("planner")
    assert "not enough memory" in err.value.reason
    launched = len(_launches(cache))
    with pytest.raises(LLMUnavailable, match="could not be restarted"):
        services.chat_model("writer")
    assert len(_launches(cache)) == launched  # one attempt, not one per call
    services.close()


def test_setup_errors_are_still_remembered(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def missing(cache_dir: Path, model: object = None) -> Path:
        calls.append(cache_dir)
        raise LLMSetupError("the embedded LLM is not installed", "pip install ...")

    monkeypatch.setattr(llm_server, "assemble_model", missing)
    services = Services(_settings(cache))
    for role in ("planner", "writer", "planner"):
        with pytest.raises(LLMUnavailable, match="not installed"):
            services.chat_model(role)
    assert len(calls) == 1 and services.llm_alive() is None and not _launches(cache)
    services.close()


def test_idle_zero_runs_a_child_of_the_process_as_before(cache: Path) -> None:
    services = Services(_settings(cache, llm_idle_s=0))
    assert services.server_pids() == ()
    assert _ask(services) == "hi"
    server = services._llm_server
    assert isinstance(server, LocalLLMServer) and server.process is not None
    assert not (cache / "llm" / "server.json").exists()  # nothing shared
    assert server.pid is not None
    _kill(server.pid)  # supervised too
    assert _ask(services) == "hi" and services.llm_restarts == 1
    pid = server.pid
    services.close()
    assert pid is not None and not pid_alive(pid)


def test_llm_status_and_stop_commands(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geoscout.cli import app

    monkeypatch.setenv("GEOSCOUT_CACHE_DIR", str(cache))
    res = runner.invoke(app, ["llm", "status"])
    assert res.exit_code == 0 and "No shared LLM server is running" in res.output
    services = Services(_settings(cache))
    assert _ask(services) == "hi"
    pid = services._llm_server.pid
    services.close()
    res = runner.invoke(app, ["llm", "status"])
    assert (
        res.exit_code == 0 and f"running: pid {pid}" in res.output and "exits after" in res.output
    )
    res = runner.invoke(app, ["llm", "status", "--json"])
    assert res.exit_code == 0 and f'"pid": {pid}' in res.output
    res = runner.invoke(app, ["llm", "stop"])
    assert res.exit_code == 0 and f"Stopped the LLM server (pid {pid}" in res.output
    for proc in llm_server._LAUNCHED:
        proc.poll()
    assert not pid_alive(pid)
    res = runner.invoke(app, ["llm", "stop"])
    assert res.exit_code == 0 and "No shared LLM server was running" in res.output
    res = runner.invoke(app, ["llm", "status"])
    assert "exited: stopped" in res.output
