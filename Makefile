# One entry point for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run pipeline test test-fast lint format bench clean-data install install-dev browser screenshots

# Debian's python3 ships without venv; install it from the package manager when missing.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv && \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

install: $(STAMP)
install-dev: $(DEV_STAMP)

HOST ?= 127.0.0.1
PORT ?= 8000
PREFECT_PORT ?= $(or $(FLEET_PREFECT_PORT),4200)

## make run: venv, install, embedded database, migrations, demo data, then the web server
## (dashboard, REST API, live streams) with the demo logins printed, and beside it the
## pipeline: a local Prefect server (UI on PREFECT_PORT) serving the scheduled flows.
## Ctrl-C (or the web server ending) stops both.
run: $(STAMP)
	$(BIN)/fleet db upgrade
	$(BIN)/fleet demo-data --vehicles 200 --locations 4 --seed 7 --if-empty --feeds
	@echo "Demo logins (demo data only; create real users with 'fleet user add'):"
	@$(BIN)/fleet demo-logins
	@echo "fleet: web http://$(HOST):$(PORT)/  Prefect UI http://127.0.0.1:$(PREFECT_PORT)/"
	@FLEET_PREFECT_PORT=$(PREFECT_PORT) $(BIN)/fleet pipeline serve & pipeline=$$!; \
	  trap 'kill $$pipeline 2>/dev/null; wait $$pipeline 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/fleet serve --host $(HOST) --port $(PORT)

## make pipeline: only the pipeline (local Prefect server and the scheduled flows).
pipeline: $(STAMP)
	$(BIN)/fleet db upgrade
	FLEET_PREFECT_PORT=$(PREFECT_PORT) $(BIN)/fleet pipeline serve

# Page tests drive Debian's Chromium (Playwright's own browser download does not work here).
browser:
	@command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

# The suite runs across the cores (pytest-xdist): each worker has its own database and test
# server; whole files go to one worker, so a file's shared fixtures are set up once.
TEST_WORKERS ?= auto
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile

## make test: venv with dev extras, lint, the whole suite with coverage of the engine.
test: $(DEV_STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(PYTEST_PARALLEL) --cov --cov-report=term --cov-fail-under=90

## make test-fast: the inner loop, without the slow and the browser tests (CI runs them all).
test-fast: $(DEV_STAMP)
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not slow and not browser" -q

## make screenshots: refresh docs/screenshots/ (every view over a demo fleet, in Chromium).
screenshots: $(DEV_STAMP) browser
	FLEET_SCREENSHOTS=1 $(BIN)/pytest tests/dashboard/test_screenshots.py tests/counter/test_screenshots.py tests/counter/test_scan.py -q

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The stream and load clients (websockets, httpx) come with the dev extras.
bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/realtime.py
	$(BIN)/python benchmarks/api_load.py
	$(BIN)/python benchmarks/ingest.py

clean-data:
	rm -rf .data
