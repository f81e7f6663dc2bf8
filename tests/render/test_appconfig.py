"""The app's settings form: validated into Settings, errors as sentences, keys never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.settings import Settings
from render.appconfig import (
    SIDEBAR,
    form_fields,
    form_from_settings,
    key_status,
    settings_key,
    validate_form,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GEOSCOUT_LLM_API_KEY", "GEOSCOUT_STAC_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


def test_a_valid_form_gives_settings_and_overrides(tmp_path: Path) -> None:
    form = {
        "profile": "online",
        "llm_base_url": " http://127.0.0.1:8000/v1/ ",
        "data_dir": str(tmp_path),
        "max_steps": 5,
    }
    settings, overrides, errors = validate_form(form)
    assert errors == [] and settings is not None
    assert settings.profile == "online" and settings.stac_url  # online default applies
    assert settings.llm_base_url == "http://127.0.0.1:8000/v1"
    assert settings.data_dir == [tmp_path] and settings.max_steps == 5
    # Back to offline: the online STAC default goes too (overrides only, not a copy).
    back, _, _ = validate_form(form | {"profile": "offline"})
    assert back is not None and back.stac_url is None
    assert form_from_settings(settings)["llm_base_url"] == "http://127.0.0.1:8000/v1"
    assert overrides["profile"] == "online"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"llm_base_url": "ftp://example"}, "LLM endpoint: 'ftp://example' is not an http(s) URL"),
        ({"data_dir": "/no/such/folder"}, "Data folders: no such folder: /no/such/folder"),
        ({"max_steps": 0}, "Most steps in a plan:"),
        ({"parallel_steps": 99}, "Steps run at once:"),
        ({"step_timeout_s": -1}, "Step timeout (s):"),
        ({"profile": "cloud"}, "Profile:"),
    ],
)
def test_invalid_values_are_rejected_with_a_message(
    change: dict[str, object], message: str
) -> None:
    form = form_from_settings(Settings()) | change
    settings, _, errors = validate_form(form)
    assert settings is None
    assert any(e.startswith(message) for e in errors), errors


def test_keys_are_never_part_of_what_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    settings = Settings()
    assert "sk-very-secret" not in settings_key(settings)
    assert "sk-very-secret" not in str(form_from_settings(settings))
    assert key_status(settings)["LLM API key"] == "set (from the environment)"
    other = Settings(llm_api_key="sk-other")
    assert settings_key(other) != settings_key(settings)  # a new key rebuilds the assistant


def test_the_form_is_derived_from_the_settings_fields() -> None:
    """Types, choices and defaults come from Settings; the sidebar adds only wording."""
    fields = {f.name: f for f in form_fields()}
    assert list(fields) == list(SIDEBAR)
    assert fields["profile"].kind == "choice" and fields["profile"].choices == ("offline", "online")
    assert fields["planner"].choices == ("auto", "llm", "rules")
    assert fields["data_dir"].kind == "lines" and fields["data_dir"].default == ""
    assert fields["llm_base_url"].kind == "text" and fields["llm_base_url"].optional
    assert fields["max_steps"].kind == "int" and fields["max_steps"].default == 12
    assert fields["max_aoi_km2"].kind == "float" and fields["max_aoi_km2"].advanced
    assert fields["max_steps"].key == "set_max_steps"
    assert all(name in Settings.model_fields for name in fields)
    assert not {"llm_api_key", "vlm_api_key"} & set(fields)  # keys never in the form
    # Values round-trip: the form of some settings validates back to the same settings.
    settings, _, errors = validate_form(form_from_settings(Settings(max_steps=7)))
    assert errors == [] and settings is not None and settings.max_steps == 7
