# glucokit: `make demo` and `make test` install what they need, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export SUPABASE_TELEMETRY_DISABLED := 1
export DO_NOT_TRACK := 1
# prisma validate only checks that this names an existing file and never runs it;
# without it the CLI tries to download the native engine (no network here).
export PRISMA_SCHEMA_ENGINE_BINARY ?= /dev/null

.PHONY: install demo test lint typecheck pytest pgtap pytest-pg15 prisma-validate clean

install: $(VENV)/.installed node_modules/.installed $(VENV)/.pgtap-installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,simulate]'
	touch $@

# pgTAP goes into the embedded PostgreSQL inside the venv, so it is redone with the venv.
$(VENV)/.pgtap-installed: $(VENV)/.installed tests/install-pgtap
	tests/install-pgtap
	touch $@

# The lock lists the Supabase CLI's binary package for every platform, as the public
# registry would (the registry mirror here serves only linux-x64, and `npm install`
# run here drops the others again: re-add them before committing a new lock).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: install
	$(BIN)/glucokit demo

lint: install
	$(BIN)/ruff check lib tests bench workers
	$(BIN)/ruff format --check lib tests bench workers
	$(BIN)/lint-imports --no-cache --no-logo
	node --check prisma/tools/schema-diff.mjs
	node --check prisma/tools/pg-adapter.mjs
	node_modules/.bin/tsc --noEmit -p examples/supabase-js

typecheck: install
	$(BIN)/mypy

prisma-validate: install
	node_modules/.bin/prisma validate --schema prisma/schema.prisma

pytest: install
	$(BIN)/pytest

# The pgTAP tests under supabase/tests, run by pg_prove against the migrated embedded database.
pgtap: install
	$(BIN)/glucokit db migrate
	$(BIN)/glucokit db test

# The database-heavy suites on PostgreSQL 15, the oldest major version hosted Supabase runs.
# Debian's PostgreSQL 15 has no pgvector: the migrations that need it are left out there and
# the tests marked full_schema skip (see tests/conftest.py).
PG15_TESTS := constraints rls_attacks retrain_queue ingest registry feedback export model_store api \
	monitoring privacy experiments
pytest-pg15: install
	tests/with-postgres-15 $(BIN)/pytest -q $(PG15_TESTS:%=tests/test_%.py)

test: lint typecheck prisma-validate pytest pgtap pytest-pg15

clean:
	rm -rf $(VENV) node_modules .glucokit
