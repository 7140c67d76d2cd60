# genre-tagger: `make demo` and `make test` work on a fresh machine (they install everything first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo_out
SF2    := /usr/share/sounds/sf2
SF3    := /usr/share/sounds/sf3

CORPUS ?= data
# soundfonts of the rendered catalogs: short names of genre_core/synth/render.py SOUNDFONTS or .sf2/.sf3 paths
SOUNDFONTS ?= all

.PHONY: setup system-deps demo models test lint bench clean

setup: system-deps $(STAMP)

# FluidSynth and the General MIDI soundfonts of genre_core/synth/render.py SOUNDFONTS (each catalog song draws
# one of them), from Debian, only the missing ones. Never the MuseScore General soundfonts: they are reserved
# for held-out evaluation outside this project (make-catalog and training refuse them).
SOUNDFONT_FILES := $(SF2)/TimGM6mb.sf2:timgm6mb-soundfont $(SF2)/FluidR3_GM.sf2:fluid-soundfont-gm \
	$(SF3)/FluidR3Mono_GM.sf3:fluidr3mono-gm-soundfont $(SF2)/sf_GMbank.sf2:csound-soundfont \
	$(SF2)/OPL-3_FM_128M.sf2:opl3-soundfont

system-deps:
	@missing=""; command -v fluidsynth >/dev/null || missing="fluidsynth"; \
	for entry in $(SOUNDFONT_FILES); do \
		[ -f "$${entry%%:*}" ] || missing="$$missing $${entry##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$$missing >/dev/null; \
	fi
	@# headless Chromium opens the evaluation report in tests/integration/test_report.py
	@if ! command -v chromium >/dev/null; then \
		echo "installing chromium (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium >/dev/null; \
	fi

# torch first (a CPU build), then the pinned dependencies, then the project itself.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# The main job end to end on local files and a local Ray: a fresh catalog (in-domain songs plus a few
# "shifted" recordings that the CNN often finds ambiguous), labelled with the shipped models/default bundles,
# then evaluated against the true genres; the last line printed is the path of the HTML report.
demo: setup
	$(BIN)/python -m jobs.make_catalog --per-genre 8 --seed 1 --soundfonts $(SOUNDFONTS) --out $(DEMO)/catalog --preview $(DEMO)/catalog/preview.png
	$(BIN)/python -m jobs.make_catalog --per-genre 2 --seed 1 --soundfonts $(SOUNDFONTS) --preset shifted --out $(DEMO)/catalog-shifted
	$(BIN)/python -c "import pandas as pd; pd.concat([pd.read_parquet('$(DEMO)/catalog/catalog.parquet'), \
		pd.read_parquet('$(DEMO)/catalog-shifted/catalog.parquet')]).to_parquet('$(DEMO)/catalog.parquet')"
	$(BIN)/python -m jobs.label --catalog $(DEMO)/catalog.parquet --output $(DEMO)/labels --config configs/label-local.yaml
	$(BIN)/python -m jobs.labels show --output $(DEMO)/labels
	$(BIN)/python -m jobs.labels history --output $(DEMO)/labels
	@echo "labels: the Iceberg table genre_tagger.labels, catalog $(abspath $(DEMO))/labels/catalog.db, warehouse $(abspath $(DEMO))/labels/warehouse"
	$(BIN)/python -m jobs.evaluate --labels $(DEMO)/labels --truth $(DEMO)/catalog.parquet \
		--ablation benchmarks/RESULTS.md --out $(DEMO)/report

# Rebuild the shipped default bundle from scratch: the corpus (100 songs/genre over the five soundfonts) + the
# shifted split, then the musicnn genre model (its tau/margin: the highest coverage with accuracy >= 0.90 on
# validation songs of soundfonts held out in turn), then its calibrated confidence and out-of-taxonomy rule
# (genre-job calibrate, on the corpus's validation songs, 300 new validation songs and validation songs of the
# outside styles; OPL-3 is left out of the outside songs: benchmarks/outside_taxonomy.py tests the rule on outside
# songs of that soundfont). Then the GAN stage's two generators: pairs (each train song, 2 re-voicings of it -> its
# clean FluidR3 render), G trained on Ray Train; the same songs' pairs toward TimGM6mb renders, a second G trained
# and bundled with the first; their weight and threshold chosen on the validation songs (README, "The GAN stage").
OUTSIDE_SOUNDFONTS := timgm6mb,fluidr3,fluidr3mono,csound
models: setup
	$(BIN)/python -m jobs.make_catalog --per-genre 100 --seed 0 --soundfonts $(SOUNDFONTS) --out $(CORPUS)/corpus
	$(BIN)/python -m jobs.make_catalog --per-genre 20 --seed 0 --soundfonts $(SOUNDFONTS) --preset shifted --out $(CORPUS)/shifted
	$(BIN)/python -m jobs.make_catalog --per-genre 30 --seed 7 --split val --soundfonts $(SOUNDFONTS) --out $(CORPUS)/val
	$(BIN)/python -m jobs.make_catalog --per-genre 80 --seed 0 --genres outside --soundfonts $(OUTSIDE_SOUNDFONTS) \
		--out $(CORPUS)/outside
	$(BIN)/python -m jobs.train cnn --catalog $(CORPUS)/corpus/catalog.parquet --out models/default/cnn \
		--config configs/musicnn.yaml --target-accuracy 0.90
	$(BIN)/python -m jobs.calibrate --cnn models/default/cnn --catalog $(CORPUS)/corpus/catalog.parquet \
		--catalog $(CORPUS)/val/catalog.parquet --outside $(CORPUS)/outside/catalog.parquet --out models/default/cnn
	$(BIN)/python -m jobs.make_catalog --per-genre 100 --seed 0 --soundfonts $(SOUNDFONTS) --reference-soundfont fluidr3 \
		--revoiced 2 --out $(CORPUS)/paired
	$(BIN)/python -m jobs.train gan --cnn models/default/cnn --catalog $(CORPUS)/paired/catalog.parquet \
		--tune-catalog $(CORPUS)/val/catalog.parquet --seed 0 --out $(CORPUS)/gan-fluidr3
	$(BIN)/python -m jobs.make_catalog --per-genre 100 --seed 0 --soundfonts $(SOUNDFONTS) --reference-soundfont timgm6mb \
		--revoiced 2 --out $(CORPUS)/paired-timgm
	$(BIN)/python -m jobs.train gan --cnn models/default/cnn --catalog $(CORPUS)/paired-timgm/catalog.parquet \
		--with $(CORPUS)/gan-fluidr3 --tune-catalog $(CORPUS)/val/catalog.parquet --seed 0 --out models/default/gan

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .

