"""Tools describe themselves: the planner, the step labels and the catalogue read the
declarations, so a new tool is one module (here, one declared in this test) and its test."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from agents.intent import Intent
from agents.llm_planner import LLMPlanOut, allowed_tools, plan_schema, to_plan
from tools.base import EvidenceDraft, ToolContext, ToolResult, ToolSpec
from tools.provenance import Provenance
from tools.registry import tool_specs


class TreeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scene: str
    aoi: Any = None
    kind: Literal["conifer", "broadleaf"] = "broadleaf"
    min_height_m: float | None = None


def _run(args: TreeArgs, ctx: ToolContext) -> ToolResult:
    draft = EvidenceDraft(
        key="trees", kind="figure", title="Trees", provenance=Provenance(tool="count_trees")
    )
    return ToolResult(status="ok", summary="3 trees", evidence=[draft])


TREES = ToolSpec(
    name="count_trees",
    args_schema=TreeArgs,
    run=_run,
    description="Count trees on an image.",
    prompt_fragment="count_trees(scene=@step.scene, kind, aoi=@step.aoi): trees on one image.",
    outputs={"count": "count"},
    accepts={"scene": ("scene",), "aoi": ("aoi", "geometry")},
    label=lambda a: f"Count {a.get('kind', 'all')} trees",
    relevant=lambda intent: "vegetation" in intent.targets,
    needs_area=True,
    stated_only=frozenset({"min_height_m"}),
    produces=("figure",),
)


def _catalog() -> dict[str, ToolSpec]:
    return {**tool_specs(), TREES.name: TREES}


def test_the_planner_grammar_comes_from_the_declaration() -> None:
    schema = plan_schema(_catalog(), max_steps=6)
    variants = schema["properties"]["steps"]["items"]["anyOf"]
    trees = next(v for v in variants if v["properties"]["tool"]["enum"] == ["count_trees"])
    props = trees["properties"]["args"]["properties"]
    assert props["kind"] == {"type": "string", "enum": ["conifer", "broadleaf"]}
    assert "pattern" in str(props["scene"])  # a reference to a step's scene


def test_relevance_and_the_producers_of_what_it_reads() -> None:
    catalog = _catalog()
    veg = Intent(task="measure", targets=["vegetation"])
    allowed = allowed_tools(veg, catalog)
    assert {"count_trees", "stac_search"} <= allowed  # it reads a scene: the search comes too
    roads = Intent(task="measure", targets=["roads"])
    assert "count_trees" not in allowed_tools(roads, catalog)


def test_an_llm_plan_with_the_new_tool_keeps_it_labels_it_and_completes_its_area() -> None:
    catalog = _catalog()
    question = "How many trees are there in Accomac, Virginia?"
    intent = Intent(task="measure", targets=["vegetation"])
    out = LLMPlanOut.model_validate(
        {
            "steps": [
                {"id": "s1", "tool": "geocode", "args": {"place": "Accomac, Virginia"}},
                {"id": "s2", "tool": "stac_search", "args": {"aoi": "@s1.aoi"}},
                {"id": "s3", "tool": "count_trees",
                 "args": {"scene": "@s2.scene", "kind": "conifer", "min_height_m": 5}},
            ]
        }
    )  # fmt: skip
    plan, pruned = to_plan(out, intent, question, catalog, "fake")
    step = plan.steps[-1]
    assert step.tool == "count_trees" and step.why == "Count conifer trees"
    assert step.args["aoi"] == "@s1.aoi" and "s1" in step.needs  # needs_area
    assert "min_height_m" not in step.args  # stated_only: no 5 in the question
    assert any("min_height_m" in p for p in pruned)


def test_every_shipped_tool_declares_what_it_produces_and_a_label() -> None:
    for name, spec in tool_specs().items():
        assert spec.produces, name
        assert spec.label is not None, name
        assert spec.step_label({}) and spec.step_label({}) != f"Run {name}", name
