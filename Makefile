# mpevents: `make run` and `make test` are the whole quickstart.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: run test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamps: reinstall only when pyproject.toml changes.
$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

$(VENV)/.bench-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $@

run: $(VENV)/.run-deps
	$(BIN)/mpevents --input data/input --output data/output --worker-number $(WORKERS)

lint: $(VENV)/.test-deps
	$(BIN)/ruff check mpevents tests scripts
	$(BIN)/ruff format --check mpevents tests scripts
	$(BIN)/lint-imports

typecheck: $(VENV)/.test-deps
	$(BIN)/mypy

unit: $(VENV)/.test-deps
	$(BIN)/pytest

test: lint typecheck unit

bench: $(VENV)/.bench-deps
	$(BIN)/pytest tests/benchmarks --benchmark-only
	$(BIN)/python scripts/spec_bench.py
	$(BIN)/python scripts/bench.py

clean:
	rm -rf $(VENV) data/output profiles .bench bench-results.json resume-results.json dask-results.json .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
