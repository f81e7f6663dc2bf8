"""Architecture benchmark: code size, import cost, state-database growth, orchestration time.

Runs against any checkout (``--repo``) with that checkout's code, so a baseline worktree
and the working tree can be compared with the same script::

    .venv/bin/python -m evals.bench_arch                      # this repo
    .venv/bin/python -m evals.bench_arch --repo /tmp/base     # a baseline worktree

It prints:

(a) lines per Python module of the top-level packages, and totals per package;
(b) for a refusal and an OSM-only question: the CPU seconds of a child process that does
    what ``geoscout ask QUESTION --json`` does (import the CLI, answer), the CPU seconds
    spent importing, a ``-X importtime`` summary (top modules by cumulative time) and
    which heavy libraries ended up in ``sys.modules``;
(c) the bytes the state database (LangGraph SQLite checkpoints + conversation turns) holds
    after one multi-step question in a fresh state folder, and its number of checkpoints;
(d) that question's wall time, and the part outside tool calls (total minus the union of
    the trace's step intervals).

Every child runs with the rule parser, rule planner and template writer (no LLM: its
server is another process and its timing is not what this measures), a private cache
folder warmed by one unmeasured run per question, and a fresh state database.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

PACKAGES = ("agents", "tools", "models", "render", "geoscout", "evals")
REFUSAL = "Find where my neighbour John Smith lives and follow him"
OSM_ONLY = "How many kilometres of road are there in central Aguascalientes, Mexico?"
# README: "geocode, 2 x stac_search, 2 x segment, change figure" (the multi-step question).
LAKES = "How did the lakes at 47.02 N, 99.15 W change between 2009 and 2020?"
HEAVY = (
    "scipy",
    "geopandas",
    "onnxruntime",
    "torch",
    "transformers",
    "matplotlib",
    "langchain_core.tracers",
    "rasterio",
    "pandas",
    "shapely",
    "pyproj",
    "pyogrio",
    "sklearn",
    "PIL",
)

# The child: time the CLI import, answer with --json, record CPU, wall and sys.modules.
_CHILD = textwrap.dedent(
    """
    import json, os, resource, sys, time
    w0 = time.perf_counter(); c0 = time.process_time()
    from geoscout.cli import app
    c_import = time.process_time() - c0
    code = app(["ask", os.environ["BENCH_Q"], "--json"], standalone_mode=False)
    wall = time.perf_counter() - w0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    heavy = json.loads(os.environ["BENCH_HEAVY"])
    rec = {
        "exit": code,
        "cpu_s": time.process_time() - c0,
        "cpu_import_cli_s": c_import,
        "wall_s": wall,
        "maxrss_mb": ru.ru_maxrss / 1024,
        "modules": len(sys.modules),
        "heavy": {m: m in sys.modules for m in heavy},
    }
    with open(os.environ["BENCH_REC"], "w") as f:
        json.dump(rec, f)
    """
)


# The same question asked again in one process (the app, the evals): imports and caches are
# warm, so what is left outside the tools is the graph's own cost. "tail": from the last
# step's end to the bundle (merge, write, guards, final state, bundle).
_WARM_CHILD = textwrap.dedent(
    """
    import json, os, time
    from agents.service import Assistant
    from agents.settings import Settings
    out = []
    with Assistant(Settings()) as a:
        for i in range(int(os.environ["BENCH_N"]) + 1):
            t0 = time.perf_counter(); last_step = t0
            for kind, item in a.stream(os.environ["BENCH_Q"]):
                if kind == "update" and "run_step" in item:
                    last_step = time.perf_counter()
            b = item
            tail = time.perf_counter() - last_step
            if i:
                out.append({"seconds": b.cost.seconds, "tail": tail,
                            "trace": [t.model_dump() for t in b.trace]})
    with open(os.environ["BENCH_REC"], "w") as f:
        json.dump(out, f)
    """
)


def warm_runs(repo: Path, cache: Path, question: str, n: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = _env(repo, cache, Path(tmp) / "threads.sqlite")
        env.update(BENCH_Q=question, BENCH_REC=str(Path(tmp) / "rec.json"), BENCH_N=str(n))
        subprocess.run([_python(repo), "-c", _WARM_CHILD], cwd=repo, env=env, check=True)
        runs: list[dict[str, Any]] = json.loads((Path(tmp) / "rec.json").read_text())
        return runs


def line_counts(repo: Path) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for pkg in PACKAGES:
        root = repo / pkg
        if not root.is_dir():
            continue
        rows = []
        for path in sorted(root.rglob("*.py")):
            with path.open("rb") as f:
                rows.append((str(path.relative_to(repo)), sum(1 for _ in f)))
        out[pkg] = sorted(rows, key=lambda r: -r[1])
    return out


def _python(repo: Path) -> str:
    own = repo / ".venv" / "bin" / "python"
    if own.exists():
        return str(own)
    return str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python")


def _env(repo: Path, cache: Path, state: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "GEOSCOUT_LLM_BASE_URL"):
        env.pop(var, None)
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    env.update(
        PYTHONPATH=str(repo),
        GEOSCOUT_PARSER="rules",
        GEOSCOUT_PLANNER="rules",
        GEOSCOUT_WRITER="template",
        GEOSCOUT_LLM_IDLE_S="0",
        GEOSCOUT_CACHE_DIR=str(cache),
        GEOSCOUT_STATE_DB=str(state),
        BENCH_HEAVY=json.dumps(HEAVY),
    )
    env.setdefault("GEOSCOUT_DATA_DIR", str(data))
    return env


_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def run_question(repo: Path, cache: Path, question: str, *, warm: bool = True) -> dict[str, Any]:
    """One measured child run in a fresh state folder (after one warm-up run)."""
    py = _python(repo)
    if warm:
        with tempfile.TemporaryDirectory() as tmp:
            env = _env(repo, cache, Path(tmp) / "threads.sqlite")
            env.update(BENCH_Q=question, BENCH_REC=str(Path(tmp) / "rec.json"))
            subprocess.run([py, "-c", _CHILD], cwd=repo, env=env, capture_output=True, check=False)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state" / "threads.sqlite"
        env = _env(repo, cache, state)
        env.update(BENCH_Q=question, BENCH_REC=str(Path(tmp) / "rec.json"))
        proc = subprocess.run(
            [py, "-X", "importtime", "-c", _CHILD],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        rec: dict[str, Any] = json.loads((Path(tmp) / "rec.json").read_text())
        rec["bundle"] = json.loads(proc.stdout) if proc.stdout.strip() else None
        imports = []
        for line in proc.stderr.splitlines():
            m = _IMPORTTIME.match(line)
            if m:
                imports.append((m.group(4), int(m.group(1)), int(m.group(2)), len(m.group(3))))
        rec["import_total_s"] = sum(s for _, s, _, _ in imports) / 1e6
        rec["import_top"] = sorted(imports, key=lambda r: -r[2])[:10]
        rec["state"] = state_db_stats(state)
        other = [ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")]
        rec["stderr_tail"] = other[-5:]
        return rec


def state_db_stats(path: Path) -> dict[str, Any]:
    files = [p for p in path.parent.glob(path.name + "*") if p.is_file()]
    side = [p for p in path.parent.rglob("*") if p.is_file() and p not in files]
    out: dict[str, Any] = {
        "file_bytes": sum(p.stat().st_size for p in files),
        "other_files_bytes": sum(p.stat().st_size for p in side),
        "tables": {},
    }
    if not path.exists():
        return out
    conn = sqlite3.connect(str(path))
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for name in names:
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({name})")]
            blob_cols = [
                c for c in cols if c in ("checkpoint", "metadata", "value", "bundle", "data")
            ]
            size = " + ".join(f"coalesce(length({c}), 0)" for c in blob_cols) or "0"
            n, b = conn.execute(f"SELECT count(*), coalesce(sum({size}), 0) FROM {name}").fetchone()
            out["tables"][name] = {"rows": n, "payload_bytes": b}
    finally:
        conn.close()
    out["checkpoints"] = out["tables"].get("checkpoints", {}).get("rows", 0)
    return out


def _busy(trace: list[dict[str, Any]]) -> float:
    """Union of the steps' intervals (parallel steps are not counted twice)."""
    spans = sorted(
        (t["started"], t["started"] + t["seconds"]) for t in trace if t.get("started") is not None
    )
    busy, end = 0.0, float("-inf")
    for a, b in spans:
        if a > end:
            busy, end = busy + b - a, b
        elif b > end:
            busy, end = busy + b - end, b
    return busy


