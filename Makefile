# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test browser lint schemas bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

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
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

schemas: $(STAMP)
	$(BIN)/python -m agentwatch.schemas.jsonschema

bench: $(STAMP)
	$(BIN)/python bench/ingest_file.py
	$(BIN)/python bench/ingest_http.py
	$(BIN)/python bench/detection.py
	$(BIN)/python bench/check_speed.py

clean:
	rm -rf $(VENV) .agentwatch
