# Two commands on a fresh machine: `make demo` and `make test`.
# PYTHON: a supported interpreter (3.11, 3.12 or 3.13), found on PATH or in pyenv by scripts/find-python.
PYTHON ?= $(shell scripts/find-python)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test browser lint typecheck schemas bench clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "no Python 3.11, 3.12 or 3.13 found: install one, or run make PYTHON=/path/to/python"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/agentwatch demo

# The end-to-end test drives the real dashboard in Debian's headless Chromium.
browser:
	@scripts/install-browser

test: $(STAMP) browser
	$(BIN)/ruff check .
	PYTHON=$(BIN)/python scripts/typecheck
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	PYTHON=$(BIN)/python scripts/typecheck

schemas: $(STAMP)
	$(BIN)/python -m agentwatch.schemas.jsonschema

# Every benchmark, as docs/benchmarks.md runs it (tens of minutes: check_speed builds a 10-million-event store,
# which the dashboard benchmark then loads).
BENCH_DIR := build/bench
bench: $(STAMP)
	$(BIN)/python bench/ingest_file.py
	$(BIN)/python bench/ingest_http.py
	$(BIN)/python bench/ingest_otlp.py
	$(BIN)/python bench/detection.py
	$(BIN)/python bench/live_vs_backtest.py
	$(BIN)/python bench/check_speed.py --dir $(BENCH_DIR)/speed
	$(BIN)/python bench/dashboard.py --home $(BENCH_DIR)/speed/store-big
	$(BIN)/python bench/alerts.py
	$(BIN)/python bench/reliability.py
	$(BIN)/python bench/check_realdata.py
	$(BIN)/python bench/small_files.py

clean:
	rm -rf $(VENV) .agentwatch build
