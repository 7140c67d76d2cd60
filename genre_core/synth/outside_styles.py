"""Styles outside the ten-genre taxonomy: songs the tagger must leave unclassified (reason ``outside_taxonomy``).

A real catalog holds folk, latin, electronic, ambient, gospel and more; the genre model is never trained on them.
These styles exist only to choose and to test the out-of-taxonomy rule (:mod:`genre_core.outside`): catalogs of
them carry ``genre`` null (no genre of the taxonomy is right) and the style in ``style``. Each borrows a little
from the genres it sits beside, as real music does (folk strums like country, gospel shuffles like blues, house
keeps disco's four-on-the-floor), so telling them apart is not trivial.

Drum patterns as in :mod:`genre_core.synth.styles`: one bar on a 16th-note grid.
"""

from __future__ import annotations

from genre_core.synth.styles import (
    CLAP,
    CRASH,
    HAT,
    KICK,
    OPEN_HAT,
    RIDE,
    SHAKER,
    SNARE,
    STICK,
    TAMBOURINE,
    GenreStyle,
    _bars,
)

LOW_TOM, HIGH_TOM, LOW_CONGA, HIGH_CONGA, CLAVES, TRIANGLE = 45, 50, 64, 63, 75, 81

OUTSIDE_STYLES: dict[str, GenreStyle] = {}


def _add(style: GenreStyle) -> None:
    OUTSIDE_STYLES[style.name] = style


# Folk / celtic: fiddle, whistle, flute, accordion or bagpipe over strummed acoustic guitar and a drone-like bass;
# a bodhran-like tom pattern or no drums; modal tunes (mixolydian, dorian).
_add(GenreStyle(
    name="folk", tempo=(96, 180), swing=(0.5, 0.6), swing_unit=1.0,
    scales=(("major", 2), ("mixolydian", 2), ("dorian", 2)),
    progressions=(
        (_bars("I", "bVII", "I", "V"), 2), (_bars("i", "bVII", "i", "bVII"), 2), (_bars("I", "IV", "I", "V"), 1),
        (_bars("i", "bIII", "bVII", "i"), 1), ((("I", 2), ("bVII", 2), ("I", 2), ("V", 2)), 1),
        (_bars("I", "I", "bVII", "bVII"), 1),
    ),
    bass_programs=((32, 2), (42, 1), (21, 1)),
    comp_programs=((25, 3), (24, 2), (46, 1), (105, 1), (21, 1)),
    lead_programs=((40, 3), (78, 2), (73, 2), (109, 1), (21, 1), (75, 1)),
    pad_programs=((21, 1), (109, 1), (48, 1)),
    bass_styles=(("sustained", 3), ("root_fifth", 2), ("root_quarters", 1)),
    comp_styles=(("strum8", 3), ("arpeggio", 2), ("block", 1)),
    drum_patterns=(
        {LOW_TOM: "x.....x.....x...", HIGH_TOM: "...x.....x....x."},
        {LOW_TOM: "x..x..x.x..x..x.", TAMBOURINE: "....x.......x..."},
    ),
    groove_probability=0.0, lead_probability=0.95, pad_probability=0.2,
    lead_density=(2.0, 4.0), velocity=(60, 100),
))

# Latin / bossa nova: nylon guitar comping, rhodes or flute, a bossa bass; clave, shaker and congas, or a real
# latin groove (bossa, samba, songo) from the Groove MIDI Dataset.
_add(GenreStyle(
    name="latin", tempo=(80, 140), swing=(0.5, 0.54), swing_unit=0.5,
    scales=(("major", 2), ("dorian", 2), ("minor", 1)),
    progressions=(
        (_bars("Imaj7", "II7", "ii7", "bII7"), 2), (_bars("ii7", "V7", "Imaj7", "VI7"), 2),
        (_bars("i7", "iv7", "bVII7", "bIIImaj7"), 1), (_bars("Imaj7", "Imaj7", "ii7", "V7"), 1),
        (_bars("i7", "II7", "i7", "II7"), 1),
    ),
    bass_programs=((32, 3), (33, 2), (35, 1)),
    comp_programs=((24, 5), (4, 2), (0, 1), (26, 1)),
    lead_programs=((73, 3), (65, 2), (56, 1), (11, 1), (22, 1), (24, 1)),
    pad_programs=((48, 1), (89, 1)),
    bass_styles=(("bossa", 5), ("root_fifth", 1)),
    comp_styles=(("bossa", 5), ("arpeggio", 1)),
    drum_patterns=(
        {CLAVES: "x..x..x...x.x...", SHAKER: "xxxxxxxxxxxxxxxx", LOW_CONGA: "......x.......x.",
         HIGH_CONGA: "...x.......x.x.."},
        {STICK: "x..x..x...x..x..", KICK: "x..xx..xx..xx..x", HAT: "x.x.x.x.x.x.x.x."},
        {CLAVES: "..x.x...x..x..x.", SHAKER: "x.xxx.xxx.xxx.xx", KICK: "x.......x......."},
    ),
    groove_probability=0.5, lead_probability=0.7, pad_probability=0.2,
    lead_density=(1.0, 2.5), velocity=(55, 95),
))

