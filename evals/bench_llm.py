"""Benchmark: the LLM planner and writer against the rule planner on the foundation's questions.

For each question: whether the LLM plan was valid without repair, after repair, or fell
back to the rules; whether its tools match the expected tools; seconds per plan and per
answer; tokens; whether the LLM answer passed the output guard or fell back. Also the
model's load time (assembly from the packages + server start) and the rule planner's time.

    .venv/bin/python -m evals.bench_llm [--questions N] [--json out.json]

Uses the configured LLM (OPENAI_BASE_URL) or the embedded one. GEOSCOUT_DATA_DIR as usual.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from evals.benchmark import QUESTIONS

# Tools each question needs (from the question list), in plan order, as a multiset.
EXPECTED_TOOLS: list[list[str]] = [
    ["geocode", "stac_search", "segment"],
    ["geocode", "stac_search", "segment"],
    ["geocode", "osm_overlay"],
    ["geocode", "stac_search", "osm_overlay"],
    ["geocode", "stac_search", "osm_overlay"],
    ["geocode", "stac_search", "ground"],
    [],
    ["geocode", "stac_search", "segment", "stac_search", "segment"],
]


def _outcome(note: str) -> str:
    if "without repair" in note:
        return "valid"
    if "after one repair" in note:
        return "repaired"
    if note.startswith("rules: fallback"):
        return "fallback"
    return "rules"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args(argv)

    from agents.service import Assistant
    from agents.settings import Settings

    settings = Settings(planner="llm", writer="llm")
    rows: list[dict[str, Any]] = []
    with (
        Assistant(settings) as assistant,
        Assistant(settings.model_copy(update={"planner": "rules", "writer": "template"})) as rules,
    ):
        t0 = time.perf_counter()
        try:
            assistant.services.chat_model("planner")
        except Exception as exc:  # the report says why instead of a traceback
            print(f"no LLM: {exc}", file=sys.stderr)
            return 2
        load = time.perf_counter() - t0
        print(f"model ready in {load:.1f} s (assembly + server start; "
              f"server {assistant.services.llm_startup_seconds or 0:.1f} s)")  # fmt: skip
        for q, expected in list(zip(QUESTIONS, EXPECTED_TOOLS, strict=True))[: args.questions]:
            rb = rules.ask(q)
            b = assistant.ask(q)
            plan_calls = [c for c in b.llm_calls if c.role == "planner"]
            write_calls = [c for c in b.llm_calls if c.role == "writer"]
            tools = [s.tool for s in b.plan]
            row = {
                "question": q,
                "refused": b.refused,
                "planner": _outcome(b.planner_note) if not b.refused else "refused",
                "planner_note": b.planner_note,
                "tools": tools,
                "tools_match": sorted(tools) == sorted(expected),
                "rule_tools_match": sorted(s.tool for s in rb.plan) == sorted(expected),
                "plan_s": round(sum(c.seconds for c in plan_calls), 2),
                "rule_plan_s": round(rb.cost.steps.get("plan", 0.0), 4),
                "write_s": round(sum(c.seconds for c in write_calls), 2),
                "writer": b.answer.writer,
                "writer_note": b.writer_note,
                "prompt_tokens": b.cost.llm.prompt_tokens,
                "completion_tokens": b.cost.llm.completion_tokens,
                "total_s": b.cost.seconds,
                "rules_total_s": rb.cost.seconds,
                "energy_wh": b.cost.energy_wh,
                "rules_energy_wh": rb.cost.energy_wh,
                "answer": b.answer.text,
                "guards": {
                    g.name: g.detail
                    for g in b.guardrails
                    if g.name.startswith(("plan.llm", "plan.pruned", "writer."))
                },
                "drafts": [c.model_dump() for c in b.llm_calls if c.role == "writer"],
            }
            rows.append(row)
            print(
                f"{row['planner']:>8} tools_ok={row['tools_match']!s:5} plan {row['plan_s']:5.1f}s "
                f"write {row['write_s']:5.1f}s tok {row['prompt_tokens']}+{row['completion_tokens']} "
                f"writer={row['writer']:<10} | {q[:60]}",
                flush=True,
            )
    asked = [r for r in rows if r["planner"] != "refused"]
    counts = {k: sum(r["planner"] == k for r in asked) for k in ("valid", "repaired", "fallback")}
    summary = {
        "model_ready_s": round(load, 1),
        "questions": len(rows),
        "plans": counts,
        "llm_tools_match": sum(r["tools_match"] for r in rows),
        "rule_tools_match": sum(r["rule_tools_match"] for r in rows),
        "median_plan_s": statistics.median([r["plan_s"] for r in asked]) if asked else 0,
        "median_write_s": statistics.median([r["write_s"] for r in asked if r["write_s"]] or [0]),
        "median_rule_plan_s": statistics.median([r["rule_plan_s"] for r in asked] or [0]),
        "llm_answers_used": sum(r["writer"] not in ("template", "guard") for r in asked),
        "mean_tokens": round(
            statistics.mean([r["prompt_tokens"] + r["completion_tokens"] for r in asked] or [0])
        ),
    }
    print(json.dumps(summary, indent=1))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump({"summary": summary, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
