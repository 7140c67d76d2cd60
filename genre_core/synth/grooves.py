"""Real human drum grooves for the demo corpus, from the Groove MIDI Dataset.

The packaged file ``data/grooves.json.gz`` holds 2-bar (8-beat) windows cut from the ``beat``
performances in 4-4 of the Magenta Groove MIDI Dataset (Gillick, Roberts, Engel, Eck, Bamman,
"Learning to Groove with Inverse Sequence Transformations", ICML 2019; CC BY 4.0, see
``data/GROOVES_ATTRIBUTION.md``). Events keep the drummer's timing (not quantised) and velocities;
notes are General MIDI percussion notes (channel 10). Rebuild with ``tools/build_grooves.py``.

Event offsets are in beats from the window's first downbeat and lie in ``[-EARLY, 8 - EARLY)``: a
hit played slightly ahead of a downbeat belongs to that downbeat's window, hence a small negative
offset at the start of a window.
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_PATH = Path(__file__).resolve().parent / "data" / "grooves.json.gz"
WINDOW_BEATS = 8
BEATS_PER_BAR = 4
BARS_PER_WINDOW = WINDOW_BEATS // BEATS_PER_BAR
EARLY = 0.125  # must match tools/build_grooves.py


# Dataset styles that fit each genre, most fitting first. An entry is a dataset style ("rock": every
# rock window) or a style/substyle ("rock/shuffle": only those). pick_groove() weights entry i by
# 1/(i+1), so the first entry dominates and the later ones add variety.
# - rock: the dataset's rock grooves; punk for the faster, straighter end.
# - metal: no metal in the dataset; punk (fast, driving 8ths) first, then rock. The composer adds
#   double kick and heavier cymbals on top.
# - blues: blues shuffles first, then the other shuffles (New Orleans, rock, Purdie), then soul for
#   the straight, laid-back slow-blues/soul-blues feel.
# - jazz: swing first, then all jazz (march, fusion, linear...: still jazz drumming idioms).
# - country: only two country performances, so rockabilly and folk rock (train beats, two-beat
#   feels), then rock for the country-rock end.
# - hiphop: hip-hop grooves, then funk and soul, the breaks hip-hop is built from.
# - reggae: reggae only (one-drop/steppers). Afrobeat and other styles would blur the very
#   feature (beat-3 accents, sparse kick) that tells reggae apart, and reggae has enough windows.
# - pop: pop, then soul (Motown backbeats), rock, and disco four-on-the-floor for dance-pop.
# - disco: the dataset's dance/disco performances first (four-on-the-floor, open hats), then funk
#   and Motown soul, disco's ancestors. dance/breakbeat (170 bpm breaks) is left out.
# - classical: no kit drums.
GENRE_GROOVE_STYLES: dict[str, tuple[str, ...]] = {
    "blues": ("blues", "neworleans/shuffle", "rock/shuffle", "funk/purdieshuffle", "soul"),
    "classical": (),
    "country": ("country", "rock/rockabilly", "rock/folk", "rock"),
    "disco": ("dance/disco", "funk", "soul/motown"),
    "hiphop": ("hiphop", "funk", "soul"),
    "jazz": ("jazz/swing", "jazz"),
    "metal": ("punk", "rock"),
    "pop": ("pop", "soul", "rock", "dance/disco"),
    "reggae": ("reggae",),
    "rock": ("rock", "punk"),
    # styles outside the taxonomy (genre_core.synth.outside_styles); folk, house and ambient use patterns only
    "folk": (),
    "latin": ("latin/brazilian-bossa", "latin/brazilian-samba", "latin/brazilian-songo", "afrocuban"),
    "house": (),
    "ambient": (),
    "gospel": ("gospel", "soul"),
}

Event = tuple[float, int, int]  # (beat, GM note, velocity)


@dataclass(frozen=True)
class Groove:
    """A 2-bar window of a real drum performance."""

    style: str  # dataset style, e.g. "rock"
    bpm: float  # tempo the drummer played at
    drummer: str
    events: tuple[Event, ...]  # (beat offset in [-EARLY, 8 - EARLY), GM drum note, velocity 1..127)
    substyle: str = ""  # full dataset style, e.g. "rock/shuffle"
    source: str = ""  # MIDI file in the dataset
    bar: int = 0  # first bar of the window in that file

    @property
    def n_bars(self) -> int:
        return BARS_PER_WINDOW


@functools.lru_cache(maxsize=4)
def _load(path: str) -> dict[str, tuple[Groove, ...]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    out: dict[str, tuple[Groove, ...]] = {}
    for style, items in data["grooves"].items():
        out[style] = tuple(
            Groove(
                style=g["style"],
                bpm=float(g["bpm"]),
                drummer=g["drummer"],
                events=tuple((float(b), int(n), int(v)) for b, n, v in g["events"]),
                substyle=g.get("substyle", g["style"]),
                source=g.get("source", ""),
                bar=int(g.get("bar", 0)),
            )
            for g in items
        )
    return out


def load_grooves(path: str | Path | None = None) -> dict[str, list[Groove]]:
    """Grooves by dataset style, from the packaged file (parsed once, then cached)."""
    grooves = _load(str(path or DATA_PATH))
    return {style: list(gs) for style, gs in grooves.items()}


def _matches(g: Groove, entry: str) -> bool:
    if "/" not in entry:
        return g.style == entry
    return g.substyle == entry or g.substyle.startswith(entry + "/")


def genre_pools(genre: str) -> list[tuple[str, tuple[Groove, ...]]]:
    """(entry, grooves) for each entry of GENRE_GROOVE_STYLES[genre] that has grooves."""
    if genre not in GENRE_GROOVE_STYLES:
        raise ValueError(f"unknown genre {genre!r}; expected one of {sorted(GENRE_GROOVE_STYLES)}")
    grooves = _load(str(DATA_PATH))
    pools = []
    for entry in GENRE_GROOVE_STYLES[genre]:
        style = entry.split("/", 1)[0]
        pool = tuple(g for g in grooves.get(style, ()) if _matches(g, entry))
        if pool:
            pools.append((entry, pool))
    return pools


def pick_groove(genre: str, rng: np.random.Generator, *, bpm: float | None = None) -> Groove | None:
    """A groove that fits ``genre`` (None for genres without kit drums, i.e. classical).

    Picks an entry of GENRE_GROOVE_STYLES[genre] with weight 1/(i+1), then a groove in it
    uniformly. With ``bpm``, grooves played within 30 % of that tempo are preferred when the
    entry has any (human timing feel depends on tempo). Deterministic for a given rng state.
    """
    pools = genre_pools(genre)
    if not pools:
        return None
    weights = np.array([1.0 / (i + 1) for i in range(len(pools))])
    _, pool = pools[int(rng.choice(len(pools), p=weights / weights.sum()))]
    if bpm is not None and bpm > 0:
        near = tuple(g for g in pool if abs(g.bpm / bpm - 1.0) <= 0.3)
        pool = near or pool
    return pool[int(rng.integers(len(pool)))]


def _swing_warp(beat: float, swing: float) -> float:
    """Move the off-beat 8th (x.5) to x.5 + swing/6 (swing=1: triplet feel), warping linearly."""
    whole = np.floor(beat)
    frac = beat - whole
    mid = 0.5 + swing / 6.0
    if frac <= 0.5:
        warped = frac * (mid / 0.5)
    else:
        warped = mid + (frac - 0.5) * ((1.0 - mid) / 0.5)
    return float(whole + warped)


def groove_events(groove: Groove, n_bars: int, swing: float = 0.0) -> list[Event]:
    """The groove's events tiled over ``n_bars`` bars of 4-4, sorted by time.

    The 2-bar window repeats; an odd ``n_bars`` ends with the window's first bar. Beats lie in
    ``[0, 4 * n_bars)`` (a first hit played ahead of beat 0 is moved to 0). ``swing`` in [0, 1]
    delays off-beat 8ths (and warps 16ths with them) on top of the drummer's own feel.
    """
    if n_bars <= 0:
        return []
    if not 0.0 <= swing <= 1.0:
        raise ValueError(f"swing must be in [0, 1], got {swing}")
    end = BEATS_PER_BAR * n_bars - EARLY  # later hits belong to the downbeat after the last bar
    out: list[Event] = []
    for start in range(0, BEATS_PER_BAR * n_bars, WINDOW_BEATS):
        for beat, note, vel in groove.events:
            t = start + beat
            if t >= end:
                continue
            if swing:
                t = _swing_warp(t, swing)
            out.append((max(0.0, round(t, 4)), note, vel))
    out.sort(key=lambda e: (e[0], e[1], e[2]))
    return out
