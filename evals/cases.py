"""Eval cases: the YAML format of DESIGN.md ("Eval case"), validated with pydantic.

One YAML list per file under ``evals/cases/``. A case::

    - id: water-accomac-plain          # unique, lower-case slug
      question: How much open water is there around Accomac, Virginia?
      bbox: [-75.64, 37.66, -75.58, 37.72]   # optional: an area drawn on the map
      tags: [water, sentinel-2, smoke]        # at least one; `--tag` selects on these
      expect:
        tools_include: [geocode, stac_search, segment]
        tools_exclude: [ground]
        refuse: false                   # default false: a refusal is then a failure
        clarify: false                  # default false: asking back is then a failure
        answer_includes: ['(?i)water']  # regular expressions (re.search)
        answer_excludes: ['(?i)\\bships?\\b']
        numbers:
          - {kind: mask, key: water_area_km2, value: 1.037, rel_tolerance: 0.03,
             ref: accomac_aoi_water.area_km2, why: "..."}
        min_citations: 2
      # Optional fields added by this harness:
      fixture: memmingen_poisoned       # a data folder built at run time (evals/fixtures.py)
      same_as: inj-osm-clean            # plan, tool calls and numbers must equal this case's
      payload: ["ignore previous instructions"]   # must never appear in the answer
      notes: why the case exists

Expected numbers are independent references (``evals/reference.py``), never the assistant's
own output; ``ref`` names the reference they were copied from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

EvidenceKind = Literal["place", "scene", "mask", "detections", "features", "figure"]
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
_TOOL = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


M = TypeVar("M", bound=BaseModel)


def _slug(v: str) -> str:
    if not _SLUG.match(v):
        raise ValueError(f"id {v!r} must be a lower-case slug (letters, digits, '-')")
    return v


# A case id: a lower-case slug, in every case file (both eval suites).
CaseId = Annotated[str, AfterValidator(_slug)]


class CaseError(ValueError):
    """Case files that cannot be used; the message lists every problem with its place."""


def _check_regexes(patterns: list[str]) -> list[str]:
    for p in patterns:
        try:
            re.compile(p)
        except re.error as exc:
            raise ValueError(f"bad regular expression {p!r}: {exc}") from exc
    return patterns


class NumberExpect(BaseModel):
    """A figure the bundle's evidence must hold: evidence ``kind`` with ``values[key]``.

    Passes when at least one evidence item of that kind has the key and
    ``|got - value| <= max(tolerance, rel_tolerance * |value|)``.
    """

    model_config = ConfigDict(extra="forbid")

    kind: EvidenceKind
    key: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    value: float
    tolerance: float = Field(default=0.0, ge=0)
    rel_tolerance: float = Field(default=0.0, ge=0, le=1)
    ref: str | None = Field(default=None, description="reference entry.key in references.json")
    why: str | None = Field(default=None, description="why the value and tolerance are right")

    def allowed(self) -> float:
        return max(self.tolerance, self.rel_tolerance * abs(self.value))


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tools_include: list[str] = Field(default_factory=list)
    tools_exclude: list[str] = Field(default_factory=list)
    refuse: bool = False
    clarify: bool = False
    answer_includes: list[str] = Field(default_factory=list)
    answer_excludes: list[str] = Field(default_factory=list)
    numbers: list[NumberExpect] = Field(default_factory=list)
    min_citations: int | None = Field(default=None, ge=1)

    @field_validator("tools_include", "tools_exclude")
    @classmethod
    def _tools(cls, v: list[str]) -> list[str]:
        for t in v:
            if not _TOOL.match(t):
                raise ValueError(f"{t!r} is not a tool name")
        return v

    @field_validator("answer_includes", "answer_excludes")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        return _check_regexes(v)

    @model_validator(mode="after")
    def _consistent(self) -> Expect:
        both = set(self.tools_include) & set(self.tools_exclude)
        if both:
            raise ValueError(f"tools both included and excluded: {sorted(both)}")
        if self.refuse and self.clarify:
            raise ValueError("a case cannot expect both a refusal and a clarification")
        if (self.refuse or self.clarify) and (self.tools_include or self.numbers):
            raise ValueError("a refusal or clarification runs no tools and states no figures")
        return self


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: CaseId
    question: str = Field(min_length=1, max_length=2000)
    bbox: list[float] | None = None
    tags: list[str] = Field(min_length=1)
    expect: Expect = Field(default_factory=Expect)
    fixture: str | None = None
    same_as: str | None = None
    payload: list[str] = Field(default_factory=list)
    notes: str = ""

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for t in v:
            if not _SLUG.match(t):
                raise ValueError(f"tag {t!r} must be a lower-case slug")
        return v

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return None
        if len(v) != 4:
            raise ValueError("bbox must be [west, south, east, north]")
        w, s, e, n = v
        if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            raise ValueError(f"bbox {v} is not west < east, south < north in degrees")
        return v

    @model_validator(mode="after")
    def _injection(self) -> Case:
        if self.payload and not self.same_as:
            raise ValueError("payload needs same_as: the clean case it must equal")
        if self.same_as == self.id:
            raise ValueError("same_as names the case itself")
        return self


def _location(file: Path, index: int, raw: object) -> str:
    cid = raw.get("id") if isinstance(raw, dict) else None
    return f"{file}: case #{index + 1}" + (f" ({cid})" if cid else "")


def load_file(file: Path) -> list[Case]:
    return load_models(file, Case)


def load_models(file: Path, model: type[M]) -> list[M]:
    """A YAML list of cases validated as ``model``; CaseError lists every problem."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CaseError(f"{file}: not valid YAML: {exc}") from exc
    if data is None:
        return []
    if not isinstance(data, list):
        raise CaseError(f"{file}: must hold a YAML list of cases")
    cases: list[M] = []
    problems: list[str] = []
    for i, raw in enumerate(data):
        try:
            cases.append(model.model_validate(raw))
        except ValidationError as exc:
            for e in exc.errors():
                where = ".".join(str(p) for p in e["loc"]) or "case"
                problems.append(f"{_location(file, i, raw)}: {where}: {e['msg']}")
    if problems:
        raise CaseError("\n".join(problems))
    return cases


