"""The LangGraph graph: guard_input -> plan -> execute (parallel Send) -> merge -> write -> guard_output.

``build_graph()`` is the factory (tests, CLI, app); ``graph`` is the module-level compiled
graph named in ``langgraph.json``.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Final, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, Send

from agents.guards import clean_question, guard_input, guard_output
from agents.intent import Intent
from agents.llm import LLMUnavailable
from agents.merge import merge_results
from agents.recipes import NotCovered, PlanningError, compile_plan
from agents.schemas import (
    Answer,
    Clarification,
    Evidence,
    GuardResult,
    LLMCall,
    Plan,
    PlanStep,
    TraceEntry,
)
from agents.state import GraphContext, InputState, PayloadStore, State, StepTask
from agents.understanding import understand
from agents.units import add_requested_units
from tools.base import ToolResult, ToolSpec

# Imported where used, not here: the plan validator, the LLM planner and the writers load
# shapely, pyproj and rasterio (through tools.geo and tools.ground), which a refused or
# clarified question never needs.

_END: Final = "__end__"  # langgraph's END, typed as the literal Command[...] expects
assert _END == END

log = logging.getLogger(__name__)

_TRANSIENT = {"service_unreachable", "timeout"}


def _understand(state: State, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Read the question into an Intent (rules, the LLM, or both; see agents.understanding)."""
    t0 = time.perf_counter()
    ctx = runtime.context
    question = clean_question(state.get("question", ""))
    update: dict[str, Any] = {"question": question}
    if not question or len(question) > ctx.settings.max_question_chars:
        update["timings"] = {"understand": time.perf_counter() - t0}
        return update
    from tools.geocode import load_gazetteer

    previous = Intent.model_validate(state["previous"]) if state.get("previous") else None

    def parser_chat() -> tuple[Any, str | None]:
        """The parser's model, started only when the question needs it."""
        if ctx.settings.parser == "rules":
            return None, None
        if ctx.llm is None:
            return None, "no language model in this run"
        try:
            chat = ctx.llm("parser")
        except LLMUnavailable as exc:
            return None, exc.reason + (f" ({exc.hint})" if exc.hint else "")
        if hasattr(chat, "with_timeout"):
            chat = chat.with_timeout(ctx.settings.parse_budget_s)
        return chat, None

    understood = understand(
        question,
        gaz=load_gazetteer(str(ctx.tool_ctx.cache_dir)),
        today=ctx.today,
        mode=ctx.settings.parser,
        chat=parser_chat,
        previous=previous,
        has_area=state.get("bbox") is not None,
        has_image=state.get("raster") is not None,
    )
    update.update(
        intent=understood.intent.model_dump(mode="json"),
        future_years=understood.future_years,
        llm_calls=_calls("parser", understood.completions, understood.outcome),
        notes={"parser": understood.note},
        timings={"understand": time.perf_counter() - t0},
    )
    if understood.dropped:
        update["guardrails"] = [
            GuardResult(
                name="intent.llm_checked",
                passed=True,
                detail="dropped: " + "; ".join(understood.dropped)[:500],
            ).model_dump()
        ]
    return update


def _guard_input(
    state: State, runtime: Runtime[GraphContext]
) -> Command[Literal["plan", "__end__"]]:
    t0 = time.perf_counter()
    ctx = runtime.context
    question = state.get("question", "")
    intent = Intent.model_validate(state["intent"]) if state.get("intent") else None
    has_area = state.get("bbox") is not None or state.get("raster") is not None
    verdict = guard_input(
        question,
        intent,
        state.get("future_years", []),
        ctx.settings.max_question_chars,
        has_area,
        ctx.today,
    )
    update: dict[str, Any] = {
        "guardrails": [g.model_dump() for g in verdict.guards],
        "timings": {"guard_input": time.perf_counter() - t0},
    }
    if verdict.action == "refuse":
        update.update(status="refused", refusal_reason=verdict.reason)
        return Command(update=update, goto=_END)
    if verdict.action == "clarify":
        update.update(
            status="clarify", clarification={"question": verdict.clarify, "candidates": []}
        )
        return Command(update=update, goto=_END)
    update["status"] = "go"
    return Command(update=update, goto="plan")


