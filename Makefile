# Everything bootstraps .venv from pyproject.toml; only Python 3.11+ and make are needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-faults serve bench lint clean screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" sh scripts/demo.sh

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	@$(BIN)/python -m tests.browser
	$(BIN)/python -m pytest -q

# Pictures of the main pages into docs/ (needs a Chromium: apt-get install chromium).
screenshots: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/screenshots.py

# Faults under load against real gateway processes (about 2 minutes); prints recovery times
# and latencies during each fault.
test-faults: $(STAMP)
	$(BIN)/python -m pytest -q -s -m faults tests/faults

# Figures, not pass/fail: see terminal-sim bench --help (BENCH_ARGS="--port N ..." to pass options).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/terminal-sim bench --out-dir bench-out $(BENCH_ARGS)

serve: $(STAMP)
	$(BIN)/pos-gateway serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