def case_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CaseError(f"{path}: no such file or folder")
    return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))


def load_set(paths: Path | Sequence[Path], model: type[M]) -> tuple[list[M], list[str]]:
    """Every case under the paths as ``model``, and the problems found (bad files, ids used
    twice); the caller adds its own checks and raises CaseError with all of them."""
    files = [f for p in ([paths] if isinstance(paths, Path) else paths) for f in case_files(p)]
    if not files:
        raise CaseError(f"no case files (*.yaml) in {paths}")
    cases: list[M] = []
    problems: list[str] = []
    for f in files:
        try:
            cases.extend(load_models(f, model))
        except CaseError as exc:
            problems.append(str(exc))
    seen: dict[str, int] = {}
    for c in cases:
        cid = str(getattr(c, "id", ""))
        seen[cid] = seen.get(cid, 0) + 1
    problems += [f"duplicate case id {cid!r}" for cid, n in seen.items() if n > 1]
    return cases, problems


def load_cases(paths: Path | Sequence[Path], fixtures: Iterable[str] | None = None) -> list[Case]:
    """All cases under the paths, checked as a set: unique ids, known same_as and fixtures."""
    cases, problems = load_set(paths, Case)
    by_id = {c.id: c for c in cases}
    known_fixtures = set(fixtures) if fixtures is not None else None
    for c in cases:
        if c.same_as and c.same_as not in by_id:
            problems.append(f"{c.id}: same_as {c.same_as!r} is not a case")
        elif c.same_as and by_id[c.same_as].same_as:
            problems.append(f"{c.id}: same_as {c.same_as!r} must be a clean case (no same_as)")
        if c.fixture and known_fixtures is not None and c.fixture not in known_fixtures:
            problems.append(
                f"{c.id}: unknown fixture {c.fixture!r}; known: {', '.join(sorted(known_fixtures))}"
            )
    if problems:
        raise CaseError("\n".join(problems))
    return cases


def select(cases: list[Case], tags: Sequence[str] = (), ids: Sequence[str] = ()) -> list[Case]:
    """Cases with any of the tags (or ids), plus the clean cases they must equal."""
    if not tags and not ids:
        return list(cases)
    wanted = {c.id for c in cases if set(c.tags) & set(tags) or c.id in ids}
    wanted |= {c.same_as for c in cases if c.id in wanted and c.same_as}
    return [c for c in cases if c.id in wanted]
