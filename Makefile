# Two commands do everything on a fresh machine with Python 3.11:
#   make run    set up .venv, write the demo archive, run the workflow (snakemake --cores 2)
#   make test   set up .venv and the system services, run the whole test suite
# While working, `make test-fast` (about 2 minutes on 2 cores) runs the unit and small workflow tests; see
# docs/testing.md. PYTEST_ARGS go to pytest: make test-fast PYTEST_ARGS="tests/test_zarr.py -x"
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
CONFIG ?= config/config.yaml
PYTEST_ARGS ?=
PYTEST := PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest
# What test-fast leaves out (markers in pyproject.toml, docs/testing.md).
FAST_MARKERS := not slow and not services and not chaos

.PHONY: install test-deps run demo plan test test-fast lint format clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python tools/make_demo_archive.py --configfile "$(CONFIG)" --workers $(CORES)

run: demo
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile "$(CONFIG)"

# What a run on CONFIG will read (items, files, bytes, requests), from its searches alone.
plan: demo
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake plan --cores $(CORES) --configfile "$(CONFIG)"
	@cat results/plan.txt

# System services the tests run for real: Chromium (report rendering), PostgreSQL + pgstac
# (a real STAC API server) and a single-node SLURM cluster. Each script is idempotent; when one
# cannot install, its tests are skipped with a message saying so.
test-deps: $(STAMP)
	-bash tests/install_system_deps.sh
	-bash tests/install_pgstac.sh
	-bash tests/install_slurm.sh

# Everything, the tests of the system services included.
test: test-deps
	$(PYTEST) $(PYTEST_ARGS)

# Unit tests and small workflow runs; no system service, nothing marked slow or chaos. On CORES
# processes (pytest-xdist): its workflow runs spend much of their time waiting on Snakemake.
test-fast: $(STAMP)
	$(PYTEST) -n $(CORES) --dist loadfile -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check .
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --lint
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt .

clean:
	rm -rf results logs .snakemake .sitsflow
