# Two entry points a new user needs (see README): `make demo` and `make test`.
# Each creates .venv on first use; everything else comes from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.sandbox: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[sandbox]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.sandbox

demo: $(VENV)/.sandbox  ## rotate access keys in a local moto sandbox (no AWS account)
	$(BIN)/rotator demo

test: $(VENV)/.dev  ## the test suite: moto server over HTTP, real subprocesses
	$(BIN)/pytest -n auto

lint: $(VENV)/.dev  ## ruff, mypy --strict and vulture (dead code)
	$(BIN)/ruff check rotator tests benchmarks
	$(BIN)/ruff format --check rotator tests benchmarks
	$(BIN)/mypy
	$(BIN)/vulture

check: lint test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