# House / techno: four-on-the-floor kick with off-beat open hats and claps (disco's grid, but machine-tight and
# electronic), synth bass in 8ths or off-beats, synth stabs and pads, a synth lead now and then; one or two chords.
_add(GenreStyle(
    name="house", tempo=(118, 132), swing=(0.5, 0.52), swing_unit=0.5,
    scales=(("minor", 3), ("dorian", 2), ("phrygian", 1)),
    progressions=(
        (_bars("i7", "i7"), 3), (_bars("i7", "bVII"), 2), (_bars("i", "bVI", "bVII", "i"), 1),
        (_bars("ii7", "ii7", "i7", "i7"), 1), (_bars("i9", "iv9"), 1),
    ),
    bass_programs=((38, 3), (39, 3), (87, 2), (81, 1)),
    comp_programs=((81, 2), (90, 2), (4, 1), (80, 1), (62, 1), (95, 1)),
    lead_programs=((81, 3), (80, 2), (84, 1), (98, 1), (99, 1)),
    pad_programs=((89, 2), (90, 2), (94, 1), (95, 1)),
    bass_styles=(("offbeat", 4), ("root_8ths", 2), ("octave", 1)),
    comp_styles=(("stabs", 2), ("offbeat", 3), ("muted16", 1)),
    drum_patterns=(
        {KICK: "x...x...x...x...", OPEN_HAT: "..x...x...x...x.", CLAP: "....x.......x..."},
        {KICK: "x...x...x...x...", HAT: "xxxxxxxxxxxxxxxx", OPEN_HAT: "..x...x...x...x.", SNARE: "....x.......x..."},
        {KICK: "x...x...x...x...", OPEN_HAT: "..x...x...x...x.", RIDE: "x.x.x.x.x.x.x.x.", CLAP: "....x.......x..."},
    ),
    groove_probability=0.0, lead_probability=0.4, pad_probability=0.8,
    lead_density=(1.0, 4.0), velocity=(85, 115), bass_octave=1,
))

# Ambient: slow sustained pads, bells and choirs, no drums, long chords; quiet and washed out.
_add(GenreStyle(
    name="ambient", tempo=(56, 84), swing=(0.5, 0.5), swing_unit=1.0,
    scales=(("major", 2), ("minor", 2), ("dorian", 1)),
    progressions=(
        ((("Imaj7", 8), ("IVmaj7", 8)), 2), ((("i9", 8), ("bVImaj7", 8)), 2), ((("Iadd9", 8), ("vi7", 8)), 1),
        ((("i7", 16),), 1), ((("IVmaj7", 8), ("Iadd9", 8)), 1),
    ),
    bass_programs=((89, 2), (95, 2), (92, 1), (39, 1)),
    comp_programs=((88, 2), (89, 2), (91, 2), (94, 1), (52, 1), (48, 1)),
    lead_programs=((14, 2), (8, 2), (98, 1), (88, 1), (11, 1), (75, 1)),
    pad_programs=((89, 3), (91, 2), (95, 2), (52, 1), (50, 1)),
    bass_styles=(("sustained", 1),),
    comp_styles=(("block", 3), ("arpeggio", 1)),
    drum_patterns=(), groove_probability=0.0, lead_probability=0.6, pad_probability=0.95,
    lead_density=(0.25, 0.75), velocity=(35, 75), comp_octave=4, bass_octave=2,
))

# Gospel: church or Hammond organ and piano with a choir, gospel chord movement (I-IV with passing chords,
# 6/8-like shuffles and backbeats); real gospel or soul grooves.
_add(GenreStyle(
    name="gospel", tempo=(64, 132), swing=(0.55, 0.67), swing_unit=1.0,
    scales=(("major", 5), ("mixolydian", 1)),
    progressions=(
        (_bars("I", "I7", "IV", "iv"), 2), (_bars("I", "vi7", "ii7", "V7"), 1),
        ((("I", 2), ("I7", 2), ("IV", 2), ("V7", 2)), 2),
        (_bars("IV", "I", "V", "vi"), 1), (_bars("I", "iii7", "IV", "V7"), 1),
    ),
    bass_programs=((33, 3), (32, 2), (16, 1)),
    comp_programs=((19, 3), (16, 3), (0, 3), (20, 1)),
    lead_programs=((52, 3), (53, 2), (16, 1), (0, 1), (56, 1)),
    pad_programs=((52, 4), (19, 2), (53, 1)),
    bass_styles=(("walking", 2), ("root_fifth", 2), ("octave", 1)),
    comp_styles=(("block", 3), ("shuffle", 1), ("stabs", 1), ("strum8", 1)),
    drum_patterns=(
        {KICK: "x.....x.x.......", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x.", TAMBOURINE: "....x.......x..."},
        {KICK: "x.......x.......", CLAP: "....x.......x...", RIDE: "x..x..x..x..x..x", CRASH: "x..............."},
        {KICK: "x..x....x.......", SNARE: "....x.......x...", TAMBOURINE: "x.x.x.x.x.x.x.x.",
         TRIANGLE: "x..............."},
    ),
    groove_probability=0.5, lead_probability=0.7, pad_probability=0.8,
    lead_density=(0.75, 2.0), velocity=(70, 110),
))

OUTSIDE_NAMES: tuple[str, ...] = tuple(OUTSIDE_STYLES)
