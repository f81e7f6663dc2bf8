"""Graph state (TypedDict with reducers), its payload store, and the run context.

The state is checkpointed after every step, whole (LangGraph's SQLite saver writes every
channel's value in each checkpoint), so it holds what is needed to resume and inspect a
run (intent, plan, step statuses, evidence, answer) and no bulk: map layers, masks and
large geometries are stored once in the :class:`PayloadStore` and referenced by id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import operator
import sqlite3
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from agents.settings import Settings
from tools.base import ToolContext, ToolSpec

log = logging.getLogger(__name__)

PAYLOAD_KEY = "$payload"
# JSON values up to this size stay inline in the state: references would cost more to
# follow than they save (a place, a scene's footprint, a bounding box).
INLINE_MAX_BYTES = 2048


class MissingPayload(KeyError):
    """A reference whose payload is in neither the run's memory nor the state database."""


def is_payload_ref(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(PAYLOAD_KEY), str)


class PayloadStore:
    """Large JSON values, content-addressed (sha256 of their JSON), referenced from the state
    as ``{"$payload": digest}``.

    One store per run: it keeps the run's payloads in memory (nodes read them back without
    decoding) and writes each once, compressed, to ``geoscout_payloads`` in the state
    database, so a run can be resumed or inspected from another process. A failed write
    (full disk) is logged once and the run goes on from memory, like the checkpointer.
    """

    TABLE = "geoscout_payloads"

    def __init__(
        self, conn: sqlite3.Connection | None = None, lock: threading.Lock | None = None
    ) -> None:
        # ``lock`` serialises use of a connection shared with the checkpointer.
        self._conn = conn
        self._lock = lock or threading.Lock()
        self._memory: dict[str, Any] = {}
        self._memory_lock = threading.Lock()
        self._failed = False

    @classmethod
    def create_table(cls, conn: sqlite3.Connection) -> None:
        with conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {cls.TABLE} (id TEXT PRIMARY KEY, data BLOB NOT NULL)"
            )

    def slim(self, value: Any) -> Any:
        """``value`` itself when small, else a reference to it (stored once)."""
        if value is None or is_payload_ref(value):
            return value
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if len(text) <= INLINE_MAX_BYTES:
            return value
        digest = hashlib.sha256(text.encode()).hexdigest()
        with self._memory_lock:
            if digest in self._memory:
                return {PAYLOAD_KEY: digest}
            self._memory[digest] = value
        if self._conn is not None and not self._failed:
            data = zlib.compress(text.encode(), 1)  # 5x faster than 6, 25 % larger
            try:
                with self._lock:
                    self._conn.execute(
                        f"INSERT OR IGNORE INTO {self.TABLE} (id, data) VALUES (?, ?)",
                        (digest, data),
                    )
                    self._conn.commit()
            except sqlite3.Error as exc:
                self._failed = True
                log.warning("payload store: %s; this run keeps its payloads in memory", exc)
        return {PAYLOAD_KEY: digest}

    def load(self, value: Any) -> Any:
        """The value a reference stands for; anything else unchanged."""
        if not is_payload_ref(value):
            return value
        digest = value[PAYLOAD_KEY]
        with self._memory_lock:
            if digest in self._memory:
                return self._memory[digest]
        row = None
        if self._conn is not None:
            try:
                with self._lock:
                    row = self._conn.execute(
                        f"SELECT data FROM {self.TABLE} WHERE id = ?", (digest,)
                    ).fetchone()
            except sqlite3.Error as exc:
                raise MissingPayload(f"payload {digest[:12]} unreadable ({exc})") from exc
        if row is None:
            raise MissingPayload(f"payload {digest[:12]} is not in the state database")
        loaded = json.loads(zlib.decompress(row[0]))
        with self._memory_lock:
            self._memory[digest] = loaded
        return loaded

    def slim_fields(self, record: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        """A copy of ``record`` with the values under ``keys`` slimmed."""
        return {k: self.slim(v) if k in keys else v for k, v in record.items()}

    def load_fields(self, record: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        """A copy of ``record`` with the references under ``keys`` loaded."""
        return {k: self.load(v) if k in keys else v for k, v in record.items()}


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer for parallel writes keyed by step id."""
    out = dict(left or {})
    out.update(right or {})
    return out


class State(TypedDict, total=False):
    """Everything checkpointed for one question (plain JSON values only).

    Payload references ({"$payload": id}, see PayloadStore) stand for large values: the
    output values and evidence drafts' ``layer`` and ``geometry`` in ``results``, evidence
    ``geometry``, and ``layers``."""

    question: str
    bbox: list[float] | None
    raster: str | None
    previous: dict[str, Any] | None  # the previous turn's Intent (follow-ups)
    intent: dict[str, Any]
    future_years: list[int]
    status: str  # "go" | "refused" | "clarify"
    refusal_reason: str | None
    clarification: dict[str, Any] | None
    plan: dict[str, Any] | None
    results: Annotated[dict[str, dict[str, Any]], merge_dicts]
    evidence: list[dict[str, Any]]
    layers: dict[str, Any]
    answer: dict[str, Any]
    guardrails: Annotated[list[dict[str, Any]], operator.add]
    timings: Annotated[dict[str, float], merge_dicts]
    llm_calls: Annotated[list[dict[str, Any]], operator.add]
    notes: Annotated[dict[str, str], merge_dicts]  # "parser" / "planner" / "writer": who, why


class InputState(TypedDict, total=False):
    question: str
    bbox: list[float] | None
    raster: str | None
    previous: dict[str, Any] | None


class StepTask(TypedDict):
    """Payload of one Send: a step with its references already resolved (to values, or to
    payload references that the step loads)."""

    step: dict[str, Any]
    args: dict[str, Any]


@dataclass(frozen=True)
class GraphContext:
    """Run-scoped context (not checkpointed): settings, tools, their context, the date."""

    settings: Settings
    # Lazy (tools.registry.Catalogue): a tool's module is imported when its spec is used.
    catalog: Mapping[str, ToolSpec]
    tool_ctx: ToolContext
    today: dt.date
    # role ("parser" | "planner" | "writer") -> chat model; raises agents.llm.LLMUnavailable. None: no LLM.
    llm: Callable[[str], Any] | None = None
    # The run's large values (memory only unless the service gives it the state database).
    payloads: PayloadStore = field(default_factory=PayloadStore)
