# genre-tagger: `make demo` and `make test` work on a fresh machine (they install everything first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo_out
SF2    := /usr/share/sounds/sf2

.PHONY: setup system-deps demo test lint bench clean

setup: system-deps $(STAMP)

# FluidSynth and General MIDI soundfonts from Debian, only when missing:
# TimGM6mb (6 MB) renders the default corpus, FluidR3 (148 MB) the shifted split.
system-deps:
	@if ! command -v fluidsynth >/dev/null || [ ! -f $(SF2)/TimGM6mb.sf2 ] || [ ! -f $(SF2)/FluidR3_GM.sf2 ]; then \
		echo "installing fluidsynth and soundfonts (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			fluidsynth timgm6mb-soundfont fluid-soundfont-gm >/dev/null; \
	fi

# torch first (a CPU build), then the pinned dependencies, then the project itself.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: setup
	$(BIN)/python -m jobs.make_catalog --per-genre 10 --out $(DEMO)/catalog --preview $(DEMO)/catalog/preview.png
	@echo "demo catalog: $(abspath $(DEMO))/catalog/catalog.parquet"

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/frontend.py

clean:
	rm -rf $(DEMO) .pytest_cache
