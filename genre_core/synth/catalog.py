"""One catalog song from its spec: plan -> MIDI -> FluidSynth -> 30 s crop -> effects -> encoded file.

``render_song`` is a pure function of a ``SongSpec`` (same spec, same bytes), so the catalog job can run
songs in any order on any number of processes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf

from genre_core.config import GENRES
from genre_core.synth.compose import compose, to_midi
from genre_core.synth.effects import apply_effects, draw_effects
from genre_core.synth.outside_styles import OUTSIDE_NAMES
from genre_core.synth.plan import plan_song
from genre_core.synth.render import render_midi
from genre_core.synth.revoice import generator_nrpns, jitter_generators, revoice_programs

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Split of a genre's songs by index: 7 of 10 train, 1 validation, 2 test (80 train+val / 20 test per 100).
SPLIT_CYCLE = ("train", "train", "train", "train", "train", "train", "train", "val", "test", "test")
# Songs of a style outside the taxonomy never train the genre model: half choose the out-of-taxonomy rule, half test it.
OUTSIDE_SPLIT_CYCLE = ("val", "test")


@dataclass(frozen=True)
class SongSpec:
    track_id: str
    genre: str
    index: int
    seed: int           # the song's own seed, derived from the catalog seed
    split: str
    preset: str         # effects preset: none | default | shifted
    soundfont: str      # path of the .sf2/.sf3 that renders it
    seconds: float = 30.0
    sample_rate: int = 22050
    audio_format: str = "flac"
    revoice: int = 0    # 0: the song as composed; k >= 1: its k-th re-voicing (revoiced_spec)
    revoice_soundfonts: tuple[str, ...] = ()  # a re-voicing's soundfont is drawn from these (not `soundfont`)


def song_seed(catalog_seed: int, genre: str, index: int, preset: str) -> int:
    """A per-song seed that does not depend on how many songs or genres the catalog has."""
    key = [catalog_seed, index, *genre.encode(), *preset.encode()]
    return int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint32)[0])


def soundfont_slots(genre: str, splits: Sequence[str], n_soundfonts: int) -> list[int]:
    """Which of ``n_soundfonts`` soundfonts renders each song of ``genre`` (song i is in split ``splits[i]``).

    Song by song, the soundfont with the fewest songs of this genre in the song's split, then the fewest of
    this genre overall, then the next in the cycle (i + genre offset) mod n, the offset being the genre's
    place in GENRES. So each split of a genre is balanced over the soundfonts (counts differ by at most 1),
    the genre as a whole nearly so, every (genre, soundfont) cell gets songs as soon as a split has
    ``n_soundfonts`` of them, and even one song per genre spreads over the soundfonts. Song i's soundfont
    depends only on the songs before it, not on how many songs or genres the catalog has.
    """
    offset = (GENRES + OUTSIDE_NAMES).index(genre) if genre in GENRES + OUTSIDE_NAMES else 0
    in_split: Counter[tuple[str, int]] = Counter()
    overall: Counter[int] = Counter()
    slots = []
    for i, split in enumerate(splits):
        slot = min(range(n_soundfonts), key=lambda k: (in_split[split, k], overall[k], (k - i - offset) % n_soundfonts))
        in_split[split, slot] += 1
        overall[slot] += 1
        slots.append(slot)
    return slots


def plan_catalog(genres: list[str], per_genre: int, seed: int, preset: str, soundfonts: Sequence[str] | str,
                 seconds: float = 30.0, audio_format: str = "flac", split: str | None = None) -> list[SongSpec]:
    """Specs for ``per_genre`` songs of each genre; the shifted preset gets its own split and ids. A style outside
    the taxonomy (:data:`OUTSIDE_NAMES`) takes the place of a genre, its songs split by :data:`OUTSIDE_SPLIT_CYCLE`.

    Each song gets one of ``soundfonts`` (paths) by ``soundfont_slots``: balanced per genre and split. With
    ``split``, every song is in that split and its id starts with ``<split>-`` (e.g. a catalog of new validation
    songs beside a training catalog).
    """
    fonts = [soundfonts] if isinstance(soundfonts, str) else list(soundfonts)
    if not fonts:
        raise ValueError("plan_catalog needs at least one soundfont")
    specs = []
    prefix = ("" if preset == "default" else f"{preset}-") + (f"{split}-" if split else "")
    for genre in genres:
        cycle = OUTSIDE_SPLIT_CYCLE if genre in OUTSIDE_NAMES else SPLIT_CYCLE
        splits = [split or ("shifted" if preset == "shifted" else cycle[i % len(cycle)]) for i in range(per_genre)]
        for index, (song_split, slot) in enumerate(zip(splits, soundfont_slots(genre, splits, len(fonts)),
                                                       strict=True)):
            specs.append(SongSpec(
                track_id=f"{prefix}{genre}-{index:05d}", genre=genre, index=index,
                seed=song_seed(seed, genre, index, preset), split=song_split, preset=preset,
                soundfont=fonts[slot], seconds=seconds, audio_format=audio_format,
            ))
    return specs


def reference_spec(spec: SongSpec, soundfont: str) -> SongSpec:
    """The same composition and crop through ``soundfont`` with no recording effects: the clean target of a
    GAN training pair whose input is ``spec``'s own render (see genre_core.training.gan)."""
    return dataclasses.replace(spec, soundfont=soundfont, preset="none", revoice=0, revoice_soundfonts=())