def _plan(state: State, runtime: Runtime[GraphContext]) -> Command[Literal["execute", "__end__"]]:
    """Compile the plan from the intent; the LLM planner only for what no recipe covers (or
    when GEOSCOUT_PLANNER=llm forces it)."""
    t0 = time.perf_counter()
    ctx = runtime.context
    intent = Intent.model_validate(state["intent"])
    bbox, raster = state.get("bbox"), state.get("raster")
    plan: Plan | None = None
    note = "rules: compiled from the understood question"
    calls: list[dict[str, Any]] = []
    guards: list[dict[str, Any]] = []
    clarify: str | None = None
    if ctx.settings.planner == "llm":
        # Forced LLM planning (evals compare it with the recipes); the recipes take over
        # when its plan fails, with the reason in the note.
        plan, note, calls, guards = _try_llm_plan(state, ctx, intent)
    if plan is None:
        try:
            plan = compile_plan(intent, bbox=bbox, raster=raster)
        except NotCovered as exc:
            clarify = exc.clarify or exc.message
            if ctx.settings.planner != "llm":
                plan, note, calls, guards = _try_llm_plan(state, ctx, intent)
        except PlanningError as exc:
            clarify = exc.clarify or exc.message
    if plan is None:
        return Command(
            update={
                "status": "clarify",
                "clarification": {
                    "question": clarify or "What would you like to know?",
                    "candidates": [],
                },
                "timings": {"plan": time.perf_counter() - t0},
                "llm_calls": calls,
                "guardrails": guards,
                "notes": {"planner": note},
            },
            goto=_END,
        )
    from agents.validate import validate_plan

    problems = validate_plan(
        plan, _plan_specs(ctx, plan), ctx.settings.max_steps, ctx.settings.max_aoi_km2
    )
    guard = GuardResult(
        name="plan.valid",
        passed=not problems,
        detail="; ".join(problems)
        if problems
        else f"{len(plan.steps)} steps, all tools and arguments valid",
    )
    update: dict[str, Any] = {
        "plan": plan.model_dump(mode="json"),
        "guardrails": [*guards, guard.model_dump()],
        "timings": {"plan": time.perf_counter() - t0},
        "results": {},
        "llm_calls": calls,
        "notes": {"planner": note},
    }
    if problems:
        update.update(
            status="refused",
            refusal_reason="The plan for this question failed validation: " + problems[0],
        )
        return Command(update=update, goto=_END)
    return Command(update=update, goto="execute")


def _plan_specs(ctx: GraphContext, plan: Plan) -> dict[str, ToolSpec]:
    """The specs the plan's steps use (the catalogue imports only those tools' modules); the
    whole catalogue when a step names an unknown tool (its error lists the known ones)."""
    tools = {step.tool for step in plan.steps}
    if all(tool in ctx.catalog for tool in tools):
        return {tool: ctx.catalog[tool] for tool in sorted(tools)}
    return dict(ctx.catalog)


# The large values of a step's result, kept in the payload store and referenced from the
# state: every output value (masks, scene lists) and each evidence draft's layer and geometry.
_DRAFT_PAYLOADS = ("layer", "geometry")


def _slim_result(result: ToolResult, store: PayloadStore) -> dict[str, Any]:
    """A ToolResult as the state holds it: JSON, large values replaced by references."""
    dumped = result.model_dump(mode="json")
    dumped["outputs"] = {k: store.slim(v) for k, v in dumped["outputs"].items()}
    dumped["evidence"] = [store.slim_fields(e, _DRAFT_PAYLOADS) for e in dumped["evidence"]]
    return dumped


def _load_result(record: dict[str, Any], store: PayloadStore) -> ToolResult:
    """The ToolResult of a state record, its references loaded."""
    dumped = dict(record["result"])
    dumped["outputs"] = {k: store.load(v) for k, v in dumped.get("outputs", {}).items()}
    dumped["evidence"] = [store.load_fields(e, _DRAFT_PAYLOADS) for e in dumped.get("evidence", [])]
    return ToolResult.model_validate(dumped)


def load_evidence(state: Mapping[str, Any], store: PayloadStore) -> list[Evidence]:
    """The ledger of a state, geometries loaded."""
    return [
        Evidence.model_validate(store.load_fields(e, ("geometry",)))
        for e in state.get("evidence", [])
    ]


def _execute(state: State) -> dict[str, Any]:
    """Mark steps whose prerequisites failed as skipped; routing sends the ready ones."""
    plan = Plan.model_validate(state["plan"])
    results = state.get("results", {})
    skipped: dict[str, dict[str, Any]] = {}
    for step in plan.steps:
        if step.id in results:
            continue
        failed = [n for n in step.needs if n in results and results[n]["result"]["status"] != "ok"]
        failed += [n for n in step.needs if n in skipped]
        if failed:
            skipped[step.id] = {
                "result": ToolResult(
                    status="error", summary=f"skipped: {', '.join(failed)} did not succeed"
                ).model_dump(mode="json"),
                "seconds": 0.0,
                "attempts": 0,
                "skipped": True,
            }
    return {"results": skipped} if skipped else {}


def _route_steps(state: State) -> list[Send] | str:
    """Send the steps whose prerequisites succeeded; a reference to a large output is passed
    on as its payload reference (the Send is checkpointed), which the step loads."""
    from agents.validate import resolve_args

    plan = Plan.model_validate(state["plan"])
    results = state.get("results", {})
    sends: list[Send] = []
    outputs = {sid: r["result"].get("outputs", {}) for sid, r in results.items()}
    for step in plan.steps:
        if step.id in results:
            continue
        if all(n in results and results[n]["result"]["status"] == "ok" for n in step.needs):
            try:
                args = resolve_args(step.args, outputs)
            except KeyError:
                args = {"__unresolved__": True}
            sends.append(Send("run_step", StepTask(step=step.model_dump(mode="json"), args=args)))
    return sends or "merge"


def _run_step(task: StepTask, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    ctx = runtime.context
    step = PlanStep.model_validate(task["step"])
    spec = ctx.catalog[step.tool]
    t0 = time.perf_counter()
    started = time.time()
    attempts = 0
    result: ToolResult
    if task["args"].get("__unresolved__"):
        result = ToolResult.fail("invalid_args", "an input this step needs was not produced")
    else:
        args = {k: ctx.payloads.load(v) for k, v in task["args"].items()}
        while True:
            attempts += 1
            result = run_tool_call(spec.invoke, args, ctx, ctx.settings.step_timeout_s)
            code = result.error.code if result.error else None
            if code in _TRANSIENT and attempts <= ctx.settings.step_retries:
                time.sleep(min(0.5 * 2 ** (attempts - 1), 4.0))
                continue
            break
    seconds = time.perf_counter() - t0
    return {
        "results": {
            step.id: {
                "result": _slim_result(result, ctx.payloads),
                "seconds": seconds,
                "started": started,
                "attempts": attempts,
            }
        },
        "timings": {f"{step.id}:{step.tool}": seconds},
    }


# When each step's first attempt started: the step timeout bounds the step, retries included.
# Keyed by the identity of the step's argument dict, which _run_step passes unchanged to each
# attempt; the dict itself is held, so its id cannot be reused while the entry lives.
_STEP_STARTS: dict[int, tuple[float, float, dict[str, Any]]] = {}
_STEP_STARTS_LOCK = threading.Lock()


def _step_time_left(args: dict[str, Any], timeout: float) -> float:
    now = time.monotonic()
    with _STEP_STARTS_LOCK:
        for key, (start, span, _) in list(_STEP_STARTS.items()):
            if now - start > span + 60.0:
                del _STEP_STARTS[key]
        entry = _STEP_STARTS.get(id(args))
        if entry is None or entry[2] is not args:
            _STEP_STARTS[id(args)] = (now, timeout, args)
            return timeout
        return entry[0] + timeout - now


def run_tool_call(fn: Any, args: dict[str, Any], ctx: GraphContext, timeout: float) -> ToolResult:
    """Run one tool call with a deadline that its work sees and a cancel event.

    The tool's context carries ``deadline`` (monotonic) and ``cancel``: every read and
    network call of the access policy (tools/access.py) takes at most what is left, and
    stops at its next check once cancelled. Python cannot kill a thread, so on timeout the
    event is set and the thread ends at that check, within about one network timeout.
    ``timeout`` bounds the whole step: a retry gets what its earlier attempts left. A
    whole-question deadline (``question_deadline`` in the tool context) shortens it too.
    """
    extra = dict(ctx.tool_ctx.extra or {})
    left = _step_time_left(args, timeout)
    if left <= 0.05:
        return ToolResult.fail(
            "timeout",
            f"the step used its {timeout:g} s before this attempt could run",
            "try again with a smaller area, or raise GEOSCOUT_STEP_TIMEOUT_S",
        )
    timeout = left
    question_deadline = extra.get("question_deadline")
    if isinstance(question_deadline, int | float):
        left = question_deadline - time.monotonic()
        if left <= 0:
            return ToolResult.fail(
                "timeout",
                "the time budget for this question was spent before this step could run",
                "ask about a smaller area, or raise GEOSCOUT_QUESTION_TIMEOUT_S",
            )
        timeout = min(timeout, left)
    cancel = threading.Event()
    extra.update(deadline=time.monotonic() + timeout, cancel=cancel)
    tool_ctx = dataclasses.replace(ctx.tool_ctx, extra=extra)
    pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoscout-step")
    future = pool.submit(fn, args, tool_ctx)
    try:
        result: ToolResult = future.result(timeout=timeout)
        return result
    except cf.TimeoutError:
        cancel.set()
        return ToolResult.fail(
            "timeout", f"the step took longer than {timeout:.3g} s and was stopped"
        )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _calls(role: str, completions: list[Any], outcome: str) -> list[dict[str, Any]]:
    return [
        LLMCall(
            role=role,
            model=c.model,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            seconds=round(c.seconds, 3),
            json_mode=c.json_mode,
            outcome=outcome if i == len(completions) - 1 else "rejected",
        ).model_dump()
        for i, c in enumerate(completions)
    ]


def _try_llm_plan(
    state: State, ctx: GraphContext, intent: Intent
) -> tuple[Plan | None, str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The LLM's plan for what no recipe covers, or None with the reason."""
    if ctx.settings.planner == "rules":
        return None, "rules: no recipe covers it and the LLM planner is off", [], []
    if ctx.llm is None:
        return None, "rules: no language model in this run", [], []
    try:
        chat = ctx.llm("planner")
    except LLMUnavailable as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        return None, f"rules: {exc.reason}{hint}", [], []
    if hasattr(chat, "with_timeout"):
        # A planning stage never waits longer than the reading budget: past it the recipes
        # (or a question back) answer, and the note says so.
        chat = chat.with_timeout(ctx.settings.parse_budget_s)
    s = ctx.settings
    from agents.llm_planner import llm_plan

    attempt = llm_plan(
        chat,
        state.get("question", ""),
        intent,
        dict(ctx.catalog),
        today=ctx.today,
        max_steps=s.max_steps,
        max_aoi_km2=s.max_aoi_km2,
        bbox=state.get("bbox"),
        raster=state.get("raster"),
    )
    guards: list[dict[str, Any]] = []
    if attempt.pruned:
        guards.append(
            GuardResult(
                name="plan.pruned", passed=True, detail="; ".join(attempt.pruned)[:600]
            ).model_dump()
        )
    if attempt.plan is not None:
        how = "valid after one repair" if attempt.repaired else "valid without repair"
        calls = _calls("planner", attempt.calls, "used")
        detail = how
        if attempt.repaired and attempt.problems:
            detail += " (first draft: " + "; ".join(attempt.problems[:3]) + ")"
        guards.append(GuardResult(name="plan.llm", passed=True, detail=detail[:600]).model_dump())
        return attempt.plan, f"{chat.name}: plan {how}", calls, guards
    if attempt.error:
        why = f"the model call failed ({attempt.error})"
    else:
        why = "its plan was invalid after one repair: " + "; ".join(attempt.problems[:3])
    calls = _calls("planner", attempt.calls, "rejected")
    guards.append(GuardResult(name="plan.llm", passed=False, detail=why[:600]).model_dump())
    return None, f"rules: fallback from {chat.name}, {why}"[:800], calls, guards


def trace_from(plan: Plan, results: dict[str, dict[str, Any]]) -> list[TraceEntry]:
    trace: list[TraceEntry] = []
    for step in plan.steps:
        r = results.get(step.id)
        if r is None:
            trace.append(
                TraceEntry(step=step.id, tool=step.tool, status="skipped", error="not run")
            )
            continue
        res = ToolResult.model_validate(r["result"])
        status: Any = "skipped" if r.get("skipped") else res.status
        trace.append(
            TraceEntry(
                step=step.id,
                tool=step.tool,
                status=status,
                seconds=round(float(r.get("seconds", 0.0)), 3),
                started=r.get("started"),
                error=res.error.message
                if res.error
                else (res.summary if status == "skipped" else None),
                error_code=res.error.code if res.error else None,
                hint=res.error.hint if res.error else None,
                summary=res.summary[:300],
            )
        )
    return trace


def _merge(state: State, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    t0 = time.perf_counter()
    store = runtime.context.payloads
    plan = Plan.model_validate(state["plan"])
    results = {sid: _load_result(r, store) for sid, r in state.get("results", {}).items()}
    ledger, layers, _ = merge_results(plan.steps, results)
    intent = Intent.model_validate(state["intent"]) if state.get("intent") else None
    add_requested_units(ledger, intent)
    return {
        "evidence": [store.slim_fields(e.model_dump(mode="json"), ("geometry",)) for e in ledger],
        "layers": store.slim(layers),
        "timings": {"merge": time.perf_counter() - t0},
    }


def _write(state: State, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    from agents.writer import template_answer, with_understanding

    t0 = time.perf_counter()
    ctx = runtime.context
    plan = Plan.model_validate(state["plan"])
    ledger = load_evidence(state, ctx.payloads)
    trace = trace_from(plan, state.get("results", {}))
    update: dict[str, Any] = {}
    for t in trace:
        if t.error_code == "ambiguous":
            res = _load_result(state["results"][t.step], ctx.payloads)
            cands = res.error.candidates if res.error else []
            listed = "; ".join(cands)
            update["status"] = "clarify"
            update["clarification"] = Clarification(
                question=f"{t.error} Which one do you mean? {listed}".strip(), candidates=cands
            ).model_dump()
    question = state.get("question", "")
    intent = Intent.model_validate(state["intent"]) if state.get("intent") else None
    answer = template_answer(plan.intent, ledger, trace, question, intent=intent, plan=plan)
    writer = ctx.settings.writer
    note = "template: chosen in settings (GEOSCOUT_WRITER=template)"
    if update.get("status") == "clarify":
        note = "template: the answer is a clarification question"
    elif writer == "auto" and not ctx.settings.llm_base_url:
        note = (
            "template: the embedded model writes poorer answers than the template "
            "(GEOSCOUT_WRITER=llm to use it)"
        )
    elif writer != "template":
        answer, note, calls, guards = _try_llm_write(ctx, question, ledger, trace, answer)
        update["llm_calls"] = calls
        update["guardrails"] = guards
    answer = with_understanding(answer, intent, plan)
    update["answer"] = answer.model_dump()
    update["notes"] = {"writer": note}
    update["timings"] = {"write": time.perf_counter() - t0}
    return update


def _try_llm_write(
    ctx: GraphContext,
    question: str,
    ledger: list[Evidence],
    trace: list[TraceEntry],
    template: Answer,
) -> tuple[Answer, str, list[dict[str, Any]], list[dict[str, Any]]]:
    from agents.llm_writer import PRIMARY_KINDS, llm_write

    if ctx.llm is None:
        return template, "template: no language model in this run", [], []
    if not ledger:
        return template, "template: no evidence to write from", [], []
    if not any(e.kind in PRIMARY_KINDS for e in ledger):
        # Nothing was measured: "what failed and what would work" is the template's job, and
        # a small model tends to fill the gap with numbers from the place or the scene.
        return (
            template,
            "template: no measurement to report (the steps that measure failed)",
            [],
            [],
        )
    try:
        chat = ctx.llm("writer")
    except LLMUnavailable as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        return template, f"template: {exc.reason}{hint}", [], []
    attempt = llm_write(chat, question, ledger, trace, template.caveats)
    guards = [g.model_dump() for g in attempt.guards]
    if attempt.answer is not None:
        how = "after one revision" if attempt.revised else "first draft passed the output guard"
        return (
            attempt.answer,
            f"{chat.name}: {how}",
            _calls("writer", attempt.calls, "used"),
            guards,
        )
    if attempt.error:
        why = f"the model call failed ({attempt.error})"
    else:
        why = "its answer failed the output guard after one revision"
    guards.append(
        GuardResult(
            name="writer.fallback", passed=True, detail=f"template writer used: {why}"
        ).model_dump()
    )
    calls = _calls("writer", attempt.calls, "rejected")
    return template, f"template: fallback from {chat.name}, {why}", calls, guards


def _trace_reports(state: State) -> list[str]:
    """Error and hint texts of failed steps (numbers there are the tools' own words)."""
    if not state.get("plan"):
        return []
    trace = trace_from(Plan.model_validate(state["plan"]), state.get("results", {}))
    return [
        f"{t.error or ''} {t.hint or ''}" for t in trace if t.status in ("error", "unavailable")
    ]


# Guard results that stop an answer from being delivered: a citation to nothing, or a
# number that no cited evidence holds (markup is removed, not blocking).
_BLOCKING_GUARDS = ("output.citations_exist", "output.numbers_cited")


def _guard_output(state: State, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Check the answer; one that fails is never delivered.

    A failing answer is replaced by the template answer built from the evidence ledger, if
    that passes the guard, else by an honest "I could not produce a checked answer" that
    cites the evidence; what happened is recorded in the guardrails (``output.fallback``).
    """
    t0 = time.perf_counter()
    ledger = load_evidence(state, runtime.context.payloads)
    answer = Answer.model_validate(state["answer"])
    reports = _trace_reports(state)
    question = state.get("question", "")
    checked, results = guard_output(answer, ledger, question, reports)
    failed = [g for g in results if g.name in _BLOCKING_GUARDS and not g.passed]
    if failed:
        why = "; ".join(f"{g.name}: {g.detail}" for g in failed)[:400]
        plan = Plan.model_validate(state["plan"]) if state.get("plan") else None
        intent = Intent.model_validate(state["intent"]) if state.get("intent") else None
        fallback: Answer | None = None
        if plan is not None and answer.writer != "template":
            from agents.writer import template_answer, with_understanding

            trace = trace_from(plan, state.get("results", {}))
            template = template_answer(
                plan.intent, ledger, trace, question, intent=intent, plan=plan
            )
            template = with_understanding(template, intent, plan)
            t_checked, t_results = guard_output(template, ledger, question, reports)
            if all(g.passed for g in t_results if g.name in _BLOCKING_GUARDS):
                fallback = t_checked
                detail = f"the {answer.writer} answer failed ({why}); the template answer was used"
        if fallback is None:
            fallback = _unchecked_answer(answer, ledger)
            detail = f"the answer failed ({why}); no checked answer could be produced"
        results.append(GuardResult(name="output.fallback", passed=False, detail=detail))
        checked = fallback
    return {
        "answer": checked.model_dump(),
        "guardrails": [g.model_dump() for g in results],
        "timings": {"guard_output": time.perf_counter() - t0},
    }


def _unchecked_answer(answer: Answer, ledger: list[Evidence]) -> Answer:
    """The honest answer when no written answer passes the guard: no figures, the evidence."""
    cited = [e.id for e in ledger][:12]
    listed = ", ".join(f"[{c}]" for c in cited)
    text = (
        "I could not produce a checked answer: the answer I wrote stated figures or citations "
        "that the evidence does not support, so it is not shown."
    )
    if listed:
        text += f" The evidence I found is listed with its sources: {listed}."
    return Answer(
        text=text,
        citations=cited,
        caveats=[*answer.caveats, "No figure is given because none passed the checks."],
        writer="guard",
    )


def build_graph(checkpointer: Any = None) -> Any:
    builder = StateGraph(State, context_schema=GraphContext, input_schema=InputState)
    builder.add_node("guard_input", _guard_input)
    builder.add_node("plan", _plan)
    builder.add_node("execute", _execute)
    # run_step receives a Send payload (StepTask), not the graph state; stubs cannot express it.
    builder.add_node("run_step", _run_step)  # type: ignore[arg-type]
    builder.add_node("merge", _merge)
    builder.add_node("write", _write)
    builder.add_node("guard_output", _guard_output)
    builder.add_node("understand", _understand)
    builder.add_edge(START, "understand")
    builder.add_edge("understand", "guard_input")
    builder.add_conditional_edges("execute", _route_steps, ["run_step", "merge"])
    builder.add_edge("run_step", "execute")
    builder.add_edge("merge", "write")
    builder.add_edge("write", "guard_output")
    builder.add_edge("guard_output", END)
    return builder.compile(checkpointer=checkpointer)


graph = build_graph()
