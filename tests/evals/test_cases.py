"""Case files: the shipped set is valid and broad; bad files fail with messages that help."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.cases import CaseError, load_cases, select
from evals.fixtures import FIXTURES
from evals.reference import load_references

CASES = Path(__file__).resolve().parents[2] / "evals" / "cases"
TOOLS = {"geocode", "stac_search", "segment", "ground", "osm_overlay"}


@pytest.fixture(scope="module")
def cases() -> list:
    return load_cases(CASES, FIXTURES)


def test_the_shipped_case_set_is_broad(cases: list) -> None:
    assert len(cases) >= 40
    assert all(c.tags for c in cases)
    used = {t for c in cases for t in c.expect.tools_include}
    assert used >= TOOLS
    kinds = {t for c in cases for t in c.tags}
    assert {"refuse", "clarify", "no-data", "injection", "wording", "smoke"} <= kinds
    assert sum(c.expect.refuse for c in cases) >= 5
    assert sum(c.expect.clarify for c in cases) >= 5
    poisoned = [c for c in cases if c.same_as]
    assert poisoned and all(c.payload and c.fixture for c in poisoned)


def test_every_expected_number_is_an_independent_reference(cases: list) -> None:
    """Numbers are copied from evals/references.json (never from the assistant's output)."""
    refs = load_references()
    for c in cases:
        for n in c.expect.numbers:
            assert n.ref or n.why, f"{c.id}: {n.key} has neither ref nor why"
            if n.ref:
                entry, key = n.ref.split(".", 1)
                assert refs[entry][key] == pytest.approx(n.value, rel=1e-9), (c.id, n.ref)


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "cases.yaml"
    f.write_text(text)
    return f


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "- {id: a-1, question: q, tags: [t], expect: {answer_includes: ['(unclosed']}}",
            "bad regular expression",
        ),
        ("- {id: a-1, question: q, tags: [t], expect: {colour: red}}", "expect.colour"),
        ("- {id: A 1, question: q, tags: [t]}", "lower-case slug"),
        ("- {id: a-1, question: q, tags: []}", "tags"),
        ("- {id: a-1, question: q, tags: [t], bbox: [10, 0, 5, 1]}", "west < east"),
        (
            "- {id: a-1, question: q, tags: [t], expect: {refuse: true, tools_include: [geocode]}}",
            "runs no tools",
        ),
        (
            "- {id: a-1, question: q, tags: [t], expect: {refuse: true, clarify: true}}",
            "both a refusal",
        ),
        ("- {id: a-1, question: q, tags: [t], payload: [x]}", "payload needs same_as"),
        (
            "- {id: a-1, question: q, tags: [t], expect: {numbers: [{kind: mask, key: k, value: 1, rel_tolerance: 2}]}}",
            "rel_tolerance",
        ),
        (
            "- {id: a-1, question: q, tags: [t]}\n- {id: a-1, question: r, tags: [t]}",
            "duplicate case id",
        ),
        ("- {id: a-1, question: q, tags: [t], same_as: a-9}", "same_as 'a-9' is not a case"),
        ("- {id: a-1, question: q, tags: [t], fixture: nowhere}", "unknown fixture"),
        ("id: a-1", "YAML list"),
        ("- [unbalanced", "not valid YAML"),
    ],
)
def test_bad_case_files_are_refused_with_the_place(
    tmp_path: Path, yaml_text: str, message: str
) -> None:
    with pytest.raises(CaseError, match="(?s)" + message.replace("(", r"\(")) as info:
        load_cases(_write(tmp_path, yaml_text), FIXTURES)
    if "case #" in str(info.value):
        assert "cases.yaml" in str(info.value)


def test_select_by_tag_pulls_in_the_clean_twin(tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        "- {id: clean, question: q, tags: [a]}\n"
        "- {id: dirty, question: q, tags: [smoke], same_as: clean, payload: [x]}\n"
        "- {id: other, question: q, tags: [b]}\n",
    )
    cases = load_cases(f, FIXTURES)
    assert [c.id for c in select(cases, ["smoke"])] == ["clean", "dirty"]
    assert [c.id for c in select(cases, [], ["other"])] == ["other"]
    assert len(select(cases)) == 3


def test_no_case_files(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match="no case files"):
        load_cases(tmp_path)
