"""Every random choice of one song, drawn from a seed: its plan.

``plan_song(genre, seed)`` draws tempo, swing, key, scale, progression, instruments (with seeded swaps within
General MIDI families), drums (a pattern of the style or a recorded groove), form and arrangement. The catalog
records the plan; :mod:`genre_core.synth.compose` turns it into notes and MIDI as a pure function of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genre_core.synth import grooves as groove_library
from genre_core.synth.outside_styles import OUTSIDE_STYLES
from genre_core.synth.styles import STYLES, SWAP_GROUP_OF, SWAP_PROBABILITY, GenreStyle

# every style the composer knows: the ten genres and the styles outside the taxonomy
ALL_STYLES: dict[str, GenreStyle] = {**STYLES, **OUTSIDE_STYLES}


@dataclass(frozen=True)
class SongPlan:
    genre: str
    seed: int
    tempo: float
    swing: float
    key_root: int
    scale: str
    progression: tuple[tuple[str, float], ...]
    programs: dict[str, int]          # role -> GM program (roles present in the song)
    bass_style: str
    comp_style: str
    drums: str                        # "pattern:<i>", "groove:<style>/<drummer>" or "none"
    sections: tuple[tuple[str, int], ...]  # (section name, bars)
    lead_density: float
    velocity: int
    timing_jitter_s: float
    # Roles that play in each section (parallel to ``sections``); empty = every role everywhere.
    arrangement: tuple[tuple[str, ...], ...] = ()
    groove: groove_library.Groove | None = field(default=None, compare=False, repr=False)


def _choose(rng: np.random.Generator, weighted) -> object:
    items = [w[0] for w in weighted]
    weights = np.array([w[1] for w in weighted], dtype=float)
    return items[int(rng.choice(len(items), p=weights / weights.sum()))]


def plan_song(genre: str, seed: int, seconds: float = 34.0) -> SongPlan:
    """Draw every choice of one song of ``genre`` (a genre or an outside style) from ``seed``."""
    style = ALL_STYLES[genre]
    rng = np.random.default_rng(seed)
    tempo = float(rng.uniform(*style.tempo))
    swing = float(rng.uniform(*style.swing))
    programs = {
        "bass": int(_choose(rng, style.bass_programs)),
        "comp": int(_choose(rng, style.comp_programs)),
    }
    if rng.random() < style.lead_probability:
        programs["lead"] = int(_choose(rng, style.lead_programs))
    if rng.random() < style.pad_probability:
        programs["pad"] = int(_choose(rng, style.pad_programs))
    drums, groove = "none", None
    if style.drum_patterns:
        if rng.random() < style.groove_probability:
            groove = groove_library.pick_groove(genre, rng, bpm=tempo)
        if groove is not None:
            drums = f"groove:{groove.style}/{groove.drummer}"
        else:
            drums = f"pattern:{int(rng.integers(len(style.drum_patterns)))}"
    bars_needed = int(np.ceil(seconds * tempo / 60.0 / 4.0))
    sections = _plan_form(rng, bars_needed)
    # Draws added later use streams of their own, so the choices above stay those of earlier versions.
    programs = _swap_programs(programs, np.random.default_rng([seed, 7]))
    roles = (["drums"] if drums != "none" else []) + list(programs)
    arrangement = _plan_arrangement(np.random.default_rng([seed, 8]), sections, roles)
    return SongPlan(
        genre=genre, seed=seed, tempo=round(tempo, 2), swing=round(swing, 3),
        key_root=int(rng.integers(12)), scale=str(_choose(rng, style.scales)),
        progression=tuple(_choose(rng, style.progressions)),  # type: ignore[arg-type]
        programs=programs, bass_style=str(_choose(rng, style.bass_styles)),
        comp_style=str(_choose(rng, style.comp_styles)), drums=drums, sections=sections,
        lead_density=float(rng.uniform(*style.lead_density)), velocity=int(rng.integers(*style.velocity)),
        timing_jitter_s=float(rng.uniform(0.003, 0.015)), arrangement=arrangement, groove=groove,
    )


def _swap_programs(programs: dict[str, int], rng: np.random.Generator) -> dict[str, int]:
    """Replace each program, with probability SWAP_PROBABILITY, by another one of its SWAP_GROUPS group."""
    out = {}
    for role, program in programs.items():
        group = SWAP_GROUP_OF.get(program, (program,))
        swap = rng.random() < SWAP_PROBABILITY
        others = [p for p in group if p != program]
        out[role] = int(others[int(rng.integers(len(others)))]) if swap and others else program
    return out


# Which roles an intro or a bridge keeps (the first variant whose roles the song has, after a seeded shuffle).
INTRO_VARIANTS = (("comp",), ("comp", "pad"), ("drums", "bass"), ("drums",), ("bass", "comp"),
                  ("drums", "bass", "comp"), ("pad", "lead"))
BRIDGE_VARIANTS = (("bass", "comp", "pad"), ("drums", "bass"), ("drums", "bass", "comp", "pad"),
                   ("comp", "pad", "lead"), ("drums", "bass", "comp", "lead"))


def _plan_arrangement(rng: np.random.Generator, sections, roles: list[str]) -> tuple[tuple[str, ...], ...]:
    """Roles playing in each section: choruses play everything; verses may leave out the pad, the lead or
    (when there is a chorus and a lead) the comping; intros and bridges take one of a few sparser variants."""
    present = set(roles)
    has_chorus = any(name == "chorus" for name, _ in sections)
    drop_in_verse = {role for role, p in (("pad", 0.5), ("lead", 0.4)) if rng.random() < p}
    if has_chorus and "lead" in present and "lead" not in drop_in_verse and rng.random() < 0.2:
        drop_in_verse.add("comp")
    intro = _first_variant(rng, INTRO_VARIANTS, present)
    bridge = _first_variant(rng, BRIDGE_VARIANTS, present)
    out = []
    for name, _ in sections:
        keep = {"intro": intro, "bridge": bridge, "verse": present - drop_in_verse}.get(name, present)
        out.append(tuple(r for r in roles if r in keep))
    return tuple(out)


def _first_variant(rng: np.random.Generator, variants, present: set[str]) -> set[str]:
    for k in rng.permutation(len(variants)):
        roles = set(variants[int(k)]) & present
        if roles == set(variants[int(k)]):
            return roles
    return set(present)


def _plan_form(rng: np.random.Generator, bars: int) -> tuple[tuple[str, int], ...]:
    """Intro, then verse/chorus/bridge blocks of 4 or 8 bars until ``bars`` are covered."""
    form = [("intro", int(rng.choice([2, 4])))] if rng.random() < 0.6 else []
    order = ["verse", "chorus", "verse", "chorus", "bridge", "chorus"]
    i = int(rng.integers(0, 2))
    while (covered := sum(n for _, n in form)) < bars:
        form.append((order[i % len(order)], min(int(rng.choice([4, 8])), bars - covered)))
        i += 1
    return tuple(form)
