"""Shared fixtures: the sample data folder (GEOSCOUT_DATA_DIR, default ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    # CI and the Makefile set GEOSCOUT_DATA_DIR; otherwise look beside the project.
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    path = Path(os.environ.get("GEOSCOUT_DATA_DIR", "").split(os.pathsep)[0] or default)
    if not path.is_dir():
        pytest.skip(f"sample data not found at {path}; set GEOSCOUT_DATA_DIR to the data folder")
    return path
