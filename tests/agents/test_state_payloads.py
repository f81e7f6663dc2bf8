"""Large values stay out of the checkpoints; the AnswerBundle is assembled from references.

Budgets from measurements of the lake-change question (geocode, 2 x stac_search, 2 x
segment): with the masks and map layers in the graph state its 15 checkpoints and their
writes held about 10.5 MB (each checkpoint up to 2 MB); with references, about 0.23 MB.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agents.state
from agents.cost import CostMeter
from agents.schemas import AnswerBundle
from agents.service import Assistant
from agents.settings import Settings
from agents.state import INLINE_MAX_BYTES, MissingPayload, PayloadStore, is_payload_ref

TODAY = dt.date(2026, 11, 24)
LAKES = "How did the lakes at 47.02 N, 99.15 W change between 2009 and 2020?"
CHECKPOINT_BUDGET = 600_000  # bytes of all checkpoints and writes of one question
ONE_CHECKPOINT_BUDGET = 64_000


def _big(n: int = 400) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [i * 0.001, 47.0 + i * 1e-4]},
                "properties": {"i": i, "label": "ä"},
            }
            for i in range(n)
        ],
    }


def _db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), check_same_thread=False)
    PayloadStore.create_table(conn)
    return conn


def test_small_values_stay_inline_large_ones_are_stored_once(tmp_path: Path) -> None:
    conn = _db(tmp_path / "s.sqlite")
    store = PayloadStore(conn)
    small = {"type": "Point", "coordinates": [1.0, 2.0]}
    assert store.slim(small) is small
    assert store.slim(None) is None
    big = _big()
    assert len(json.dumps(big)) > INLINE_MAX_BYTES
    ref = store.slim(big)
    assert is_payload_ref(ref) and store.slim(big) == ref and store.slim(ref) == ref
    assert conn.execute("SELECT count(*) FROM geoscout_payloads").fetchone()[0] == 1
    assert store.load(ref) is big  # the run reads its own payloads from memory
    # Another process (a resumed or inspected run) reads it from the database, unchanged.
    assert PayloadStore(_db(tmp_path / "s.sqlite")).load(ref) == big
    # Equal content, equal id: a second run's copy is not stored again.
    assert PayloadStore(conn).slim(json.loads(json.dumps(big))) == ref
    assert conn.execute("SELECT count(*) FROM geoscout_payloads").fetchone()[0] == 1


def test_a_missing_payload_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissingPayload, match="not in the state database"):
        PayloadStore(_db(tmp_path / "s.sqlite")).load({"$payload": "0" * 64})
    with pytest.raises(MissingPayload):
        PayloadStore().load({"$payload": "0" * 64})


def test_a_failing_database_keeps_the_run_in_memory(tmp_path: Path) -> None:
    conn = _db(tmp_path / "s.sqlite")
    store = PayloadStore(conn)
    conn.close()  # every write now fails, like a full disk
    big = _big()
    ref = store.slim(big)
    assert store.load(ref) is big
    assert store.load(store.slim(_big(500))) == _big(500)


@pytest.fixture(scope="module")
def lakes(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Assistant, AnswerBundle, Path]]:
    tmp = tmp_path_factory.mktemp("payloads")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=[data_dir],
        cache_dir=tmp / "cache",
        state_db=tmp / "threads.sqlite",
    )
    with Assistant(settings, today=TODAY) as a:
        yield a, a.ask(LAKES), tmp / "threads.sqlite"


def _comparable(b: AnswerBundle) -> dict[str, Any]:
    data = b.model_dump(mode="json")
    for key in ("created", "thread_id", "cost", "llm_calls"):
        data.pop(key)
    for t in data["trace"]:
        t.pop("seconds")
        t.pop("started")
    return data


def test_checkpoints_of_a_multi_step_question_stay_small(
    lakes: tuple[Assistant, AnswerBundle, Path],
) -> None:
    _, b, db = lakes
    assert [s.tool for s in b.plan].count("segment") == 2
    assert len(b.layers["features"]) > 100  # the masks are drawn: there is bulk to keep out
    with sqlite3.connect(str(db)) as conn:
        rows = conn.execute(
            "SELECT length(checkpoint) + length(metadata) FROM checkpoints WHERE thread_id = ?",
            (b.thread_id,),
        ).fetchall()
        (writes,) = conn.execute(
            "SELECT coalesce(sum(length(value)), 0) FROM writes WHERE thread_id = ?",
            (b.thread_id,),
        ).fetchone()
    assert len(rows) >= 10
    assert max(n for (n,) in rows) < ONE_CHECKPOINT_BUDGET
    assert sum(n for (n,) in rows) + writes < CHECKPOINT_BUDGET


def test_the_bundle_is_assembled_from_references_read_back_from_disk(
    lakes: tuple[Assistant, AnswerBundle, Path],
) -> None:
    a, b, db = lakes
    state = a.graph.get_state({"configurable": {"thread_id": b.thread_id}}).values
    assert is_payload_ref(state["layers"])
    assert any(is_payload_ref(e.get("geometry")) for e in state["evidence"])
    masks = [
        r["result"]["outputs"]["mask"]
        for r in state["results"].values()
        if r["result"]["outputs"].get("mask")
    ]
    assert masks and all(is_payload_ref(m) for m in masks)
    # A fresh store (no memory of the run): what another process would see.
    fresh = PayloadStore(sqlite3.connect(str(db)))
    meter = CostMeter(a.settings.cpu_watts, a.settings.grid_gco2_per_kwh)
    meter.start(())
    rebuilt = a._bundle(b.question, state, b.thread_id, 1.0, meter, fresh)
    assert rebuilt.layers == b.layers
    assert rebuilt.evidence == b.evidence
    assert _comparable(rebuilt) == _comparable(b)


def test_the_bundle_is_the_one_a_state_without_references_gives(
    lakes: tuple[Assistant, AnswerBundle, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, _ = lakes
    monkeypatch.setattr(agents.state, "INLINE_MAX_BYTES", 10**12)  # everything inline
    inline = a.ask(LAKES)
    assert json.dumps(_comparable(inline)) == json.dumps(_comparable(b))


def test_a_refusal_loads_no_tool_module_nor_heavy_library(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from agents.service import Assistant\n"
        "from agents.settings import Settings\n"
        f"s = Settings(_env_file=None, cache_dir={str(tmp_path / 'c')!r},"
        f" state_db={str(tmp_path / 't.sqlite')!r})\n"
        "with Assistant(s) as a:\n"
        "    assert a.ask('Find where my neighbour John Smith lives and follow him').refused\n"
        "heavy = ('tools.osm.tool', 'tools.segment', 'tools.ground', 'tools.coverage',\n"
        "         'tools.stac.tool', 'geopandas', 'scipy', 'matplotlib', 'onnxruntime',\n"
        "         'torch', 'transformers', 'rasterio')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == []
