"""The one entry point used by the CLI, the app and the evals: question -> AnswerBundle."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agents.cost import CostMeter
from agents.graph import build_graph, load_evidence, trace_from
from agents.runtime import Services, tool_catalog
from agents.schemas import (
    Answer,
    AnswerBundle,
    Clarification,
    GuardResult,
    LLMCall,
    LLMUsage,
    Plan,
)
from agents.settings import Settings
from agents.state import GraphContext, PayloadStore

log = logging.getLogger(__name__)


class Assistant:
    """Owns the services, the compiled graph and its SQLite checkpointer."""

    def __init__(
        self,
        settings: Settings,
        today: dt.date | None = None,
        llm: Callable[[str], Any] | None = None,
    ) -> None:
        """``llm`` maps a role ("planner", "writer") to a chat model, replacing the
        configured one (tests and evals pass scripted models here)."""
        self.settings = settings
        self.today = today
        self._llm = llm
        self.services = Services(settings)
        # Lazy: a tool's module (and its libraries) is imported when a plan uses the tool.
        self.catalog = tool_catalog()
        self._conn: sqlite3.Connection | None = None
        self._saver: Any = None
        self.graph = build_graph(checkpointer=self._checkpointer())

    def _checkpointer(self) -> Any:
        """SQLite checkpoints that never cost an answer: a corrupt file is moved aside with a
        warning and a fresh one used, an unusable place gives an in-memory store, and a
        write that fails mid-run (full disk) moves the run to memory (agents/conversations).
        The runs' large values go to a payload table in the same file (agents/state)."""
        from agents.conversations import ResilientSaver, open_state_db

        self._conn, warning = open_state_db(Path(self.settings.state_db))
        if warning:
            log.warning("thread store: %s", warning)
        self._saver = ResilientSaver(self._conn)
        try:
            PayloadStore.create_table(self._conn)
        except sqlite3.Error as exc:  # payloads then stay in each run's memory
            log.warning("payload store: %s", exc)
        return self._saver

    def _payloads(self) -> PayloadStore:
        """A store for one run, writing to the state database through the checkpointer's
        connection and lock (memory only once the checkpointer has moved to memory)."""
        saver = self._saver
        if saver is None or saver.fallback is not None:
            return PayloadStore()
        return PayloadStore(self._conn, saver.lock)

    def warm_up(self) -> None:
        """In the background, start the language model (when the settings use it) and have it
        read the question parser's fixed prompt once, so that the first question only costs
        its own tokens. The app calls this when a session starts; errors are only logged (the
        question itself will report them)."""
        if self.settings.parser == "rules" or self._llm is not None:
            return

        def run() -> None:
            from agents.llm import LLMCallError, LLMUnavailable
            from agents.llm_parse import warm

            try:
                warm(self.services.chat_model("parser"))
            except (LLMUnavailable, LLMCallError) as exc:
                log.info("language model warm-up skipped: %s", exc)

        threading.Thread(target=run, name="geoscout-llm-warm-up", daemon=True).start()

    def close(self) -> None:
        self.services.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _context(self, upload_dirs: list[Path] | None) -> GraphContext:
        today = self.today or dt.date.today()
        return GraphContext(
            settings=self.settings,
            catalog=self.catalog,
            tool_ctx=self.services.tool_context(today=today, upload_dirs=upload_dirs),
            today=today,
            llm=self._llm or self.services.chat_model,
            payloads=self._payloads(),
        )

    def stream(
        self,
        question: str,
        bbox: list[float] | None = None,
        raster: str | None = None,
        thread_id: str | None = None,
        upload_dirs: list[Path] | None = None,
        previous: AnswerBundle | None = None,
    ) -> Iterator[tuple[str, Any]]:
        """Yield ("update", {node: update}) as the graph runs, then ("bundle", AnswerBundle).

        ``previous``: the conversation's previous answer; a follow-up ("and in 2020?") takes
        the place, target and dates it leaves out from that answer's intent."""
        thread_id = thread_id or uuid.uuid4().hex
        # A relative path means the caller's working directory; tools resolve relative names
        # against the data and upload folders instead, so it is made absolute here.
        if raster is not None and not Path(raster).is_absolute():
            raster = str(Path(raster).resolve())
        upload_dirs = [Path(d).resolve() for d in upload_dirs or []] or None
        config: dict[str, Any] = {
            "configurable": {"thread_id": thread_id},
            "max_concurrency": self.settings.parallel_steps,
        }
        meter = CostMeter(self.settings.cpu_watts, self.settings.grid_gco2_per_kwh)
        meter.start(self.services.server_pids())
        t0 = time.perf_counter()
        ctx = self._context(upload_dirs)
        # The whole-question deadline: every step gets at most what is left of it.
        deadline = time.monotonic() + self.settings.question_timeout_s
        extra = {**ctx.tool_ctx.extra, "question_deadline": deadline}
        ctx = dataclasses.replace(ctx, tool_ctx=dataclasses.replace(ctx.tool_ctx, extra=extra))
        payload = {
            "question": question,
            "bbox": bbox,
            "raster": raster,
            "previous": previous.intent if previous is not None and not previous.refused else None,
        }
        # The final state comes with the stream ("values"), so it is not read back and decoded
        # from the checkpoint.
        state: dict[str, Any] = {}
        for mode, chunk in self.graph.stream(
            payload, config, context=ctx, stream_mode=["updates", "values"]
        ):
            if mode == "values":
                state = chunk
            else:
                yield "update", chunk
        meter.server_pids = self.services.server_pids()  # servers started during the run
        seconds = time.perf_counter() - t0
        yield "bundle", self._bundle(question, state, thread_id, seconds, meter, ctx.payloads)

    def ask(self, question: str, **kwargs: Any) -> AnswerBundle:
        bundle: AnswerBundle | None = None
        for kind, item in self.stream(question, **kwargs):
            if kind == "bundle":
                bundle = item
        assert bundle is not None
        return bundle

    def _bundle(
        self,
        question: str,
        state: dict[str, Any],
        thread_id: str,
        seconds: float,
        meter: CostMeter,
        payloads: PayloadStore,
    ) -> AnswerBundle:
        plan = Plan.model_validate(state["plan"]) if state.get("plan") else Plan()
        results = state.get("results", {})
        trace = trace_from(plan, results) if plan.steps else []
        status = state.get("status", "go")
        answer = Answer.model_validate(state["answer"]) if state.get("answer") else Answer()
        clar = (
            Clarification.model_validate(state["clarification"])
            if state.get("clarification")
            else None
        )
        if status == "refused":
            answer = Answer(text=state.get("refusal_reason") or "Declined.", writer="guard")
        elif status == "clarify" and clar is not None and not answer.text:
            answer = Answer(text=clar.question, writer="guard")
        elif status == "clarify" and clar is not None:
            # The failed geocoding step is the reason for the question, not news to report.
            answer = Answer(text=clar.question, writer="guard", caveats=answer.caveats)
        steps = dict(state.get("timings", {}))
        calls = [LLMCall.model_validate(c) for c in state.get("llm_calls", [])]
        usage = LLMUsage(
            prompt_tokens=sum(c.prompt_tokens for c in calls),
            completion_tokens=sum(c.completion_tokens for c in calls),
            model=", ".join(dict.fromkeys(c.model for c in calls))
            or "none (rule planner, template writer)",
        )
        remote = usage.prompt_tokens + usage.completion_tokens if self.settings.llm_base_url else 0
        cost = meter.finish(
            seconds, steps, usage, remote, self.settings.remote_llm_wh_per_1k_tokens
        )
        notes = state.get("notes", {})
        guards = [GuardResult.model_validate(g) for g in state.get("guardrails", [])]
        restarted = self.services.take_llm_note()
        if restarted:  # said once, to the person who waited for it
            guards.append(GuardResult(name="llm.restarted", passed=True, detail=restarted))
            answer = answer.model_copy(
                update={"caveats": [*answer.caveats, restarted[:1].upper() + restarted[1:] + "."]}
            )
        return AnswerBundle(
            question=question,
            refused=status == "refused",
            refusal_reason=state.get("refusal_reason") if status == "refused" else None,
            clarification=clar,
            answer=answer,
            evidence=load_evidence(state, payloads),
            intent=state.get("intent") or None,
            parser_note=notes.get("parser", ""),
            plan=plan.steps,
            planner=plan.planner,
            planner_note=notes.get("planner", ""),
            writer_note=notes.get("writer", ""),
            llm_calls=calls,
            trace=trace,
            layers=payloads.load(state.get("layers"))
            or {"type": "FeatureCollection", "features": []},
            cost=cost,
            guardrails=guards,
            thread_id=thread_id,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            profile=self.settings.profile,
        )


def make_assistant(**overrides: Any) -> Assistant:
    return Assistant(Settings(**overrides))
