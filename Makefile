# fibosms — the two commands: `make run` (the local stack) and `make test` (everything CI runs).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit integration system sandbox migrate clean help

help:
	@echo "make run    - the whole local stack (SQLite + sandbox gateway, worker, beat)"
	@echo "make test   - ruff, mypy and the whole test suite (what CI runs)"
	@echo "make unit | integration | lint | typecheck | sandbox | migrate | clean"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

migrate: $(STAMP)
	$(BIN)/fibosms db upgrade

run: migrate
	$(BIN)/fibosms dev

sandbox: $(STAMP)
	$(BIN)/fibosms sandbox

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

test: lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
