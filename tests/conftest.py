"""Shared fixtures: the sample data folder (GEOSCOUT_DATA_DIR, default ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Unit tests never start the embedded LLM (1.1 GB, slow on CPU) nor reach a configured
# one: they use the rule planner and template writer unless a test wires a scripted fake
# chat model. Tests marked `llm` opt into the real model explicitly.
os.environ["GEOSCOUT_PLANNER"] = "rules"
os.environ["GEOSCOUT_WRITER"] = "template"
os.environ["GEOSCOUT_PARSER"] = "rules"
# A model server started by a test is the test's child and stops with it (no shared,
# detached server outliving the run).
os.environ["GEOSCOUT_LLM_IDLE_S"] = "0"
for _var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "GEOSCOUT_LLM_BASE_URL", "GEOSCOUT_LLM_API_KEY"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    # CI and the Makefile set GEOSCOUT_DATA_DIR; otherwise look beside the project.
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    path = Path(os.environ.get("GEOSCOUT_DATA_DIR", "").split(os.pathsep)[0] or default)
    if not path.is_dir():
        pytest.skip(f"sample data not found at {path}; set GEOSCOUT_DATA_DIR to the data folder")
    return path
