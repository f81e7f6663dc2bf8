"""Benchmark: the foundation's eight questions, end to end, with per-step timings.

Prints per-question and per-step wall seconds, peak Python memory (tracemalloc, includes
numpy buffers) per question, peak process RSS, and the share of wall time spent outside
tool calls (orchestration overhead: guards, planning, merging, writing, graph bookkeeping).

    .venv/bin/python -m evals.benchmark [--repeat N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import tracemalloc
from typing import Any

QUESTIONS = [
    "How much open water is there around Accomac, Virginia?",
    "How cloudy is the Landsat image near Molino, Florida?",
    "How many kilometres of road are there in central Aguascalientes, Mexico?",
    "How many buildings are in the drone image of Kampala, and what share of the imaged area do they cover?",
    "Show me the buildings in the image of Joplin, Missouri taken after the May 2011 tornado.",
    "Count the ships in the Rotterdam port image.",
    "Where does my neighbour drive every day? Track him on satellite images.",
    "How did the lakes at 47.02 N, 99.15 W change between 2009 and 2020?",
]


def _tool_busy_seconds(trace: list[Any]) -> float:
    """Union of tool-call intervals (parallel steps are not double counted)."""
    spans = sorted((t.started, t.started + t.seconds) for t in trace if t.started is not None)
    busy, end = 0.0, float("-inf")
    for a, b in spans:
        if a > end:
            busy += b - a
            end = b
        elif b > end:
            busy += b - end
            end = b
    return busy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args(argv)

    from agents.service import Assistant
    from agents.settings import Settings

    t_start = time.perf_counter()
    assistant = Assistant(Settings())
    startup = time.perf_counter() - t_start
    rows: list[dict[str, Any]] = []
    try:
        for rep in range(args.repeat):
            for q in QUESTIONS:
                tracemalloc.start()
                t0 = time.perf_counter()
                bundle = assistant.ask(q)
                wall = time.perf_counter() - t0
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                busy = _tool_busy_seconds(bundle.trace)
                rows.append(
                    {
                        "repeat": rep,
                        "question": q,
                        "wall_s": round(wall, 3),
                        "tool_s": round(busy, 3),
                        "overhead_share": round(max(0.0, wall - busy) / wall, 3) if wall else 0.0,
                        "peak_py_mb": round(peak / 2**20, 1),
                        "steps": {
                            f"{t.step}:{t.tool}": (t.status, t.seconds) for t in bundle.trace
                        },
                        "nodes": bundle.cost.steps,
                        "refused": bundle.refused,
                        "energy_wh": bundle.cost.energy_wh,
                    }
                )
    finally:
        assistant.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"startup (settings, catalogue, graph): {startup:.2f} s")
    print(f"{'#':>2} {'wall s':>7} {'tools s':>7} {'overhead':>8} {'peak MB':>8}  question / steps")
    for i, r in enumerate(rows, 1):
        print(
            f"{i:>2} {r['wall_s']:>7.2f} {r['tool_s']:>7.2f} {r['overhead_share']:>8.1%} {r['peak_py_mb']:>8.1f}  {r['question'][:70]}"
        )
        for name, (status, secs) in r["steps"].items():
            print(f"{'':>36}  {name:<18} {status:<11} {secs:6.2f} s")
    walls = [r["wall_s"] for r in rows]
    total = sum(walls)
    busy = sum(r["tool_s"] for r in rows)
    print(
        f"total wall {total:.2f} s; median per question {statistics.median(walls):.2f} s; "
        f"tools {busy:.2f} s; orchestration overhead {(total - busy) / total:.1%} of wall time"
    )
    print(f"peak process RSS {rss_mb:.0f} MB")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump({"startup_s": startup, "rows": rows, "peak_rss_mb": rss_mb}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
