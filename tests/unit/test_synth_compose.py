"""Composition: every genre's vocabulary is valid, plans are deterministic, swing and MIDI are right."""

from __future__ import annotations

import io

import mido
import numpy as np
import pytest

from genre_core.config import GENRES
from genre_core.synth import compose as C
from genre_core.synth.outside_styles import OUTSIDE_NAMES, OUTSIDE_STYLES
from genre_core.synth.plan import SongPlan, plan_song
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
    a, b = plan_song(genre, 123), plan_song(genre, 123)
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
    plans = [plan_song("rock", s) for s in range(20)]
    assert len({(p.tempo, p.key_root, p.programs["comp"]) for p in plans}) >= 15


@pytest.mark.parametrize("genre", GENRES)
def test_all_bass_and_comp_styles_compose(genre):
    style = STYLES[genre]
    plan = plan_song(genre, 7)
    for bass, _ in style.bass_styles:
        for comp, _ in style.comp_styles:
            notes = C.compose(SongPlan(**{**plan.__dict__, "bass_style": bass, "comp_style": comp}))
            assert any(n.channel == 0 for n in notes) and any(n.channel == 1 for n in notes)


def test_swing_moves_offbeats_only():
    assert C.swing_beat(2.0, 0.66, 1.0) == 2.0
    assert C.swing_beat(2.5, 0.66, 1.0) == pytest.approx(2.66)
    assert C.swing_beat(0.25, 0.66, 0.5) == pytest.approx(0.33)
    assert C.swing_beat(1.5, 0.5, 1.0) == 1.5


def test_midi_has_tempo_programs_and_all_notes():
    plan = plan_song("jazz", 11)
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


# ---------------------------------------------------------------- variety across songs

N_SEEDS = 80


def _plans(genre):
    return [plan_song(genre, seed) for seed in range(N_SEEDS)]


@pytest.mark.parametrize("genre", GENRES)
def test_a_genre_uses_many_progressions_programs_and_arrangements(genre):
    from genre_core.synth.styles import SWAP_GROUP_OF

    plans = _plans(genre)
    style = STYLES[genre]
    assert len(style.progressions) >= 8
    assert len({p.progression for p in plans}) >= 6
    comp = {p.programs["comp"] for p in plans}
    bass = {p.programs["bass"] for p in plans}
    # swaps stay in the family: every program is a style program or one of its SWAP_GROUPS relatives
    allowed = {q for p, _ in style.comp_programs for q in SWAP_GROUP_OF.get(p, (p,))}
    assert comp <= allowed
    assert len(comp) >= min(6, len(allowed)) and len(bass) >= 3, (comp, bass)
    # some songs play a program that the style's lists do not name (a swap)
    named = {p for ws in (style.bass_programs, style.comp_programs, style.lead_programs, style.pad_programs)
             for p, _ in ws}
    assert {q for p in plans for q in p.programs.values()} - named
    arrangements = {tuple(zip([n for n, _ in p.sections], p.arrangement, strict=True)) for p in plans}
    assert len(arrangements) >= 10
    assert any(len(set(p.arrangement)) > 1 for p in plans)  # sections that differ in who plays


@pytest.mark.parametrize("genre", GENRES)
def test_arrangement_is_respected_and_choruses_play_everything(genre):
    for plan in _plans(genre)[:15]:
        notes = C.compose(plan)
        bar_roles = [set(roles) for (_, n), roles in zip(plan.sections, plan.arrangement, strict=True)
                     for _ in range(n)]
        for note in notes:
            role = next(r for r, ch in C.ROLE_CHANNELS.items() if ch == note.channel)
            assert role in bar_roles[min(int(note.start // 4), len(bar_roles) - 1)]
        for (name, _), roles in zip(plan.sections, plan.arrangement, strict=True):
            if name == "chorus":
                assert set(roles) == set(plan.programs) | ({"drums"} if plan.drums != "none" else set())


@pytest.mark.parametrize("genre", [g for g in GENRES if g != "classical"])
def test_groove_midi_drums_appear_for_every_genre_that_has_them(genre):
    from genre_core.synth import grooves

    assert grooves.genre_pools(genre), f"{genre} has no Groove MIDI styles"
    plans = _plans(genre)
    real = [p for p in plans if p.drums.startswith("groove:")]
    assert len(real) >= 0.15 * N_SEEDS, f"{genre}: {len(real)} of {N_SEEDS} songs with a real drummer"
    assert len({(p.groove.source, p.groove.bar) for p in real}) >= 5  # many performances, not one loop
    assert any(p.drums.startswith("pattern:") for p in plans)  # the genre patterns still play too
    notes = C.compose(real[0])
    assert sum(n.channel == C.DRUM_CHANNEL for n in notes) > 20


def test_metal_grooves_get_a_double_kick():
    plan = next(p for p in _plans("metal") if p.groove is not None)
    kicks = [n for n in C.compose(plan) if n.channel == C.DRUM_CHANNEL and n.pitch == 36]
    chorus_bar = next(i for i, (name, _) in enumerate(plan.sections) if name in ("chorus", "verse"))
    start = 4 * sum(n for _, n in plan.sections[:chorus_bar])
    assert sum(start <= k.start < start + 4 for k in kicks) >= 8


@pytest.mark.parametrize("style", OUTSIDE_NAMES)
def test_every_outside_style_composes_its_own_vocabulary(style):
    assert len(OUTSIDE_NAMES) >= 5 and not set(OUTSIDE_NAMES) & set(GENRES)
    spec = OUTSIDE_STYLES[style]
    for progression, _ in spec.progressions:
        for numeral, _beats in progression:
            parse_numeral(numeral)
    for seed in range(12):
        plan = plan_song(style, seed)
        assert spec.tempo[0] <= plan.tempo <= spec.tempo[1]
        assert plan.bass_style in {b for b, _ in spec.bass_styles}
        notes = C.compose(plan)
        assert notes and all(0 <= n.pitch <= 127 for n in notes)
        assert mido.MidiFile(file=io.BytesIO(C.to_midi(plan, notes))).length > 30
    has_drums = any(n.channel == C.DRUM_CHANNEL for n in C.compose(plan_song(style, 1)))
    assert has_drums == bool(spec.drum_patterns)


def test_outside_songs_never_train_and_have_no_genre_of_the_taxonomy():
    from genre_core.synth.catalog import plan_catalog

    specs = plan_catalog([*OUTSIDE_NAMES, "rock"], 6, 0, "default", ["a.sf2", "b.sf2"])
    outside = [s for s in specs if s.genre in OUTSIDE_NAMES]
    assert {s.split for s in outside} == {"val", "test"}
    assert sum(s.split == "val" for s in outside) == sum(s.split == "test" for s in outside)
    assert "train" in {s.split for s in specs if s.genre == "rock"}


def test_a_catalog_of_one_split_has_ids_of_its_own():
    from genre_core.synth.catalog import plan_catalog

    specs = plan_catalog(["rock", "folk"], 3, 0, "default", ["a.sf2"], split="val")
    assert [s.split for s in specs] == ["val"] * 6
    assert [s.track_id for s in specs[:2]] == ["val-rock-00000", "val-rock-00001"]
    plain = plan_catalog(["rock", "folk"], 3, 0, "default", ["a.sf2"])
    assert {s.seed for s in specs} == {s.seed for s in plain}  # same songs, another split and ids
