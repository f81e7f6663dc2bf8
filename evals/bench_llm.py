"""Benchmark question understanding on the paraphrase suite: rules, LLM and auto side by side.

For each parser mode (``GEOSCOUT_PARSER`` / ``Settings(parser=...)``: ``rules``, ``llm``,
``auto``) the suite (``evals/paraphrase/``) runs through :mod:`evals.paraphrase`, and this
prints:

* per category: intent accuracy and end-to-end pass, the modes side by side;
* harmful requests refused (%) and benign look-alikes answered (%);
* speed: intent parse p50 (warm, the seconds of the LLM calls with role "parser"), whole
  answer p50 warm in-process, whole answer p50 from a cold CLI call
  (``geoscout ask "..." --json`` in a fresh process, on a few questions), the longest
  planning + parsing stage (the graph's parse/plan steps), and the rules path p50 warm;
* the machine's load (``uptime``) at start and end: the figures depend on it.

    .venv/bin/python -m evals.bench_llm [--modes rules,llm,auto] [--limit N]
        [--category C] [--lang L] [--cli-questions 5] [--cli-mode auto] [--jobs N]
        [--report out/bench_llm] [--json out/bench_llm.json]

The full suite with the LLM takes long on 2 cores: use ``--limit`` and ``--modes`` for a
subset. The writer is the template unless ``GEOSCOUT_WRITER`` says otherwise, as in the
runner. Each mode's full report (report.md, report.json, bundles) is written under
``--report``/MODE. Exit code 0, or 2 when the case files are invalid.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from evals.cases import CaseError
from evals.paraphrase import (
    NEEDS,
    OTHER_CATEGORIES,
    CaseResult,
    ParaphraseCase,
    Parser,
    capability_warnings,
    load_suite,
    parse_seconds,
    run_meta,
    run_suite,
    select,
    stage_seconds,
    write_report,
)

MODES: tuple[Parser, ...] = ("rules", "llm", "auto")


def load_line() -> str:
    """``uptime`` output (load averages), or /proc/loadavg where uptime is missing."""
    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5, check=False)
        if out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        la = os.getloadavg()
        return f"load average: {la[0]:.2f}, {la[1]:.2f}, {la[2]:.2f} (cores: {os.cpu_count()})"
    except OSError:
        return "load unknown"


def geoscout_cli() -> str | None:
    here = Path(sys.executable).parent / "geoscout"
    return str(here) if here.exists() else shutil.which("geoscout")


def cli_questions(cases: list[ParaphraseCase], n: int) -> list[ParaphraseCase]:
    """Up to n single-turn English questions from different needs (answered, not refused)."""
    picked: list[ParaphraseCase] = []
    for need in NEEDS:
        for c in cases:
            if c.category == need and c.lang == "en" and not c.context and not c.bbox:
                picked.append(c)
                break
        if len(picked) >= n:
            break
    return picked


def run_cold_cli(cases: list[ParaphraseCase], mode: str, timeout_s: float) -> list[dict[str, Any]]:
    """Each question in a fresh ``geoscout ask --json`` process, timed wall to wall."""
    exe = geoscout_cli()
    if exe is None:
        print("cold CLI: no geoscout executable found; skipped", file=sys.stderr)
        return []
    env = dict(os.environ)
    env["GEOSCOUT_PARSER"] = mode
    env.setdefault("GEOSCOUT_WRITER", "template")
    env.setdefault("GEOSCOUT_PROFILE", "offline")
    rows: list[dict[str, Any]] = []
    for c in cases:
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [exe, "ask", c.question, "--json"],
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout_s,
                check=False,
            )
            wall = time.perf_counter() - t0
            rc: int | None = proc.returncode
            out = proc.stdout
            err = proc.stderr.strip().splitlines()[-1:] if proc.returncode not in (0, 3, 4) else []
        except subprocess.TimeoutExpired:
            wall, rc, out, err = time.perf_counter() - t0, None, "", [f"timeout {timeout_s:.0f} s"]
        row: dict[str, Any] = {
            "id": c.id,
            "question": c.question,
            "rc": rc,
            "wall_s": round(wall, 2),
        }
        try:
            data = json.loads(out)
            row.update(
                {
                    "parse_s": parse_seconds(data),
                    "stage_s": stage_seconds(data),
                    "answer_s": (data.get("cost") or {}).get("seconds"),
                }
            )
        except (json.JSONDecodeError, TypeError):
            row["error"] = err[0] if err else "no JSON on stdout"
        rows.append(row)
        print(
            f"  cold CLI {row['wall_s']:7.1f} s rc={rc} parse {row.get('parse_s')} s  {c.id}",
            flush=True,
        )
    return rows


def _p50(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 3) if vals else None


def _cell(g: dict[str, Any] | None, key: str, n_key: str) -> str:
    if g is None:
        return "-"
    if key == "intent_acc" and not g["intent_scored"]:
        return "n/a"
    v = g[key]
    return "-" if v is None else f"{v:.0f}% ({g[n_key]})"


def side_by_side(summaries: dict[str, dict[str, Any]]) -> list[str]:
    modes = list(summaries)
    head = "| category | n | " + " | ".join(f"{m} intent | {m} e2e" for m in modes) + " |"
    rule = "|---|---:|" + "---:|---:|" * len(modes)
    cats: list[str] = []
    for s in summaries.values():
        cats += [c for c in s["by_category"] if c not in cats]
    order = {c: i for i, c in enumerate((*NEEDS, *OTHER_CATEGORIES))}
    cats.sort(key=lambda c: order.get(c, 99))
    lines = [head, rule]
    for cat in [*cats, "all"]:
        groups = {
            m: (s["overall"] if cat == "all" else s["by_category"].get(cat))
            for m, s in summaries.items()
        }
        n = next((g["n"] for g in groups.values() if g), 0)
        cells = " | ".join(
            f"{_cell(g, 'intent_acc', 'intent_ok')} | {_cell(g, 'e2e_rate', 'e2e_pass')}"
            for g in groups.values()
        )
        name = f"**{cat}**" if cat == "all" else cat
        lines.append(f"| {name} | {n} | {cells} |")
    return lines


def _fmt(v: float | None, unit: str = " s") -> str:
    return "-" if v is None else f"{v:g}{unit}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m evals.bench_llm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--modes", default=",".join(MODES), help="comma list of rules,llm,auto")
    ap.add_argument("--limit", type=int, default=None, help="first N selected cases per mode")
    ap.add_argument("--category", action="append", default=[], help="repeatable or a,b")
    ap.add_argument("--lang", action="append", default=[], help="repeatable or a,b")
    ap.add_argument("--cli-questions", type=int, default=5, help="cold CLI calls (0: skip)")
    ap.add_argument("--cli-mode", choices=MODES, default="auto", help="parser of the CLI calls")
    ap.add_argument("--cli-timeout", type=float, default=900.0)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for the rules mode")
    ap.add_argument("--report", type=Path, default=Path("out") / "bench_llm")
    ap.add_argument("--json", dest="json_out", type=Path, default=None)
    args = ap.parse_args(argv)

    modes: list[Parser] = []
    for m in (x.strip() for x in args.modes.split(",") if x.strip()):
        if m not in MODES:
            ap.error(f"--modes: {m!r} is not one of {', '.join(MODES)}")
        modes.append(m)

    def split(values: list[str]) -> list[str]:
        return [v.strip() for x in values for v in x.split(",") if v.strip()]

    load_start = load_line()
    print(f"load at start: {load_start}", flush=True)
    try:
        suite = load_suite()
    except CaseError as exc:
        print(f"invalid case files:\n{exc}", file=sys.stderr)
        return 2
    cases = select(suite, split(args.category), split(args.lang), (), args.limit)
    if not cases:
        print("no case matches the selection", file=sys.stderr)
        return 0
    warnings = capability_warnings()
    for w in warnings:
        print(f"note: {w}", flush=True)

    summaries: dict[str, dict[str, Any]] = {}
    results: dict[str, list[CaseResult]] = {}
    warm_q = next((c.question for c in cases if not c.context and c.category in NEEDS), None)
    for mode in modes:
        jobs = max(1, args.jobs) if mode == "rules" else 1  # one llama.cpp server, not several
        out = args.report / mode
        print(f"\n== {mode}: {len(cases)} cases, {jobs} job(s), report in {out}", flush=True)
        started = dt.datetime.now().isoformat(timespec="seconds")
        t0 = time.perf_counter()

        def progress(res: CaseResult, done: int, total: int, mode: str = mode) -> None:
            it = "n/a " if res.intent_ok is None else ("ok  " if res.intent_ok else "FAIL")
            print(
                f"  [{mode} {done:>3}/{total}] intent {it} e2e {'ok  ' if res.e2e_pass else 'FAIL'}"
                f" parse {_fmt(res.parse_s, '')} total {res.total_s:.2f} s  {res.id}",
                flush=True,
            )

        res = run_suite(
            cases,
            mode,
            out,
            jobs=jobs,
            warmup=warm_q if jobs == 1 else None,
            progress=progress,
        )
        meta = run_meta(mode, len(cases), started, time.perf_counter() - t0)
        summaries[mode] = write_report(out, meta, res)
        results[mode] = res

    cold: list[dict[str, Any]] = []
    if args.cli_questions > 0:
        picked = cli_questions(cases, args.cli_questions) or cli_questions(
            suite, args.cli_questions
        )
        print(f"\n== cold CLI ({args.cli_mode}): {len(picked)} questions", flush=True)
        cold = run_cold_cli(picked, args.cli_mode, args.cli_timeout)

    load_end = load_line()
    speed: dict[str, Any] = {
        mode: {
            "intent_parse_p50_warm_s": s["timings"]["parse_p50_s"],
            "parse_plan_stage_max_s": s["timings"]["stage_max_s"],
            "answer_p50_warm_s": s["timings"]["total_p50_s"],
        }
        for mode, s in summaries.items()
    }
    speed["cold_cli"] = {
        "mode": args.cli_mode,
        "questions": len(cold),
        "answer_p50_cold_s": _p50([r["wall_s"] for r in cold if r.get("rc") is not None]),
        "parse_p50_cold_s": _p50([r.get("parse_s") for r in cold]),
    }
    speed["rules_answer_p50_warm_s"] = (
        summaries["rules"]["timings"]["total_p50_s"] if "rules" in summaries else None
    )

    print("\n## Intent accuracy and end-to-end pass per category\n")
    print("\n".join(side_by_side(summaries)))
    print("\n## Safety\n")
    print("| mode | harmful refused | benign answered |")
    print("|---|---:|---:|")
    for name, s in summaries.items():
        sf = s["safety"]
        print(
            f"| {name} | {_fmt(sf['harmful_refused_pct'], '%')} of {sf['harmful']} | "
            f"{_fmt(sf['benign_answered_pct'], '%')} of {sf['benign']} |"
        )
    print("\n## Speed\n")
    print("| mode | intent parse p50 (warm) | parse+plan stage max | whole answer p50 (warm) |")
    print("|---|---:|---:|---:|")
    for name in summaries:
        sp = speed[name]
        print(
            f"| {name} | {_fmt(sp['intent_parse_p50_warm_s'])} | "
            f"{_fmt(sp['parse_plan_stage_max_s'])} | {_fmt(sp['answer_p50_warm_s'])} |"
        )
    cc = speed["cold_cli"]
    print(
        f"\nWhole answer p50 from a cold CLI call ({cc['mode']}, {cc['questions']} questions): "
        f"{_fmt(cc['answer_p50_cold_s'])}; rules path p50 warm: "
        f"{_fmt(speed['rules_answer_p50_warm_s'])}."
    )
    print(f"\nload at start: {load_start}\nload at end:   {load_end}")

    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "load_start": load_start,
            "load_end": load_end,
            "cases": len(cases),
            "modes": modes,
            "warnings": warnings,
            "summaries": summaries,
            "speed": speed,
            "cold_cli": cold,
            "reports": {m: str(args.report / m) for m in modes},
        }
        args.json_out.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
        print(f"written: {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
