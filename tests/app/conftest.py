"""The app under test: offline settings in the environment, fresh caches for each test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One STAC index and gazetteer cache for all app tests: the one CI and the Makefile
    # name (entries are keyed by content fingerprints, so sharing is safe), else a new one.
    configured = os.environ.get("GEOSCOUT_CACHE_DIR")
    return Path(configured) if configured else tmp_path_factory.mktemp("app-cache")


@pytest.fixture
def app_env(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, shared_cache: Path, tmp_path: Path
) -> Iterator[dict[str, str]]:
    env = {
        "GEOSCOUT_PROFILE": "offline",
        "GEOSCOUT_DATA_DIR": str(data_dir),
        "GEOSCOUT_CACHE_DIR": str(shared_cache),
        "GEOSCOUT_STATE_DB": str(tmp_path / "threads.sqlite"),
        # The rule planner and template writer: fast, and no model server in unit tests.
        "GEOSCOUT_PLANNER": "rules",
        "GEOSCOUT_WRITER": "template",
    }
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "GEOSCOUT_LLM_BASE_URL", "GEOSCOUT_STAC_URL"):
        monkeypatch.delenv(var, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield env
    st.cache_resource.clear()  # closes the assistants: their local servers stop
    st.cache_data.clear()
