# fibosms — the two commands: `make run` (the local stack) and `make test` (everything CI runs).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the pinned dependency sets, with hashes: what CI, the image and every checkout install
LOCK     := requirements.lock
DEV_LOCK := requirements-dev.lock
# `make lock` only: the resolver that writes them (pip installs from them)
UV_VERSION ?= 0.13.9
# one resolution for every platform and Python >= 3.11 (markers where they differ)
LOCK_TARGET := --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' --quiet

.PHONY: run test lint typecheck imports unit integration system sandbox migrate clean help lock lock-upgrade bytecode

help:
	@echo "make run    - the whole local stack (SQLite + sandbox gateway, worker, beat)"
	@echo "make test   - ruff, mypy and the whole test suite (what CI runs)"
	@echo "make unit | integration | lint | typecheck | imports | sandbox | migrate | bytecode | clean"
	@echo "make lock   - refresh the lock files after a change to pyproject.toml's dependencies"
	@echo "make lock-upgrade - the same, moving every pin to the newest allowed version"

# dependencies exactly as locked (hashes checked), then the project itself on top without
# resolving anything; pip check fails if pyproject.toml asks for something the lock lacks
$(STAMP): pyproject.toml $(DEV_LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check || { echo "the lock is behind pyproject.toml: run make lock"; exit 1; }
	$(MAKE) --no-print-directory bytecode
	touch $(STAMP)

# the project's own bytecode, as pip writes it for an installed package: an editable
# install has none, and where PYTHONDONTWRITEBYTECODE is set every command would compile
# its modules again (about 40 ms of a `fibosms send`); a stale file is simply recompiled
bytecode:
	$(BIN)/python -m compileall -q worker producer fibosms celeryconfig.py

# the dev lock (runtime + dev + bench) is resolved first; the runtime lock (deploy/Dockerfile)
# is then held to the same versions, so the image runs what the tests ran. Existing pins are
# kept unless pyproject.toml no longer allows them: lock-upgrade moves them.
$(BIN)/uv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'

lock: $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra bench $(LOCK_TARGET) $(UPGRADE) -o $(DEV_LOCK)
	$(BIN)/uv pip compile pyproject.toml --constraint $(DEV_LOCK) $(LOCK_TARGET) -o $(LOCK)

lock-upgrade:
	$(MAKE) lock UPGRADE=--upgrade

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

# the layer contracts in pyproject.toml ([tool.importlinter])
imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

test: lint typecheck imports
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./.venv -prune -o -name __pycache__ -prune -exec rm -rf {} +
