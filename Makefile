# musicid: `make demo` runs the main job, `make test` runs the test suite.
# Both install what they need on a fresh Debian machine (apt, venv, pip).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup test demo lint bench clean

$(STAMP): pyproject.toml
	@if ! ldconfig -p 2>/dev/null | grep -q libfluidsynth.so.3; then \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y --no-install-recommends libfluidsynth3; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0          # the CPU wheel; must come before the package
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check musicid tests
	$(BIN)/mypy musicid

clean:
	rm -rf $(VENV) musicid-index demo

demo: $(STAMP)
	MUSICID=$(BIN)/musicid bash scripts/demo.sh

bench: $(STAMP)
	@command -v fluidsynth >/dev/null || $(SUDO) apt-get install -y --no-install-recommends fluidsynth
	PY=$(BIN)/python bash bench/run_all.sh
