"""Packaged drum grooves (Groove MIDI Dataset derivative) and their builder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genre_core.config import GENRES
from genre_core.synth import grooves as gr
from genre_core.synth.outside_styles import OUTSIDE_NAMES

REPO = Path(__file__).resolve().parents[2]
GROOVE_SRC = REPO.parent / "shared" / "data" / "groove-midi"
BUILDER = REPO / "tools" / "build_grooves.py"


def test_packaged_file_loads_and_is_small():
    assert gr.DATA_PATH.is_file()
    assert gr.DATA_PATH.stat().st_size <= 3 * 1024 * 1024
    assert (gr.DATA_PATH.parent / "GROOVES_ATTRIBUTION.md").is_file()
    grooves = gr.load_grooves()
    assert set(grooves) >= {"rock", "funk", "jazz", "hiphop", "soul", "punk", "pop", "reggae", "country"}
    for style, gs in grooves.items():
        assert gs, style
        for g in gs:
            assert isinstance(g, gr.Groove)
            assert g.style == style
            assert g.bpm > 0 and g.drummer


def test_load_is_cached_but_returns_fresh_containers():
    a = gr.load_grooves()
    b = gr.load_grooves()
    assert a == b and a is not b
    assert a["rock"][0] is b["rock"][0]
    a["rock"].clear()
    assert gr.load_grooves()["rock"]


def test_events_in_window_and_general_midi():
    for gs in gr.load_grooves().values():
        for g in gs:
            assert len(g.events) >= 8
            beats = [b for b, _, _ in g.events]
            assert beats == sorted(beats)
            for beat, note, vel in g.events:
                assert -gr.EARLY <= beat < gr.WINDOW_BEATS - gr.EARLY + 1e-9
                assert 35 <= note <= 81
                assert 1 <= vel <= 127


def test_human_timing_kept():
    # not quantised: a good share of hits sit off the 16th grid by more than a millisecond-ish
    evs = [b for g in gr.load_grooves()["rock"] for b, _, _ in g.events]
    off = np.abs(np.array(evs) * 4 - np.round(np.array(evs) * 4))
    assert np.mean(off > 0.02) > 0.3


def test_genre_mapping_covers_all_genres_and_outside_styles():
    assert set(gr.GENRE_GROOVE_STYLES) == set(GENRES) | set(OUTSIDE_NAMES)
    assert gr.GENRE_GROOVE_STYLES["classical"] == ()


@pytest.mark.parametrize("genre", [g for g in (*GENRES, *OUTSIDE_NAMES) if gr.GENRE_GROOVE_STYLES[g]])
def test_pick_groove_for_every_drummed_genre(genre):
    pools = gr.genre_pools(genre)
    assert pools, genre
    assert pools[0][0] == gr.GENRE_GROOVE_STYLES[genre][0]  # the primary style has grooves
    rng = np.random.default_rng(0)
    allowed = {g for _, pool in pools for g in pool}
    picks = [gr.pick_groove(genre, rng) for _ in range(50)]
    assert all(p is not None and p in allowed for p in picks)
    assert len({(p.source, p.bar) for p in picks}) > 5  # variety


def test_pick_groove_classical_none_unknown_raises():
    rng = np.random.default_rng(0)
    assert gr.pick_groove("classical", rng) is None
    with pytest.raises(ValueError):
        gr.pick_groove("polka", rng)


def test_pick_groove_deterministic_and_bpm_preference():
    a = [gr.pick_groove("rock", np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(1)
    for _ in range(30):
        g = gr.pick_groove("rock", rng, bpm=120)
        assert abs(g.bpm / 120 - 1) <= 0.3


@pytest.mark.parametrize("n_bars", [1, 2, 3, 4, 7, 8])
def test_groove_events_tiling(n_bars):
    g = gr.load_grooves()["rock"][0]
    ev = gr.groove_events(g, n_bars)
    assert ev == sorted(ev)
    beats = np.array([b for b, _, _ in ev])
    assert beats.min() >= 0.0 and beats.max() < 4 * n_bars
    assert set((beats // 4).astype(int)) == set(range(n_bars))  # every bar played, none beyond
    # each full window repeat carries the whole groove
    assert len(ev) >= (n_bars // 2) * len(g.events)
    if n_bars % 2 == 0:
        assert len(ev) == (n_bars // 2) * len(g.events)
    assert gr.groove_events(g, 0) == []


def test_groove_events_swing():
    g = gr.Groove(style="t", bpm=100, drummer="x", events=((0.0, 36, 100), (0.5, 42, 80), (1.0, 38, 90)))
    straight = gr.groove_events(g, 1)
    assert [b for b, _, _ in straight] == [0.0, 0.5, 1.0]
    swung = gr.groove_events(g, 1, swing=1.0)
    assert [b for b, _, _ in swung] == pytest.approx([0.0, 2 / 3, 1.0], abs=1e-4)
    with pytest.raises(ValueError):
        gr.groove_events(g, 1, swing=1.5)


@pytest.mark.slow
@pytest.mark.skipif(not (GROOVE_SRC / "info.csv").is_file(), reason="Groove MIDI Dataset not present")
def test_rebuild_is_identical(tmp_path):
    pytest.importorskip("mido")
    out = tmp_path / "grooves.json.gz"
    subprocess.run(
        [sys.executable, str(BUILDER), "--src", str(GROOVE_SRC), "--out", str(out), "--quiet"],
        check=True,
        cwd=REPO,
        timeout=600,
    )
    assert out.read_bytes() == gr.DATA_PATH.read_bytes()