# the layout of label-cluster.yaml (a decode pool feeding the CNN actors) on this machine's CPUs
SEPARATE_POOLS := decode.in_cnn_actors=false decode.concurrency=2 decode.num_cpus=0.5 cnn.num_cpus=0.25 decode.songs_per_block=16

# Every benchmark of benchmarks/ but gpu.py (run it on a GPU machine), each appending its figures to
# benchmarks/RESULTS.md (about 40 minutes on 2 cores; renders the corpus first when $(CORPUS) has none). Run it on
# an otherwise idle machine.
bench: setup $(CORPUS)/corpus/catalog.parquet $(CORPUS)/shifted/catalog.parquet $(CORPUS)/outside/catalog.parquet \
		$(CORPUS)/outside-opl3/catalog.parquet $(CORPUS)/test/catalog.parquet
	$(BIN)/pip install -q --disable-pip-version-check py-spy==0.4.1   # for profile_job.py
	$(BIN)/python benchmarks/frontend.py --files $(CORPUS)/corpus/audio --n 100
	$(BIN)/python benchmarks/frontend.py --sample-rate 44100
	$(BIN)/python benchmarks/cnn_inference.py
	$(BIN)/python benchmarks/end_to_end.py --catalog $(CORPUS)/corpus/catalog.parquet --limit 1000 --no-gan
	$(BIN)/python benchmarks/end_to_end.py --catalog $(CORPUS)/corpus/catalog.parquet --limit 3000 --no-gan
	$(BIN)/python benchmarks/end_to_end.py --catalog $(CORPUS)/corpus/catalog.parquet --limit 20000 --no-gan
	$(BIN)/python benchmarks/pool_sizes.py --catalog $(CORPUS)/corpus/catalog.parquet --limit 3000 --no-gan \
		--variant "" --variant "$(SEPARATE_POOLS)" --variant "decode.songs_per_block=16"
	$(BIN)/python benchmarks/memory.py --catalog $(CORPUS)/corpus/catalog.parquet --sizes 250,2500
	$(BIN)/python benchmarks/train_scale.py --catalog $(CORPUS)/corpus/catalog.parquet --repeats 1,4
	$(BIN)/python benchmarks/gan_cost.py --catalog $(CORPUS)/shifted/catalog.parquet --limit 200
	$(BIN)/python benchmarks/profile_job.py --catalog $(CORPUS)/corpus/catalog.parquet --limit 1000
	$(BIN)/python benchmarks/scale.py --design store --tracks 1000000
	$(BIN)/python benchmarks/scale.py --design store --tracks 3000000
	$(BIN)/python benchmarks/scale.py --design table --tracks 10000000
	$(BIN)/python benchmarks/outside_taxonomy.py --cnn models/default/cnn --catalog $(CORPUS)/corpus/catalog.parquet \
		--catalog $(CORPUS)/test/catalog.parquet --outside $(CORPUS)/outside/catalog.parquet --outside-heldout $(CORPUS)/outside-opl3/catalog.parquet --record

$(CORPUS)/corpus/catalog.parquet:
	$(BIN)/python -m jobs.make_catalog --per-genre 100 --seed 0 --soundfonts $(SOUNDFONTS) --out $(CORPUS)/corpus

$(CORPUS)/shifted/catalog.parquet:
	$(BIN)/python -m jobs.make_catalog --per-genre 20 --seed 0 --soundfonts $(SOUNDFONTS) --preset shifted --out $(CORPUS)/shifted

$(CORPUS)/outside/catalog.parquet:
	$(BIN)/python -m jobs.make_catalog --per-genre 80 --seed 0 --genres outside --soundfonts $(OUTSIDE_SOUNDFONTS) \
		--out $(CORPUS)/outside

# outside styles through the soundfont the out-of-taxonomy rule was not chosen on (new songs: seed 1)
$(CORPUS)/outside-opl3/catalog.parquet:
	$(BIN)/python -m jobs.make_catalog --per-genre 20 --seed 1 --genres outside --soundfonts opl3 --out $(CORPUS)/outside-opl3

# new test songs of the taxonomy (seed 13), pooled with the corpus's test split to measure calibration
$(CORPUS)/test/catalog.parquet:
	$(BIN)/python -m jobs.make_catalog --per-genre 30 --seed 13 --split test --soundfonts $(SOUNDFONTS) --out $(CORPUS)/test

clean:
	rm -rf $(DEMO) .pytest_cache
