from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agents.settings import EARTH_SEARCH_URL, Settings


def test_data_dirs_split_and_online_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GEOSCOUT_DATA_DIR", f"{tmp_path}:{tmp_path / 'missing'}")
    monkeypatch.setenv("GEOSCOUT_PROFILE", "online")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.data_dir == [tmp_path, tmp_path / "missing"]
    assert s.existing_data_dirs() == [tmp_path.resolve()]
    assert s.missing_data_dirs() == [tmp_path / "missing"]
    assert s.stac_url == EARTH_SEARCH_URL


def test_invalid_settings_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSCOUT_PROFILE", "sideways")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.delenv("GEOSCOUT_PROFILE")
    with pytest.raises(ValidationError, match="URL"):
        Settings(_env_file=None, vlm_base_url="ftp://x")  # type: ignore[call-arg]


def test_secrets_are_masked() -> None:
    s = Settings(_env_file=None, vlm_api_key="sk-secret")  # type: ignore[call-arg]
    assert "sk-secret" not in str(s.describe()) and "sk-secret" not in repr(s)
