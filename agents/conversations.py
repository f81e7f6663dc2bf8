"""Conversations of the app, kept across page reloads.

A conversation id sits in the page URL; each question in it is one LangGraph run whose
thread id is ``<conversation>-<turn>`` in the SQLite checkpointer (a graph run is one
question: its state reducers add up, so turns do not share a thread). The finished
AnswerBundle of each turn is kept beside the checkpoints, in the same SQLite file, so a
reloaded page shows the answers, maps and costs as they were. Its map layers are kept
once, in the payload table that the run already wrote them to (agents/state); turns stored
by earlier versions, with the layers inline, read back as they are.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import ValidationError

from agents.schemas import AnswerBundle
from agents.state import MissingPayload, PayloadStore, is_payload_ref

log = logging.getLogger(__name__)

_ID = re.compile(r"^[0-9a-f]{8,32}$")


def open_state_db(path: Path) -> tuple[sqlite3.Connection, str | None]:
    """The SQLite state file (checkpoints and turns) and a warning when it was not usable.

    A corrupt file (not a database, malformed) is moved aside as
    ``<name>.corrupt-<time>`` and a fresh one is used; a location that cannot hold a
    database (unwritable, a directory, a full disk) gives an in-memory one. The question is
    answered either way: history is optional, the answer is not.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
    except (OSError, sqlite3.Error) as exc:
        return _memory(), f"state database {path} unusable ({exc}); this run is kept in memory"
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn, None
    except sqlite3.DatabaseError as exc:
        conn.close()
        if not _is_corrupt(exc):
            return _memory(), f"state database {path} unusable ({exc}); kept in memory"
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        path.replace(aside)
        for suffix in ("-wal", "-shm", "-journal"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.replace(aside.with_name(aside.name + suffix))
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except (OSError, sqlite3.Error) as exc:
        return _memory(), f"state database {path} is corrupt and could not be replaced ({exc})"
    return (
        conn,
        f"state database {path} was corrupt: moved aside to {aside.name}, a new one is used",
    )


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return not isinstance(exc, sqlite3.OperationalError) or any(
        w in text for w in ("not a database", "malformed", "corrupt")
    )


def _memory() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", check_same_thread=False)


class ResilientSaver(BaseCheckpointSaver):
    """A LangGraph checkpointer on SQLite that survives write faults (full disk, I/O errors):
    on the first failed write it warns, copies the thread's last checkpoint to memory, and
    goes on in memory, so the question in progress is still answered."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        from langgraph.checkpoint.sqlite import SqliteSaver

        self.primary = SqliteSaver(conn)
        super().__init__(serde=self.primary.serde)
        self.fallback: Any = None
        self.warning: str | None = None
        self._lock = threading.Lock()

    @property
    def active(self) -> Any:
        return self.fallback if self.fallback is not None else self.primary

    @property
    def lock(self) -> threading.Lock:
        """The lock that serialises use of the SQLite connection (shared with the payloads)."""
        lock: threading.Lock = self.primary.lock
        return lock

    @property
    def config_specs(self) -> list[Any]:
        return list(self.primary.config_specs)

    def _switch(self, exc: Exception, config: Any) -> None:
        from langgraph.checkpoint.memory import InMemorySaver

        with self._lock:
            if self.fallback is not None:
                return
            self.warning = f"the state database failed ({exc}); this run goes on in memory"
            log.warning(self.warning)
            memory = InMemorySaver(serde=self.serde)
            if config is not None:
                try:
                    tup = self.primary.get_tuple(config)
                except sqlite3.Error:
                    tup = None
                if tup is not None:
                    parent = tup.parent_config or {
                        "configurable": {
                            "thread_id": tup.config["configurable"]["thread_id"],
                            "checkpoint_ns": tup.config["configurable"].get("checkpoint_ns", ""),
                        }
                    }
                    versions = dict(tup.checkpoint.get("channel_versions", {}))
                    memory.put(parent, tup.checkpoint, tup.metadata, versions)
            self.fallback = memory

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if self.fallback is None:
            try:
                return self.primary.put(config, checkpoint, metadata, new_versions)
            except sqlite3.Error as exc:
                self._switch(exc, config)
                # The checkpoint carries every channel's value: store them all.
                new_versions = dict(checkpoint.get("channel_versions", {}))
        return self.fallback.put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        if self.fallback is None:
            try:
                self.primary.put_writes(config, writes, task_id, task_path)
                return
            except sqlite3.Error as exc:
                self._switch(exc, config)
        self.fallback.put_writes(config, writes, task_id, task_path)

    def get_tuple(self, config: Any) -> Any:
        if self.fallback is not None:
            return self.fallback.get_tuple(config)
        try:
            return self.primary.get_tuple(config)
        except sqlite3.Error as exc:
            log.warning("state database unreadable (%s)", exc)
            return None

    def get(self, config: Any) -> Any:
        tup = self.get_tuple(config)
        return tup.checkpoint if tup else None

    def list(self, config: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(list(self.active.list(config, **kwargs)))

    def delete_thread(self, thread_id: str) -> None:
        self.active.delete_thread(thread_id)

    def get_next_version(self, current: Any, channel: Any) -> Any:
        return self.active.get_next_version(current, channel)


def new_conversation_id() -> str:
    return uuid.uuid4().hex[:16]


def valid_conversation_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


def turn_thread_id(conversation: str, turn: int) -> str:
    return f"{conversation}-{turn}"


class ConversationStore:
    """Turns per conversation: (turn number, thread id, bundle JSON)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # Turns the last turns() call skipped, with why: the caller may tell the person.
        self.unreadable: list[str] = []
        self._conn, self.warning = open_state_db(self.path)
        if self.warning:
            log.warning("conversation store: %s", self.warning)
        try:
            self._create()
        except sqlite3.Error as exc:  # a read-only or full disk: keep the turns in memory
            self.warning = f"conversation store {self.path} not writable ({exc}); kept in memory"
            log.warning(self.warning)
            self._conn = _memory()
            self._create()

    def _create(self) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS geoscout_turns ("
                " conversation TEXT NOT NULL, turn INTEGER NOT NULL, thread_id TEXT NOT NULL,"
                " created TEXT NOT NULL, bundle TEXT NOT NULL,"
                " PRIMARY KEY (conversation, turn))"
            )
        with self._lock:
            PayloadStore.create_table(self._conn)

    def _payloads(self) -> PayloadStore:
        # One per call: the store's memory is not kept across turns (the app lives long).
        return PayloadStore(self._conn, self._lock)

    def next_turn(self, conversation: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT MAX(turn) FROM geoscout_turns WHERE conversation = ?", (conversation,)
            ).fetchone()
        return int(row[0] or 0) + 1

    def add(self, conversation: str, turn: int, bundle: AnswerBundle) -> None:
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        data = json.loads(bundle.model_dump_json())  # the JSON form turns always had
        # Stored once: the run wrote the same layers (same JSON, same id) to the table.
        data["layers"] = self._payloads().slim(data["layers"])
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO geoscout_turns VALUES (?, ?, ?, ?, ?)",
                (conversation, turn, bundle.thread_id or "", created, text),
            )

    def turns(self, conversation: str) -> list[tuple[int, AnswerBundle]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT turn, bundle FROM geoscout_turns WHERE conversation = ? ORDER BY turn",
                (conversation,),
            ).fetchall()
        out = []
        self.unreadable = []
        payloads = self._payloads()
        for turn, text in rows:
            try:
                out.append((int(turn), _read_bundle(text, payloads)))
            except (ValidationError, ValueError) as exc:  # another version's, or damaged
                if isinstance(exc, ValidationError):
                    err = exc.errors()[0]
                    where = ".".join(str(p) for p in err["loc"])
                    why = f"stored in another version's format: {where}: {err['msg']}"
                else:
                    why = str(exc)
                log.warning(
                    "turn %s of conversation %s cannot be read back (%s); skipped",
                    turn,
                    conversation,
                    why[:300],
                )
                self.unreadable.append(f"turn {turn}: {why[:300]}")
        return out

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _read_bundle(text: str, payloads: PayloadStore) -> AnswerBundle:
    """A stored turn's bundle; its layers loaded when stored by reference.

    ValidationError or ValueError (MissingPayload included) when it cannot be read."""
    data = json.loads(text)
    if not isinstance(data, dict) or not is_payload_ref(data.get("layers")):
        return AnswerBundle.model_validate_json(text)  # layers inline (earlier versions)
    try:
        data["layers"] = payloads.load(data["layers"])
    except MissingPayload as exc:
        raise ValueError(f"its map layers are missing from the state database ({exc})") from exc
    return AnswerBundle.model_validate(data)
