# vmcatcher developer entry points. A fresh machine needs only: make demo; make test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# The throw-away PostgreSQL server of the second test pass (tests/support/postgres.py).
PGTEST := $(BIN)/python -m tests.support.postgres
# The throw-away Glance of the vmcatcher_glance tests (tests/support/glance.py).
GLANCETEST := $(BIN)/python -m tests.support.glance

.PHONY: test test-sqlite test-postgresql postgres-start postgres-stop demo lint format bench fuzz \
	system-deps venv clean glance-deps glance-start glance-stop

## Install what building M2Crypto needs (swig, libssl-dev, a compiler, Python headers).
system-deps:
	@missing=""; \
	command -v swig >/dev/null 2>&1 || missing="$$missing swig"; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	dpkg -s libssl-dev >/dev/null 2>&1 || missing="$$missing libssl-dev"; \
	[ -f "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] \
	  || missing="$$missing python3-dev"; \
	$(PYTHON) -c 'import ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing with apt:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): setup.py pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,postgresql,openstack]'
	@touch $(STAMP)

venv: $(STAMP)

## Lint, format check, type check, the whole suite on SQLite, then the database tests again
## on PostgreSQL.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@$(MAKE) --no-print-directory glance-deps
	@$(MAKE) --no-print-directory test-sqlite
	@$(MAKE) --no-print-directory test-postgresql

test-sqlite: $(STAMP)
	@echo "===== test pass 1/2: the whole suite on SQLite ====="
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

## Tests marked `db` against a fresh PostgreSQL server (apt-installed if missing, always stopped).
test-postgresql: $(STAMP)
	@echo "===== test pass 2/2: the database tests (-m db) on PostgreSQL ====="
	@set -e; \
	state=".pgtest/make-$$$$.json"; \
	trap '$(PGTEST) stop --state "$$state"' EXIT; \
	trap 'exit 130' INT TERM; \
	url="$$($(PGTEST) start --state "$$state")"; \
	VMCATCHER_TEST_DATABASE="$$url" $(BIN)/pytest -n 2 -m db $(PYTEST_ARGS)

## What the Glance tests need: qemu-utils (apt, if qemu-img is missing) and Glance + gunicorn
## in .glance-venv (pip, once). Each pytest worker then starts its own Glance (tests/glance).
glance-deps: $(STAMP)
	@$(GLANCETEST) install >/dev/null

## A Glance for trying vmcatcher_glance by hand; prints its endpoint (auth_type: none).
glance-start: $(STAMP)
	@$(GLANCETEST) start

glance-stop: $(STAMP)
	@$(GLANCETEST) stop

## A PostgreSQL test server for running tests by hand; prints its URL for VMCATCHER_TEST_DATABASE.
postgres-start: $(STAMP)
	@$(PGTEST) start

postgres-stop: $(STAMP)
	@$(PGTEST) stop

## The main job end to end on an embedded default (SQLite, a local test CA and list server).
demo: $(STAMP)
	$(BIN)/python -m tests.support.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Random exploration: every property test with random seeds and 20x the examples of the
## gate (docs/robustness.md, "Fuzzing"). Not part of `make test`, whose examples are fixed.
## FUZZ_ARGS passes pytest options, e.g. FUZZ_ARGS=--hypothesis-seed=1234 to replay a run.
FUZZ_ARGS ?=
fuzz: $(STAMP)
	VMCATCHER_HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -n 2 -m hypothesis -p no:cacheprovider --timeout 0 \
	  --hypothesis-show-statistics $(FUZZ_ARGS)

## Benchmarks (not tests): results go to docs/benchmarks.md by hand.
bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis .glance-venv .glancetest
