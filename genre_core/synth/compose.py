"""Compose one song as MIDI from its plan (:mod:`genre_core.synth.plan`): drums, bass, chords, melody, pad.

``compose`` is a pure function of the plan, which holds every random choice (so the catalog can record them).
Timing is written in beats, then swing and human timing/velocity are applied when the notes become MIDI events
(``to_midi``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import mido
import numpy as np

from genre_core.synth import grooves as groove_library
from genre_core.synth.plan import ALL_STYLES, SongPlan
from genre_core.synth.styles import CRASH, KICK, GenreStyle
from genre_core.synth.theory import SCALES, chord_pitches, chord_root, scale_pitches, voice_near

DRUM_CHANNEL = 9
TICKS_PER_BEAT = 480
SECTION_ENERGY = {"intro": 0.45, "verse": 0.75, "chorus": 1.0, "bridge": 0.6}
ROLE_CHANNELS = {"drums": DRUM_CHANNEL, "bass": 0, "comp": 1, "lead": 2, "pad": 3}


@dataclass(frozen=True)
class Note:
    channel: int
    start: float      # beats
    duration: float   # beats
    pitch: int
    velocity: int


# ---------------------------------------------------------------- parts

def _chord_timeline(plan: SongPlan, total_beats: float) -> list[tuple[float, float, str]]:
    """(start beat, length in beats, numeral) covering the song, cycling the progression."""
    out, t, i = [], 0.0, 0
    while t < total_beats:
        numeral, beats = plan.progression[i % len(plan.progression)]
        out.append((t, beats, numeral))
        t += beats
        i += 1
    return out


def _drum_part(plan: SongPlan, style: GenreStyle, bars: list[float], rng) -> list[Note]:
    if plan.drums == "none":
        return []
    if plan.groove is not None:  # a real performance, tiled over the song
        events = groove_library.groove_events(plan.groove, len(bars))
        if plan.genre == "metal":  # no metal in the dataset: a double kick in 8ths under the punk/rock groove
            events = sorted(events + [(0.5 * i, KICK, 100 if i % 2 == 0 else 88) for i in range(8 * len(bars))])
    else:
        pattern = style.drum_patterns[int(plan.drums.split(":")[1])]
        one_bar = [(i / 4.0, note, {"X": 118, "x": 95, "o": 50}[c])
                   for note, grid in pattern.items() for i, c in enumerate(grid) if c != "."]
        events = [(4.0 * bar + b, n, v) for bar in range(len(bars)) for b, n, v in one_bar]
    silent_bars = {bar for bar, energy in enumerate(bars) if energy < 0.5 and rng.random() < 0.5}
    notes: list[Note] = []
    for beat, note, vel in events:
        bar = min(int(max(beat, 0.0) // 4), len(bars) - 1)
        if bar in silent_bars:  # sparse intros often leave the drums out
            continue
        v = int(np.clip(vel * (0.7 + 0.3 * bars[bar]) + rng.normal(0, 6), 15, 127))
        notes.append(Note(DRUM_CHANNEL, max(beat, 0.0), 0.25, int(note), v))
    for bar in range(1, len(bars)):
        if bars[bar] >= 1.0 and bars[bar - 1] < 1.0:  # a crash where the chorus comes in
            notes.append(Note(DRUM_CHANNEL, 4.0 * bar, 0.5, CRASH, 110))
    return notes


def _bass_part(plan, style, chords, bars, rng) -> list[Note]:
    notes, ch = [], 0
    scale = SCALES[plan.scale]
    for idx, (t0, length, numeral) in enumerate(chords):
        if bars[min(int(t0 // 4), len(bars) - 1)] < 0.5 and rng.random() < 0.5:
            continue
        root = chord_root(plan.key_root, numeral, style.bass_octave)
        pitches = chord_pitches(plan.key_root, numeral)
        tones = [root + p - pitches[0] for p in pitches]
        fifth = tones[2] if len(tones) > 2 else root + 7
        nxt = chord_root(plan.key_root, chords[(idx + 1) % len(chords)][2], style.bass_octave)
        for beat, dur, pitch, accent in _bass_rhythm(plan.bass_style, length, root, tones, fifth, nxt, scale,
                                                      plan.key_root, rng):
            notes.append(Note(ch, t0 + beat, dur, int(pitch), int(np.clip(plan.velocity * accent, 20, 127))))
    return notes


def _bass_rhythm(kind, length, root, tones, fifth, nxt, scale, key_root, rng):
    """Yield (beat, duration, pitch, accent) for one chord of ``length`` beats."""
    beats = int(length)
    if kind == "root_8ths":
        return [(i / 2, 0.45, root, 1.0 if i % 2 == 0 else 0.85) for i in range(beats * 2)]
    if kind == "root_quarters":
        return [(i, 0.9, root, 1.0) for i in range(beats)]
    if kind == "root_fifth":
        return [(i, 0.8, root if i % 2 == 0 else fifth - 12 * (fifth - root > 7), 1.0) for i in range(beats)]
    if kind == "octave":
        return [(i / 2, 0.4, root + 12 * (i % 2), 1.0 if i % 2 == 0 else 0.9) for i in range(beats * 2)]
    if kind == "boogie":
        walk = [0, 4, 7, 9, 10, 9, 7, 4]
        return [(i / 2, 0.45, root + walk[i % 8], 1.0 if i % 2 == 0 else 0.8) for i in range(beats * 2)]
    if kind == "walking":
        out = []
        for i in range(beats):
            if i == 0:
                p = root
            elif i == beats - 1:
                p = nxt + (1 if rng.random() < 0.5 else -1)  # chromatic approach
            else:
                p = int(rng.choice(tones[1:] + [root + 2, root + 5]))
            out.append((i, 0.95, p, 0.9 + 0.1 * (i == 0)))
        return out
    if kind == "chug":
        return [(i / 4, 0.22, root, 1.0 if i % 4 == 0 else 0.8) for i in range(beats * 4)]
    if kind == "sustained":
        return [(0.0, length * 0.98, root, 1.0)]
    if kind == "arpeggio_low":
        return [(i, 0.95, [root, fifth, root + 12, fifth][i % 4], 0.9) for i in range(beats)]
    if kind == "hiphop":
        grid = [0, 1.75, 2.5] if rng.random() < 0.5 else [0, 0.75, 2.5, 3.25]
        return [(b, 0.7, root if j % 2 == 0 else root + (7 if j == 1 else 12), 1.0)
                for j, b in enumerate(grid) if b < length]
    if kind == "funk":
        grid = [0, 0.75, 1.5, 2.0, 2.75, 3.5]
        pick = [root, root + 12, root + 10, root, root + 7, root + 12]
        return [(b, 0.25, p, 1.0 if b % 1 == 0 else 0.8) for b, p in zip(grid, pick, strict=True) if b < length]
    if kind == "reggae":
        grid = [(0.5, root), (1.0, fifth), (1.75, root + 12), (2.5, tones[1]), (3.0, root)]
        return [(b, 0.45, p, 1.0) for b, p in grid if b < length]
    if kind == "bossa":  # root on 1, fifth on the and of 2, root on 3, fifth on the and of 4
        grid = [(0.0, root), (1.5, fifth), (2.0, fifth), (3.5, root)]
        return [(b, 0.45, p, 1.0) for b, p in grid if b < length]
    if kind == "offbeat":  # house: the bass on every off-beat 8th
        return [(i + 0.5, 0.35, root, 1.0) for i in range(beats)]
    raise ValueError(f"unknown bass style {kind!r}")


def _comp_part(plan, style, chords, bars, rng) -> list[Note]:
    notes, ch = [], 1
    centre = 12 * (style.comp_octave + 1) + 7
    for t0, length, numeral in chords:
        energy = bars[min(int(t0 // 4), len(bars) - 1)]
        pitches = voice_near(chord_pitches(plan.key_root, numeral, style.comp_octave), centre)
        for beat, dur, chord_tones, accent in _comp_rhythm(plan.comp_style, length, pitches, rng):
            vel = int(np.clip(plan.velocity * accent * (0.75 + 0.25 * energy), 15, 127))
            for p in chord_tones:
                notes.append(Note(ch, t0 + beat, dur, int(p), vel))
    return notes


def _comp_rhythm(kind, length, pitches, rng):
    beats = int(length)
    low, high = pitches[0], pitches[-1]
    if kind == "strum8":
        return [(i / 2, 0.45, pitches, 1.0 if i % 2 == 0 else 0.8) for i in range(beats * 2)]
    if kind == "block":
        return [(0.0, length * 0.98, pitches, 0.8)]
    if kind in ("power_chug", "power16"):
        power = [pitches[0], pitches[0] + 7, pitches[0] + 12]
        step = 0.5 if kind == "power_chug" else 0.25
        return [(i * step, step * 0.85, power, 1.0 if i % 4 == 0 else 0.85) for i in range(int(length / step))]
    if kind == "skank":
        return [(b, 0.2, pitches, 0.9) for b in (1.0, 3.0, 1.5, 3.5)[: 2 + int(rng.random() < 0.3) * 2] if b < length]
    if kind == "offbeat":
        return [(i + 0.5, 0.25, pitches, 0.85) for i in range(beats)]
    if kind == "stabs":
        grid = [0.0, 1.5, 2.75] if rng.random() < 0.5 else [0.5, 2.0, 3.5]
        return [(b, 0.3, pitches, 0.95) for b in grid if b < length]
    if kind == "muted16":
        return [(i / 4, 0.1, pitches[-2:], 0.9 if i % 2 else 0.6) for i in range(beats * 4) if rng.random() < 0.8]
    if kind == "jazz_comp":
        hits = sorted(rng.choice(np.arange(0, length, 0.5), size=min(2, beats), replace=False))
        return [(float(b), 0.6, pitches, 0.8) for b in hits]
    if kind == "arpeggio":
        seq = pitches + pitches[-2:0:-1]
        return [(i / 2, 0.5, [seq[i % len(seq)]], 0.85) for i in range(beats * 2)]
    if kind == "alberti":
        seq = [low, high, pitches[len(pitches) // 2], high]
        return [(i / 2, 0.45, [seq[i % 4]], 0.8) for i in range(beats * 2)]
    if kind == "boom_chick":
        return [(b, 0.35, pitches, 0.85) for b in (1.0, 3.0) if b < length]
    if kind == "bossa":  # the bossa nova guitar's syncopated chord pattern over two bars' worth of 8ths
        grid = [0.0, 1.5, 2.5, 3.0] if rng.random() < 0.5 else [0.5, 1.5, 2.0, 3.5]
        return [(b, 0.4, pitches, 0.85) for b in grid if b < length]
    if kind == "shuffle":
        five, six = [low, low + 7], [low, low + 9]
        return [(i / 2, 0.45, five if (i // 2) % 2 == 0 else six, 0.9) for i in range(beats * 2)]
    raise ValueError(f"unknown comp style {kind!r}")


def _lead_part(plan, chords, bars, rng, channel: int = 2) -> list[Note]:
    """A motif of two bars, repeated with variation; chord tones on strong beats, scale steps between."""
    pool = scale_pitches(plan.key_root, plan.scale, 60, 84)
    motif_len, density = 8.0, plan.lead_density
    onsets = np.sort(rng.choice(np.arange(0, motif_len, 0.5), size=max(2, int(motif_len * density / 2)),
                                replace=False)) if density < 2 else np.arange(0, motif_len, 1 / density)
    idx = int(rng.integers(len(pool) // 3, 2 * len(pool) // 3))
    steps = rng.choice([-2, -1, -1, 1, 1, 2, 3, -3, 0], size=len(onsets))
    notes: list[Note] = []
    total = len(bars) * 4.0
    t = 0.0
    while t < total:
        energy = bars[min(int(t // 4), len(bars) - 1)]
        if energy >= 0.7:
            vary = rng.random() < 0.35
            for k, onset in enumerate(onsets):
                start = t + float(onset)
                if start >= total:
                    break
                idx = int(np.clip(idx + steps[k] + (rng.integers(-1, 2) if vary else 0), 0, len(pool) - 1))
                pitch = pool[idx]
                chord = next((c for c in chords if c[0] <= start < c[0] + c[1]), chords[-1])
                if onset % 1 == 0:  # strong beats land on the nearest chord tone
                    tones = chord_pitches(plan.key_root, chord[2], 5)
                    pitch = min((p + 12 * o for p in tones for o in (-1, 0, 1)), key=lambda p: abs(p - pitch))
                nxt = onsets[k + 1] if k + 1 < len(onsets) else motif_len
                dur = max(0.2, float(nxt - onset) * 0.9)
                notes.append(Note(channel, start, dur, int(pitch), int(np.clip(plan.velocity + 8, 30, 127))))
        t += motif_len
    return notes


def _pad_part(plan, chords, bars, channel: int = 3) -> list[Note]:
    notes = []
    for t0, length, numeral in chords:
        energy = bars[min(int(t0 // 4), len(bars) - 1)]
        if energy < 0.5:
            continue
        for p in voice_near(chord_pitches(plan.key_root, numeral, 4), 64):
            notes.append(Note(channel, t0, length * 0.98, p, int(plan.velocity * 0.6)))
    return notes


# ---------------------------------------------------------------- MIDI

def compose(plan: SongPlan) -> list[Note]:
    """All notes of the song, in beats, before swing and humanisation."""
    style = ALL_STYLES[plan.genre]
    rng = np.random.default_rng(plan.seed + 1)
    bars = [SECTION_ENERGY[name] for name, n in plan.sections for _ in range(n)]
    chords = _chord_timeline(plan, len(bars) * 4.0)
    notes = _drum_part(plan, style, bars, rng)
    notes += _bass_part(plan, style, chords, bars, rng)
    notes += _comp_part(plan, style, chords, bars, rng)
    if "lead" in plan.programs:
        notes += _lead_part(plan, chords, bars, rng)
    if "pad" in plan.programs:
        notes += _pad_part(plan, chords, bars)
    return _arrange(plan, notes, len(bars))


def _arrange(plan: SongPlan, notes: list[Note], n_bars: int) -> list[Note]:
    """Keep each note only if its role plays in the section of the bar it starts in."""
    if not plan.arrangement:
        return notes
    playing: list[set[int]] = []
    for (_, n), roles in zip(plan.sections, plan.arrangement, strict=True):
        playing += [{ROLE_CHANNELS[r] for r in roles}] * n
    return [note for note in notes if note.channel in playing[min(int(note.start // 4), n_bars - 1)]]


def swing_beat(beat: float, ratio: float, unit: float) -> float:
    """Delay off-beat subdivisions: within each ``unit`` the midpoint moves to ``ratio`` of it."""
    if ratio == 0.5:
        return beat
    base = np.floor(beat / unit) * unit
    frac = (beat - base) / unit
    warped = frac * ratio / 0.5 if frac <= 0.5 else ratio + (frac - 0.5) * (1 - ratio) / 0.5
    return float(base + warped * unit)


def to_midi(plan: SongPlan, notes: list[Note], setup: Sequence[mido.Message] = ()) -> bytes:
    """Swing, humanise and write the notes as a type-0 Standard MIDI File; ``setup`` messages (e.g. a re-voicing's
    synthesis-parameter NRPNs, ``revoice.generator_nrpns``) go after the tempo, before the programs and notes."""
    style = ALL_STYLES[plan.genre]
    rng = np.random.default_rng(plan.seed + 2)
    tempo_us = mido.bpm2tempo(plan.tempo)
    jitter_beats = plan.timing_jitter_s * plan.tempo / 60.0
    events: list[tuple[int, int, mido.Message]] = []
    for n in notes:
        # A recorded groove already carries its drummer's swing and timing: keep it as played.
        ratio = 0.5 if (n.channel == DRUM_CHANNEL and plan.groove is not None) else plan.swing
        start = swing_beat(n.start, ratio, style.swing_unit) + rng.normal(0, jitter_beats)
        end = swing_beat(n.start + n.duration, ratio, style.swing_unit)
        on, off = max(0, round(start * TICKS_PER_BEAT)), max(1, round(end * TICKS_PER_BEAT))
        vel = int(np.clip(n.velocity + rng.normal(0, 5), 1, 127))
        events.append((on, 1, mido.Message("note_on", channel=n.channel, note=n.pitch, velocity=vel)))
        events.append((max(off, on + 1), 0, mido.Message("note_off", channel=n.channel, note=n.pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=tempo_us, time=0))
    track.extend(setup)
    for role, channel in (("bass", 0), ("comp", 1), ("lead", 2), ("pad", 3)):
        if role in plan.programs:
            track.append(mido.Message("program_change", channel=channel, program=plan.programs[role], time=0))
            track.append(mido.Message("control_change", channel=channel, control=10,
                                      value=int(rng.integers(40, 88)), time=0))  # pan
    last = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick
    midi = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    buf = io.BytesIO()
    midi.save(file=buf)
    return buf.getvalue()
