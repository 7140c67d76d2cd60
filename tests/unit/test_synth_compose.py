"""Composition: every genre's vocabulary is valid, plans are deterministic, swing and MIDI are right."""

from __future__ import annotations

import io

import mido
import numpy as np
import pytest

from genre_core.config import GENRES
from genre_core.synth import compose as C
from genre_core.synth.styles import STYLES
from genre_core.synth.theory import chord_pitches, parse_numeral


def test_every_genre_has_a_style_with_valid_vocabulary():
    assert set(STYLES) == set(GENRES)
    for style in STYLES.values():
        for progression, _ in style.progressions:
            for numeral, beats in progression:
                parse_numeral(numeral)
                assert beats > 0
        for pattern in style.drum_patterns:
            assert all(len(grid) == 16 and set(grid) <= set("Xxo.") for grid in pattern.values())


def test_roman_numerals():
    assert parse_numeral("bVII7") == (10, "7")
    assert parse_numeral("ii7") == (2, "m7")
    assert parse_numeral("vi") == (9, "m")
    assert chord_pitches(0, "V7", 4) == [67, 71, 74, 77]  # G B D F in C
    with pytest.raises(ValueError):
        parse_numeral("X7")


@pytest.mark.parametrize("genre", GENRES)
def test_plan_is_deterministic_and_covers_the_length(genre):
    a, b = C.plan_song(genre, 123), C.plan_song(genre, 123)
    assert a == b
    bars = sum(n for _, n in a.sections)
    assert bars * 4 * 60 / a.tempo >= 34.0
    lo, hi = STYLES[genre].tempo
    assert lo <= a.tempo <= hi
    notes = C.compose(a)
    assert notes == C.compose(b)
    assert all(0 <= n.pitch <= 127 and 1 <= n.velocity <= 127 for n in notes)
    has_drums = any(n.channel == C.DRUM_CHANNEL for n in notes)
    assert has_drums == (genre != "classical")


def test_different_seeds_give_different_songs():
    plans = [C.plan_song("rock", s) for s in range(20)]
    assert len({(p.tempo, p.key_root, p.programs["comp"]) for p in plans}) >= 15


@pytest.mark.parametrize("genre", GENRES)
def test_all_bass_and_comp_styles_compose(genre):
    style = STYLES[genre]
    plan = C.plan_song(genre, 7)
    for bass, _ in style.bass_styles:
        for comp, _ in style.comp_styles:
            notes = C.compose(C.SongPlan(**{**plan.__dict__, "bass_style": bass, "comp_style": comp}))
            assert any(n.channel == 0 for n in notes) and any(n.channel == 1 for n in notes)


def test_swing_moves_offbeats_only():
    assert C.swing_beat(2.0, 0.66, 1.0) == 2.0
    assert C.swing_beat(2.5, 0.66, 1.0) == pytest.approx(2.66)
    assert C.swing_beat(0.25, 0.66, 0.5) == pytest.approx(0.33)
    assert C.swing_beat(1.5, 0.5, 1.0) == 1.5


def test_midi_has_tempo_programs_and_all_notes():
    plan = C.plan_song("jazz", 11)
    notes = C.compose(plan)
    midi = mido.MidiFile(file=io.BytesIO(C.to_midi(plan, notes)))
    msgs = list(midi.tracks[0])
    tempo = next(m.tempo for m in msgs if m.type == "set_tempo")
    assert mido.tempo2bpm(tempo) == pytest.approx(plan.tempo, rel=1e-3)
    programs = {m.channel: m.program for m in msgs if m.type == "program_change"}
    assert programs[0] == plan.programs["bass"] and programs[1] == plan.programs["comp"]
    assert sum(m.type == "note_on" for m in msgs) == len(notes)
    # humanised: onsets are not all on the 16th grid
    ticks = np.cumsum([m.time for m in msgs])
    on_ticks = ticks[[m.type == "note_on" for m in msgs]]
    assert np.mean(on_ticks % (C.TICKS_PER_BEAT // 4) != 0) > 0.5
