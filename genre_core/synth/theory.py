"""Just enough music theory to compose: scales, chords from roman numerals, voicings."""

from __future__ import annotations

import re

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "major_pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}

# Chord qualities as semitone offsets from the root.
QUALITIES: dict[str, tuple[int, ...]] = {
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "5": (0, 7, 12),
    "sus4": (0, 5, 7),
    "sus2": (0, 2, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "m7b5": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9),
    "6": (0, 4, 7, 9),
    "m6": (0, 3, 7, 9),
    "9": (0, 4, 7, 10, 14),
    "maj9": (0, 4, 7, 11, 14),
    "m9": (0, 3, 7, 10, 14),
    "13": (0, 4, 10, 14, 21),
    "add9": (0, 4, 7, 14),
}

_DEGREES = {"I": 0, "II": 2, "III": 4, "IV": 5, "V": 7, "VI": 9, "VII": 11}
_NUMERAL = re.compile(r"^(b|#)?(VII|VI|V|IV|III|II|I|vii|vi|v|iv|iii|ii|i)(.*)$")


def parse_numeral(numeral: str) -> tuple[int, str]:
    """'bVII7' -> (10, '7'); 'ii7' -> (2, 'm7'); 'vi' -> (9, 'm'). Lower case means minor."""
    match = _NUMERAL.match(numeral)
    if not match:
        raise ValueError(f"not a roman numeral chord: {numeral!r}")
    accidental, roman, quality = match.groups()
    offset = _DEGREES[roman.upper()] + {"b": -1, "#": 1, None: 0}[accidental]
    if roman.islower() and not quality.startswith(("m", "dim")):
        quality = "m" + quality if quality not in ("5",) else quality
        quality = {"mmaj7": "m7", "m7b5": "m7b5"}.get(quality, quality)
    if quality not in QUALITIES:
        raise ValueError(f"unknown chord quality {quality!r} in {numeral!r}")
    return offset % 12, quality


def chord_pitches(key_root: int, numeral: str, octave: int = 4) -> list[int]:
    """MIDI pitches of a roman-numeral chord in a key whose tonic is ``key_root`` (0 = C)."""
    offset, quality = parse_numeral(numeral)
    root = 12 * (octave + 1) + key_root + offset
    return [root + i for i in QUALITIES[quality]]


def chord_root(key_root: int, numeral: str, octave: int = 2) -> int:
    offset, _ = parse_numeral(numeral)
    return 12 * (octave + 1) + key_root + offset


def voice_near(pitches: list[int], centre: int) -> list[int]:
    """Move each chord tone by octaves to lie within a fifth or so of ``centre`` (close voicing)."""
    out = []
    for p in pitches:
        while p < centre - 7:
            p += 12
        while p > centre + 7:
            p -= 12
        out.append(p)
    return sorted(set(out))


def scale_pitches(key_root: int, scale: str, low: int, high: int) -> list[int]:
    """All pitches of a scale between ``low`` and ``high`` inclusive."""
    steps = SCALES[scale]
    return [p for p in range(low, high + 1) if (p - key_root) % 12 in steps]