def revoiced_spec(spec: SongSpec, k: int, soundfonts: Sequence[str]) -> SongSpec:
    """The k-th (k >= 1) re-voicing of ``spec``: the same notes and crop, each instrument (with probability 0.8)
    another of its General MIDI family (``revoice.revoice_programs``) with its synthesis parameters offset
    (``revoice.jitter_generators``), through one of ``soundfonts`` drawn per re-voicing, with a recording chain of
    its own. Another input of the same GAN training pair: many timbres, one clean target, so that the generator
    learns to read timbres it was not shown rather than the few soundfonts of the corpus. Its id is
    ``<track_id>-r<k>``."""
    if k < 1 or not soundfonts:
        raise ValueError(f"a re-voicing needs k >= 1 and soundfonts to draw from, got k={k}, {list(soundfonts)}")
    return dataclasses.replace(spec, track_id=f"{spec.track_id}-r{k}", revoice=k, revoice_soundfonts=tuple(soundfonts))


def render_song(spec: SongSpec) -> tuple[bytes, dict[str, Any]]:
    """Render one song: returns the encoded audio file and the generation parameters for the catalog."""
    plan = plan_song(spec.genre, spec.seed, seconds=spec.seconds + 4.0)
    notes = compose(plan)  # the programs' numbers do not change the notes: a re-voicing plays the same ones
    soundfont, voicing, setup = spec.soundfont, None, []
    if spec.revoice:
        voicing = np.random.default_rng([spec.seed, 9000 + spec.revoice])
        plan = dataclasses.replace(plan, programs=revoice_programs(plan.programs, voicing))
        soundfont = spec.revoice_soundfonts[int(voicing.integers(len(spec.revoice_soundfonts)))]
        setup = generator_nrpns(jitter_generators(np.random.default_rng([spec.seed, 9500 + spec.revoice])))
    audio = render_midi(to_midi(plan, notes, setup), soundfont, spec.sample_rate)
    rng = np.random.default_rng(spec.seed + 3)  # the crop (a re-voicing keeps it) and the song's own effects
    n = int(round(spec.seconds * spec.sample_rate))
    spare = len(audio) - n
    start = int(rng.integers(0, min(spare, 3 * spec.sample_rate) + 1)) if spare > 0 else 0
    clip = np.zeros(n, dtype=np.float32)
    piece = audio[start:start + n]
    clip[: len(piece)] = piece
    fade = int(0.01 * spec.sample_rate)
    clip[:fade] *= np.linspace(0, 1, fade, dtype=np.float32)
    clip[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    effects = draw_effects(spec.preset, rng if voicing is None else voicing)
    clip = apply_effects(clip, spec.sample_rate, effects, seed=spec.seed + 4 + 1000 * spec.revoice)
    buf = io.BytesIO()
    fmt = {"flac": "FLAC", "wav": "WAV"}[spec.audio_format]
    sf.write(buf, clip, spec.sample_rate, format=fmt, subtype="PCM_16")
    params = {
        "tempo": plan.tempo,
        "key": NOTE_NAMES[plan.key_root],
        "scale": plan.scale,
        "swing": plan.swing,
        "progression": " ".join(numeral for numeral, _ in plan.progression),
        "instruments": json.dumps(plan.programs, sort_keys=True),
        "bass_style": plan.bass_style,
        "comp_style": plan.comp_style,
        "drums": plan.drums,
        "form": " ".join(f"{name}:{bars}" for name, bars in plan.sections),
        "arrangement": " ".join(f"{name}:{'+'.join(roles) or '-'}"
                                for (name, _), roles in zip(plan.sections, plan.arrangement, strict=True)),
        "soundfont": os.path.basename(soundfont),
        "effects": json.dumps(effects, sort_keys=True),
        "seed": spec.seed,
        "preset": spec.preset,
    }
    return buf.getvalue(), params
