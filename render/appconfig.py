"""The app's settings form: what the sidebar may change, validated into :class:`Settings`.

Only overrides are kept (the rest comes from the environment and `.env`, read again each
time), so switching back to the offline profile also drops the online STAC default.
Keys are never part of the form: they come from the environment only, and the page says
whether one is set, never what it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, ValidationError

from agents.settings import Settings

FieldKind = Literal["choice", "text", "lines", "bool", "int", "float"]


@dataclass(frozen=True)
class FieldText:
    """How the sidebar words one setting; its type, choices and default come from Settings."""

    label: str
    help: str | None = None  # default: the Settings field's description
    placeholder: str | None = None
    step: float | None = None
    advanced: bool = False


# The settings the sidebar may change, in the order shown. Adding one here (the field
# itself lives in agents/settings.py) is all the form needs.
SIDEBAR: dict[str, FieldText] = {
    "profile": FieldText(
        "Profile",
        help="offline: local catalogue, data folders and gazetteer. online: Earth Search, "
        "OpenStreetMap (Overpass), Nominatim and a street basemap.",
    ),
    "planner": FieldText("Planner"),
    "writer": FieldText("Writer"),
    "llm_base_url": FieldText(
        "LLM endpoint",
        help="Any OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1. The key comes "
        "from OPENAI_API_KEY or GEOSCOUT_LLM_API_KEY in the environment, never from here.",
        placeholder="empty: the embedded model",
    ),
    "planner_model": FieldText("Planner model"),
    "writer_model": FieldText("Writer model"),
    "vlm_base_url": FieldText("Vision model endpoint", help="For counting objects (ships, cars)."),
    "vlm_model": FieldText("Vision model"),
    "data_dir": FieldText("Data folders", help="One folder per line."),
    "max_aoi_km2": FieldText("Largest area (km²)", advanced=True),
    "max_steps": FieldText("Most steps in a plan", step=1, advanced=True),
    "step_timeout_s": FieldText("Step timeout (s)", advanced=True),
    "parallel_steps": FieldText("Steps run at once", step=1, advanced=True),
    "max_question_chars": FieldText("Longest question (characters)", step=100, advanced=True),
}
# Sidebar labels, also used to name a field in an error message.
LABELS = {name: text.label for name, text in SIDEBAR.items()}


@dataclass(frozen=True)
class FormField:
    """One sidebar widget: the Settings field it sets, its wording and its kind of value."""

    name: str
    key: str  # the widget's key on the page
    kind: FieldKind
    label: str
    help: str | None
    placeholder: str | None
    step: float | None
    advanced: bool
    choices: tuple[str, ...]
    default: Any  # as the widget holds it
    optional: bool  # empty text sets None; otherwise it leaves the setting as it was


def _kind(annotation: Any) -> tuple[FieldKind, tuple[str, ...]]:
    """The widget kind of a Settings annotation (Optional removed) and its choices."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "choice", tuple(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _kind(args[0])
    if origin is typing.Annotated:
        return _kind(args[0])
    if origin is list:
        return "lines", ()
    if annotation is SecretStr:
        raise ValueError("keys come from the environment only, never from the form")
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    return "text", ()


def form_fields() -> list[FormField]:
    """The sidebar's widgets, from :data:`SIDEBAR` and ``Settings.model_fields``."""
    out = []
    for name, text in SIDEBAR.items():
        info = Settings.model_fields[name]
        kind, choices = _kind(info.annotation)
        default = info.get_default(call_default_factory=True)
        out.append(
            FormField(
                name=name,
                key=f"set_{name}",
                kind=kind,
                label=text.label,
                help=text.help or info.description,
                placeholder=text.placeholder,
                step=text.step,
                advanced=text.advanced,
                choices=choices,
                default=_shown(kind, default),
                optional=type(None) in typing.get_args(info.annotation),
            )
        )
    return out


def _shown(kind: FieldKind, value: Any) -> Any:
    """A setting's value as its widget holds it: text for text, one folder per line."""
    if kind == "lines":
        return "\n".join(str(v) for v in value or [])
    if kind == "text":
        return "" if value is None else str(value)
    return value


def form_from_settings(settings: Settings) -> dict[str, Any]:
    """The sidebar's values for ``settings`` (keys are never among them)."""
    return {f.name: _shown(f.kind, getattr(settings, f.name)) for f in form_fields()}


def validate_form(
    form: Mapping[str, Any], base: dict[str, Any] | None = None
) -> tuple[Settings | None, dict[str, Any], list[str]]:
    """(settings, overrides, errors): settings is None and errors say why when invalid.

    ``form`` maps Settings field names to the values the widgets hold (missing ones take
    their defaults); ``base`` holds overrides the page was started with (tests, the CLI);
    the form's values go on top. Folders must exist: a typo would otherwise show up as "no
    imagery found".
    """
    errors: list[str] = []
    overrides: dict[str, Any] = dict(base or {})
    for f in form_fields():
        value = form.get(f.name, f.default)
        if f.kind == "text":
            text = str(value or "").strip()
            if text or f.optional:
                overrides[f.name] = text or None
        elif f.kind == "lines":
            lines = str(value or "").replace(os.pathsep, "\n").splitlines()
            dirs = [d.strip() for d in lines if d.strip()]
            missing = [d for d in dirs if not Path(d).expanduser().is_dir()]
            if missing:
                errors.append(f"{f.label}: no such folder: {', '.join(missing[:3])}")
            overrides[f.name] = [Path(d).expanduser() for d in dirs]
        else:
            overrides[f.name] = value
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        errors.extend(_message(e) for e in exc.errors())
        return None, overrides, errors
    if errors:
        return None, overrides, errors
    return settings, overrides, []


def _message(err: Any) -> str:
    loc = [str(p) for p in err.get("loc", ()) if not str(p).isdigit()]
    field = loc[0] if loc else ""
    name = LABELS.get(field, field.replace("_", " ") or "Settings")
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{name}: {msg}"


def settings_key(settings: Settings) -> str:
    """A cache key for the assistant built from these settings (secrets only as a digest)."""
    shown = settings.describe()
    for key in ("vlm_api_key", "llm_api_key"):
        secret = getattr(settings, key)
        raw = secret.get_secret_value() if secret is not None else ""
        shown[key] = hashlib.sha256(raw.encode()).hexdigest()[:12] if raw else None
    return hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()


def key_status(settings: Settings) -> dict[str, str]:
    """Whether each key is set, for the sidebar: never the key itself."""
    return {
        "LLM API key": "set (from the environment)" if settings.llm_api_key else "not set",
        "Vision model API key": "set (from the environment)" if settings.vlm_api_key else "not set",
    }
