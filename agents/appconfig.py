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
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from agents.settings import Settings

# Sidebar labels, also used to name a field in an error message.
LABELS = {
    "profile": "Profile",
    "planner": "Planner",
    "writer": "Writer",
    "llm_base_url": "LLM endpoint",
    "planner_model": "Planner model",
    "writer_model": "Writer model",
    "vlm_base_url": "Vision model endpoint",
    "vlm_model": "Vision model",
    "data_dir": "Data folders",
    "max_aoi_km2": "Largest area (km²)",
    "max_steps": "Most steps in a plan",
    "step_timeout_s": "Step timeout (s)",
    "parallel_steps": "Steps run at once",
    "max_question_chars": "Longest question (characters)",
}


class SettingsForm(BaseModel):
    """The sidebar's fields as the page holds them (strings as typed)."""

    profile: Literal["offline", "online"] = "offline"
    planner: Literal["auto", "llm", "rules"] = "auto"
    writer: Literal["auto", "llm", "template"] = "auto"
    llm_base_url: str = ""
    planner_model: str = ""
    writer_model: str = ""
    vlm_base_url: str = ""
    vlm_model: str = ""
    data_dirs: str = ""  # one folder per line
    max_aoi_km2: float = 5_000.0
    max_steps: int = 12
    step_timeout_s: float = 300.0
    parallel_steps: int = 4
    max_question_chars: int = 2_000


def form_from_settings(settings: Settings) -> SettingsForm:
    return SettingsForm(
        profile=settings.profile,
        planner=settings.planner,
        writer=settings.writer,
        llm_base_url=settings.llm_base_url or "",
        planner_model=settings.planner_model or "",
        writer_model=settings.writer_model or "",
        vlm_base_url=settings.vlm_base_url or "",
        vlm_model=settings.vlm_model or "",
        data_dirs="\n".join(str(p) for p in settings.data_dir),
        max_aoi_km2=settings.max_aoi_km2,
        max_steps=settings.max_steps,
        step_timeout_s=settings.step_timeout_s,
        parallel_steps=settings.parallel_steps,
        max_question_chars=settings.max_question_chars,
    )


def validate_form(
    form: SettingsForm | dict[str, Any], base: dict[str, Any] | None = None
) -> tuple[Settings | None, dict[str, Any], list[str]]:
    """(settings, overrides, errors): settings is None and errors say why when invalid.

    ``base`` holds overrides the page was started with (tests, the CLI); the form's values
    go on top. Folders must exist: a typo would otherwise show up as "no imagery found".
    """
    errors: list[str] = []
    try:
        f = form if isinstance(form, SettingsForm) else SettingsForm.model_validate(form)
    except ValidationError as exc:
        return None, {}, [_message(e) for e in exc.errors()]
    overrides: dict[str, Any] = dict(base or {})
    overrides.update(
        profile=f.profile,
        planner=f.planner,
        writer=f.writer,
        llm_base_url=f.llm_base_url.strip() or None,
        planner_model=f.planner_model.strip() or None,
        writer_model=f.writer_model.strip() or None,
        vlm_base_url=f.vlm_base_url.strip() or None,
        vlm_model=f.vlm_model.strip() or None,
        max_aoi_km2=f.max_aoi_km2,
        max_steps=f.max_steps,
        step_timeout_s=f.step_timeout_s,
        parallel_steps=f.parallel_steps,
        max_question_chars=f.max_question_chars,
    )
    dirs = [line.strip() for line in f.data_dirs.replace(os.pathsep, "\n").splitlines()]
    dirs = [d for d in dirs if d]
    missing = [d for d in dirs if not Path(d).expanduser().is_dir()]
    if missing:
        errors.append(f"{LABELS['data_dir']}: no such folder: {', '.join(missing[:3])}")
    overrides["data_dir"] = [Path(d).expanduser() for d in dirs]
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