def _print_run(label: str, rec: dict[str, Any]) -> None:
    b = rec.get("bundle") or {}
    print(f"\n[{label}] exit={rec['exit'] or 0} refused={b.get('refused')}")
    print(
        f"  process CPU {rec['cpu_s']:.2f} s (CLI import {rec['cpu_import_cli_s']:.2f} s), "
        f"wall {rec['wall_s']:.2f} s, max RSS {rec['maxrss_mb']:.0f} MB, "
        f"{rec['modules']} modules"
    )
    print(f"  -X importtime: {rec['import_total_s']:.2f} s in imports (self times summed)")
    for name, _self, cum, depth in rec["import_top"]:
        print(f"    {cum / 1e6:6.3f} s  {'  ' * (depth // 2)}{name}")
    loaded = [m for m, v in rec["heavy"].items() if v]
    absent = [m for m, v in rec["heavy"].items() if not v]
    print(f"  heavy imported: {', '.join(loaded) or '-'}")
    print(f"  heavy absent:   {', '.join(absent) or '-'}")
    if rec["exit"] not in (None, 0, 3, 4):
        print("  stderr: " + " | ".join(rec["stderr_tail"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--cache", type=Path, help="cache folder (default: a temporary one)")
    parser.add_argument("--question", default=LAKES, help="the multi-step question for (c), (d)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs for (d)")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()

    print(f"repo: {repo}  python: {_python(repo)}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    print("\n(a) lines per module")
    totals = {}
    for pkg, rows in line_counts(repo).items():
        totals[pkg] = sum(n for _, n in rows)
        print(f"  {pkg}: {totals[pkg]} lines in {len(rows)} modules")
        for name, n in rows:
            print(f"    {n:6d}  {name}")
    print("  totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    print(f"  all: {sum(totals.values())}")

    with tempfile.TemporaryDirectory(prefix="bench-arch-cache-") as tmp_cache:
        cache = args.cache or Path(tmp_cache)
        print("\n(b) import cost of `geoscout ask QUESTION --json`")
        for label, q in (("refusal", REFUSAL), ("osm-only", OSM_ONLY)):
            print(f"  question: {q}")
            _print_run(label, run_question(repo, cache, q))

        print(f"\n(c) state database after one question: {args.question}")
        rec = run_question(repo, cache, args.question)
        _print_run("multi-step", rec)
        runs = [rec] + [
            run_question(repo, cache, args.question, warm=False)
            for _ in range(max(args.repeat, 1) - 1)
        ]
        st = rec["state"]
        print(
            f"  state file(s): {st['file_bytes']:,} bytes; other files in the state folder: "
            f"{st['other_files_bytes']:,} bytes; checkpoints: {st.get('checkpoints', 0)}"
        )
        for name, t in st["tables"].items():
            print(f"    table {name}: {t['rows']} rows, {t['payload_bytes']:,} payload bytes")

        print(f"\n(d) wall time, {len(runs)} runs (fresh process and state database each)")
        samples: list[tuple[float, ...]] = []
        for r in runs:
            b = r.get("bundle") or {}
            trace = b.get("trace", [])
            cost_s = (b.get("cost") or {}).get("seconds", 0.0)
            busy = _busy(trace)
            steps = sum(t.get("seconds", 0.0) for t in trace)
            samples.append((r["wall_s"], cost_s, steps, busy, cost_s - busy, r["cpu_s"]))
            print(
                f"  process wall {r['wall_s']:.2f} s (CPU {r['cpu_s']:.2f} s); answer "
                f"(cost.seconds) {cost_s:.2f} s; tool steps {steps:.2f} s summed, {busy:.2f} s "
                f"as a union; outside tools {cost_s - busy:.2f} s"
            )
        med = [statistics.median(col) for col in zip(*samples, strict=True)]
        print(
            f"  median: process wall {med[0]:.2f} s, CPU {med[5]:.2f} s, answer {med[1]:.2f} s, "
            f"tools (union) {med[3]:.2f} s, outside tools {med[4]:.2f} s"
            + (f" ({med[4] / med[1]:.0%} of the answer)" if med[1] else "")
        )
        b = rec.get("bundle") or {}
        nodes = {k: v for k, v in (b.get("cost") or {}).get("steps", {}).items() if ":" not in k}
        cost_s = (b.get("cost") or {}).get("seconds", 0.0)
        rest = cost_s - _busy(b.get("trace", [])) - sum(nodes.values())
        print(
            "  outside tools, first run: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in nodes.items())
            + f"; graph, checkpoints and bundle {rest:.2f} s"
        )
        for t in b.get("trace", []):
            print(f"    {t['step']:4s} {t['tool']:12s} {t['status']:11s} {t['seconds']:.2f} s")
        print(f"  bundle JSON: {len(json.dumps(b)):,} bytes")

        warm = warm_runs(repo, cache, args.question, max(args.repeat, 1))
        print(f"  warm, in one process ({len(warm)} runs after a first one):")
        for w in warm:
            busy = _busy(w["trace"])
            print(
                f"    answer {w['seconds']:.2f} s; tools (union) {busy:.2f} s; outside tools "
                f"{w['seconds'] - busy:.2f} s; after the last step {w['tail']:.3f} s"
            )
        tails = statistics.median(w["tail"] for w in warm)
        outside = statistics.median(w["seconds"] - _busy(w["trace"]) for w in warm)
        print(f"    median: outside tools {outside:.3f} s, after the last step {tails:.3f} s")
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
