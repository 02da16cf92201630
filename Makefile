# Every target creates .venv itself when it is missing: `make test` works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test test-fast test-repeat lint format demo bench bench-venv bench-provider chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The whole suite, and beside it the engine's tests on an embedded Valkey (when the suite runs
# on a given Redis) and on a local Redis Cluster (3 masters, 3 replicas) the tests start.
test: $(STAMP)
	bash tests/run_suites.sh $(BIN)/python $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

# The proof that the suite does not flake: RUNS runs in a row while LOAD busy processes keep
# the cores busy (e.g. `make test-repeat RUNS=3 PYTEST_ARGS="tests/engine tests/ops"`).
RUNS ?= 10
LOAD ?= 2
test-repeat: $(STAMP)
	$(BIN)/python tests/repeat_under_load.py --runs $(RUNS) --load $(LOAD) -- $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy pipeline --ignore-missing-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: $(STAMP)
	$(BIN)/python -m pipeline run "Technology" --auto-approve

# The peers pin an older redis-py (arq, bullmq need < 6): they get a venv of their own.
BENCH_VENV := .venv-bench
bench-venv:
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e '.[bench,testing]'

bench: bench-venv
	$(BENCH_VENV)/bin/python -m bench $(BENCH_ARGS)

# The pipeline against the provider simulator (docs/performance.md); needs a PostgreSQL where
# it may create a database: TEST_DATABASE_URL or DATABASE_URL.
PROVIDER_ARGS ?= --sectors 10 --workers 2 --configs per-queue
bench-provider: bench-venv
	$(BENCH_VENV)/bin/python -m bench.provider_run $(PROVIDER_ARGS)

# The long chaos suite (docs/reliability.md): thousands of jobs, several worker processes, each
# fault again and again; prints the table (a short version runs inside `make test`:
# tests/chaos). E.g. `make chaos CHAOS_ARGS="--only kill-9 redis-oom"`.
CHAOS_ARGS ?=
chaos: $(STAMP)
	$(BIN)/python tests/chaos/run_chaos.py $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache .test-repeat
