# GeoScout: two commands to know: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Sample data sits beside the project in CI and on developer machines.
SHARED_DATA := $(abspath ../shared/data)
export GEOSCOUT_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
QUESTION ?= How much open water is there around Accomac, Virginia?

.PHONY: setup demo app test test-llm lint typecheck bench bench-llm bench-arch clean
.PHONY: eval-smoke eval eval-rules eval-quality eval-refs

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev,llm,train]"
	touch $(STAMP)

demo: setup
	$(BIN)/geoscout ask "$(QUESTION)" --out out/demo

# The Streamlit app on http://127.0.0.1:8501 (offline defaults; PORT=... to change).
app: setup
	$(BIN)/geoscout app --port $(or $(PORT),8501)

test: setup
	$(BIN)/python -m pytest -q

# Integration tests with the real embedded LLM (starts llama.cpp on 127.0.0.1; minutes on CPU).
test-llm: setup
	$(BIN)/python -m pytest -q -m llm

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m evals.benchmark

bench-llm: setup
	$(BIN)/python -m evals.bench_llm --json out/bench_llm.json

# Scripted agent evals (docs/evals.md). The smoke subset must pass with the rule planner (CI).
eval-smoke: setup
	$(BIN)/geoscout eval evals/cases --tag smoke --planner rules --report out/eval-smoke

# The full case set with the local LLM (hours on a 2-core CPU), then the rule planner, then
# the label-based quality checks; known gaps do not stop the target (see the reports).
eval: setup
	$(BIN)/geoscout eval evals/cases --planner llm --jobs 1 --allow-failures --report out/eval-llm
	$(MAKE) eval-rules eval-quality

eval-rules: setup
	$(BIN)/geoscout eval evals/cases --planner rules --allow-failures --report out/eval-rules

eval-quality: setup
	$(BIN)/geoscout eval quality --report out/eval-quality

# Recompute the independent reference figures and check the case files still match them.
eval-refs: setup
	$(BIN)/python -m evals.reference --check

clean:
	rm -rf $(VENV) out .geoscout

# Code size, import cost, state-database bytes and orchestration time (evals/bench_arch.py);
# REPO=/path/to/a/worktree measures another checkout with the same script.
bench-arch: setup
	$(BIN)/python -m evals.bench_arch $(if $(REPO),--repo $(REPO),)
