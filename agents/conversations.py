"""Conversations of the app, kept across page reloads.

A conversation id sits in the page URL; each question in it is one LangGraph run whose
thread id is ``<conversation>-<turn>`` in the SQLite checkpointer (a graph run is one
question: its state reducers add up, so turns do not share a thread). The finished
AnswerBundle of each turn is kept beside the checkpoints, in the same SQLite file, so a
reloaded page shows the answers, maps and costs as they were.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sqlite3
import threading
import uuid
from pathlib import Path

from pydantic import ValidationError

from agents.schemas import AnswerBundle

log = logging.getLogger(__name__)

_ID = re.compile(r"^[0-9a-f]{8,32}$")


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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10)
        except (OSError, sqlite3.Error) as exc:
            log.warning("conversation store %s unusable (%s); kept in memory", self.path, exc)
            self._conn = sqlite3.connect(":memory:", check_same_thread=False)
        with self._lock, self._conn:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS geoscout_turns ("
                " conversation TEXT NOT NULL, turn INTEGER NOT NULL, thread_id TEXT NOT NULL,"
                " created TEXT NOT NULL, bundle TEXT NOT NULL,"
                " PRIMARY KEY (conversation, turn))"
            )

    def next_turn(self, conversation: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT MAX(turn) FROM geoscout_turns WHERE conversation = ?", (conversation,)
            ).fetchone()
        return int(row[0] or 0) + 1

    def add(self, conversation: str, turn: int, bundle: AnswerBundle) -> None:
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO geoscout_turns VALUES (?, ?, ?, ?, ?)",
                (conversation, turn, bundle.thread_id or "", created, bundle.model_dump_json()),
            )

    def turns(self, conversation: str) -> list[tuple[int, AnswerBundle]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT turn, bundle FROM geoscout_turns WHERE conversation = ? ORDER BY turn",
                (conversation,),
            ).fetchall()
        out = []
        for turn, text in rows:
            try:
                out.append((int(turn), AnswerBundle.model_validate_json(text)))
            except ValidationError:  # written by another version: skip rather than fail
                log.warning("turn %s of %s cannot be read back; skipped", turn, conversation)
        return out

    def close(self) -> None:
        with self._lock:
            self._conn.close()
