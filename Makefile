# Two commands set everything up: `make run` and `make test`. Both create the
# virtual environment and install the project on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test lint typecheck protos protos-check buf bench clean

help:
	@echo "make run    start every llmgw service locally (SQLite, in-process events, simulated provider)"
	@echo "make test   lint, type-check, check the contracts and run the whole test suite"
	@echo "make bench  run the slow benchmarks and load tests"
	@echo "make protos regenerate Python code from protos/"

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "llmgw needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-e tests/conformance/third_party/llmgw-echo-adapter
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/llmgw run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

buf: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash tools/buf_checks.sh

protos: install
	$(BIN)/python tools/gen_protos.py

protos-check: install
	$(BIN)/python tools/gen_protos.py --check

test: lint typecheck buf
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m pytest -m slow -o addopts="-ra" bench tests $(PYTEST_ARGS)

clean:
	rm -rf .build .llmgw .mypy_cache .pytest_cache .ruff_cache
