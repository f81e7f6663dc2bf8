"""Compare two eval reports case by case, so a change can be judged.

    geoscout eval compare out/eval-before out/eval-after

A case *regressed* when its pass rate fell, *improved* when it rose; cases only in one
report are listed as added or removed. Per-check rates and cost totals are compared too.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from evals.report import Report, pct


class CaseChange(BaseModel):
    case_id: str
    before: float | None  # pass rate, None when the case is new
    after: float | None
    checks_lost: list[str] = Field(default_factory=list)
    checks_gained: list[str] = Field(default_factory=list)
    seconds_before: float | None = None
    seconds_after: float | None = None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        if self.after < self.before:
            return "regressed"
        if self.after > self.before:
            return "improved"
        return "same"


class Comparison(BaseModel):
    a: str
    b: str
    changes: list[CaseChange]
    per_check: list[tuple[str, float | None, float | None]]
    pass_at_1: tuple[float, float]
    pass_hat_k: tuple[float, float]
    seconds: tuple[float, float]
    energy_wh: tuple[float, float]

    @property
    def regressions(self) -> list[CaseChange]:
        return [c for c in self.changes if c.kind == "regressed"]


def _check_state(report: Report) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for row in report.cases:
        states: dict[str, bool] = {}
        for t in row.trials:
            for ch in t.checks:
                states[ch.name] = states.get(ch.name, True) and ch.passed
        out[row.case_id] = states
    return out


def compare(a: Report, b: Report, name_a: str = "A", name_b: str = "B") -> Comparison:
    rows_a = {r.case_id: r for r in a.cases}
    rows_b = {r.case_id: r for r in b.cases}
    checks_a, checks_b = _check_state(a), _check_state(b)
    changes: list[CaseChange] = []
    for cid in list(rows_a) + [c for c in rows_b if c not in rows_a]:
        ra, rb = rows_a.get(cid), rows_b.get(cid)
        ca, cb = checks_a.get(cid, {}), checks_b.get(cid, {})
        changes.append(
            CaseChange(
                case_id=cid,
                before=ra.pass_rate if ra else None,
                after=rb.pass_rate if rb else None,
                checks_lost=sorted(n for n, ok in ca.items() if ok and cb.get(n) is False),
                checks_gained=sorted(n for n, ok in ca.items() if not ok and cb.get(n) is True),
                seconds_before=round(ra.mean_seconds, 2) if ra else None,
                seconds_after=round(rb.mean_seconds, 2) if rb else None,
            )
        )
    rates_a = {r.name: r.rate for r in a.summary.per_check}
    rates_b = {r.name: r.rate for r in b.summary.per_check}
    names = list(rates_a) + [n for n in rates_b if n not in rates_a]
    return Comparison(
        a=name_a,
        b=name_b,
        changes=changes,
        per_check=[(n, rates_a.get(n), rates_b.get(n)) for n in names],
        pass_at_1=(a.summary.pass_at_1, b.summary.pass_at_1),
        pass_hat_k=(a.summary.pass_hat_k, b.summary.pass_hat_k),
        seconds=(a.summary.total_seconds, b.summary.total_seconds),
        energy_wh=(a.summary.energy_wh, b.summary.energy_wh),
    )


def _r(x: float | None) -> str:
    return "—" if x is None else pct(x)


def comparison_markdown(c: Comparison, a: Report, b: Report) -> str:
    lines = [
        f"### Eval comparison: {c.a} → {c.b}",
        "",
        f"- {c.a}: {a.config.started} planner {a.config.planner_requested}, git {a.config.git}",
        f"- {c.b}: {b.config.started} planner {b.config.planner_requested}, git {b.config.git}",
        "",
        f"pass@1 {pct(c.pass_at_1[0])} → {pct(c.pass_at_1[1])}; pass^k {pct(c.pass_hat_k[0])} "
        f"→ {pct(c.pass_hat_k[1])}; question time {c.seconds[0]:.1f} s → {c.seconds[1]:.1f} s; "
        f"energy {c.energy_wh[0]:.3f} → {c.energy_wh[1]:.3f} Wh",
        "",
        "| check | before | after |",
        "|---|---:|---:|",
    ]
    lines += [f"| {n} | {_r(x)} | {_r(y)} |" for n, x, y in c.per_check]
    lines += [
        "",
        "| case | change | before | after | checks lost | checks gained | s before → after |",
    ]
    lines.append("|---|---|---:|---:|---|---|---|")
    order = {"regressed": 0, "removed": 1, "added": 2, "improved": 3, "same": 4}
    for ch in sorted(c.changes, key=lambda x: (order[x.kind], x.case_id)):
        secs = f"{ch.seconds_before if ch.seconds_before is not None else '—'} → " + (
            f"{ch.seconds_after}" if ch.seconds_after is not None else "—"
        )
        lines.append(
            f"| {ch.case_id} | {ch.kind} | {_r(ch.before)} | {_r(ch.after)} | "
            f"{', '.join(ch.checks_lost)} | {', '.join(ch.checks_gained)} | {secs} |"
        )
    counts = {k: sum(1 for x in c.changes if x.kind == k) for k in order}
    lines += ["", ", ".join(f"{n} {k}" for k, n in counts.items() if n)]
    return "\n".join(lines) + "\n"
