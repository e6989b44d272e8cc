# glucokit: `make demo` and `make test` install what they need, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export SUPABASE_TELEMETRY_DISABLED := 1
export DO_NOT_TRACK := 1
# prisma validate/format need only this to be set (any path): nothing is downloaded.
export PRISMA_SCHEMA_ENGINE_BINARY ?= /nonexistent-prisma-schema-engine

.PHONY: install demo test lint typecheck pytest prisma-validate clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: install
	$(BIN)/glucokit demo

lint: install
	$(BIN)/ruff check lib tests
	$(BIN)/ruff format --check lib tests

typecheck: install
	$(BIN)/mypy

prisma-validate: install
	npx --no-install prisma validate --schema prisma/schema.prisma

pytest: install
	$(BIN)/pytest

test: lint typecheck prisma-validate pytest

clean:
	rm -rf $(VENV) node_modules .glucokit
