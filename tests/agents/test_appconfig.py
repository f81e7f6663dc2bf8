"""The app's settings form: validated into Settings, errors as sentences, keys never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.appconfig import (
    SettingsForm,
    form_from_settings,
    key_status,
    settings_key,
    validate_form,
)
from agents.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GEOSCOUT_LLM_API_KEY", "GEOSCOUT_STAC_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


def test_a_valid_form_gives_settings_and_overrides(tmp_path: Path) -> None:
    form = SettingsForm(
        profile="online",
        llm_base_url=" http://127.0.0.1:8000/v1/ ",
        data_dirs=str(tmp_path),
        max_steps=5,
    )
    settings, overrides, errors = validate_form(form)
    assert errors == [] and settings is not None
    assert settings.profile == "online" and settings.stac_url  # online default applies
    assert settings.llm_base_url == "http://127.0.0.1:8000/v1"
    assert settings.data_dir == [tmp_path] and settings.max_steps == 5
    # Back to offline: the online STAC default goes too (overrides only, not a copy).
    back, _, _ = validate_form(form.model_copy(update={"profile": "offline"}))
    assert back is not None and back.stac_url is None
    assert form_from_settings(settings).llm_base_url == "http://127.0.0.1:8000/v1"
    assert overrides["profile"] == "online"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"llm_base_url": "ftp://example"}, "LLM endpoint: 'ftp://example' is not an http(s) URL"),
        ({"data_dirs": "/no/such/folder"}, "Data folders: no such folder: /no/such/folder"),
        ({"max_steps": 0}, "Most steps in a plan:"),
        ({"parallel_steps": 99}, "Steps run at once:"),
        ({"step_timeout_s": -1}, "Step timeout (s):"),
        ({"profile": "cloud"}, "Profile:"),
    ],
)
def test_invalid_values_are_rejected_with_a_message(
    change: dict[str, object], message: str
) -> None:
    form = SettingsForm().model_dump() | change
    settings, _, errors = validate_form(form)
    assert settings is None
    assert any(e.startswith(message) for e in errors), errors


def test_keys_are_never_part_of_what_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    settings = Settings()
    assert "sk-very-secret" not in settings_key(settings)
    assert "sk-very-secret" not in str(form_from_settings(settings).model_dump())
    assert key_status(settings)["LLM API key"] == "set (from the environment)"
    other = Settings(llm_api_key="sk-other")
    assert settings_key(other) != settings_key(settings)  # a new key rebuilds the assistant
