"""What makes each genre sound like itself: tempo, feel, harmony, instruments, bass/comp/drum patterns.

Genres deliberately overlap where real ones do: rock/metal/pop share guitars and backbeats, blues and jazz
share swing and dominant sevenths, disco and pop share four-on-the-floor, hip-hop and reggae share slow
half-time feels. Choices are weighted lists, so every song draws its own combination.

Drum patterns are one bar on a 16th-note grid: ``X`` accent, ``x`` normal, ``o`` ghost, ``.`` rest.
"""

from __future__ import annotations

from dataclasses import dataclass

# General MIDI drum notes used below.
KICK, SNARE, STICK, CLAP, HAT, PEDAL_HAT, OPEN_HAT = 36, 38, 37, 39, 42, 44, 46
CRASH, RIDE, RIDE_BELL, TAMBOURINE, COWBELL, SHAKER = 49, 51, 53, 54, 56, 70
DrumPattern = dict[int, str]
Weighted = tuple[tuple[object, float], ...]


@dataclass(frozen=True)
class GenreStyle:
    name: str
    tempo: tuple[int, int]
    swing: tuple[float, float]         # 0.5 = straight; 0.67 = triplet swing
    swing_unit: float                  # 1.0 = swung 8ths, 0.5 = swung 16ths
    scales: Weighted                   # (scale name, weight)
    progressions: Weighted             # (tuple of (numeral, beats), weight)
    bass_programs: Weighted
    comp_programs: Weighted
    lead_programs: Weighted
    pad_programs: Weighted
    bass_styles: Weighted
    comp_styles: Weighted
    drum_patterns: tuple[DrumPattern, ...]
    groove_probability: float          # chance to use a real Groove MIDI performance instead
    lead_probability: float
    pad_probability: float
    lead_density: tuple[float, float]  # notes per beat
    velocity: tuple[int, int]
    comp_octave: int = 4
    bass_octave: int = 2


def _bars(*chords: str, beats: float = 4.0) -> tuple[tuple[str, float], ...]:
    return tuple((c, beats) for c in chords)


BLUES_12 = _bars("I7", "IV7", "I7", "I7", "IV7", "IV7", "I7", "I7", "V7", "IV7", "I7", "V7")
QUICK_CHANGE = _bars("I7", "IV7", "I7", "I7", "IV7", "IV7", "I7", "I7", "V7", "V7", "I7", "I7")
MINOR_BLUES = _bars("i7", "i7", "i7", "i7", "iv7", "iv7", "i7", "i7", "bVI7", "V7", "i7", "V7")

# Instrument swaps: each song, each drawn program is replaced with probability SWAP_PROBABILITY by another
# program of its group, a close relative within the same General MIDI family (pianos, electric pianos,
# organs, clean / distorted guitars, electric basses, string sections, brass, saxes, ...). Groups are narrower
# than GM families where a family spans very different sounds (a jazz guitar never becomes a distorted one).
SWAP_PROBABILITY = 0.5
SWAP_GROUPS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 3),          # acoustic / bright / electric grand / honky-tonk piano
    (4, 5),                # electric pianos
    (8, 9, 10), (11, 12, 13),  # celesta, glockenspiel, music box; vibraphone, marimba, xylophone
    (16, 17, 18),          # drawbar / percussive / rock organ
    (19, 20),              # church / reed organ
    (21, 23),              # accordion, tango accordion
    (24, 25),              # nylon / steel acoustic guitar
    (26, 27, 28),          # jazz / clean / muted electric guitar
    (29, 30),              # overdriven / distortion guitar
    (33, 34),              # finger / pick electric bass
    (36, 37), (38, 39),    # slap basses; synth basses
    (40, 41), (42, 43),    # violin, viola; cello, contrabass
    (48, 49, 50, 51),      # string ensembles, synth strings
    (52, 53, 54),          # choir aahs, voice oohs, synth voice
    (56, 59), (57, 58),    # trumpet, muted trumpet; trombone, tuba
    (61, 62, 63),          # brass section, synth brass
    (64, 65, 66, 67),      # saxophones
    (68, 69), (70, 71),    # oboe, English horn; bassoon, clarinet
    (72, 73, 74, 75),      # piccolo, flute, recorder, pan flute
    (80, 81, 84, 87),      # square / saw / charang / bass+lead synth leads
    (88, 89, 90, 91, 94, 95),  # synth pads
)
SWAP_GROUP_OF: dict[int, tuple[int, ...]] = {p: g for g in SWAP_GROUPS for p in g}

STYLES: dict[str, GenreStyle] = {}


def _add(style: GenreStyle) -> None:
    STYLES[style.name] = style


_add(GenreStyle(
    name="blues", tempo=(60, 130), swing=(0.6, 0.68), swing_unit=1.0,
    scales=(("major", 3), ("minor", 1)),
    progressions=(
        (_bars("I7", "V7", "IV7", "IV7", "I7", "V7", "I7", "V7"), 1),  # 8-bar blues
        (_bars("I7", "IV7", "I7", "I7", "IV7", "IV7", "I7", "VI7", "ii7", "V7", "I7", "V7"), 1),  # jazzy turnaround
        (_bars("i7", "iv7", "i7", "V7"), 1), (_bars("I7", "I7", "IV7", "I7"), 1),
        (BLUES_12, 4), (QUICK_CHANGE, 2), (MINOR_BLUES, 1), (_bars("I7", "IV7", "I7", "V7"), 1),
    ),
    bass_programs=((33, 3), (32, 2), (34, 1)),
    comp_programs=((27, 3), (29, 2), (0, 2), (16, 1), (17, 1), (26, 1)),
    lead_programs=((22, 2), (29, 2), (27, 1), (65, 1), (30, 1), (0, 1)),
    pad_programs=((16, 2), (19, 1), (0, 1)),
    bass_styles=(("boogie", 3), ("walking", 2), ("root_fifth", 1), ("root_quarters", 1)),
    comp_styles=(("shuffle", 3), ("stabs", 1), ("strum8", 1), ("block", 1)),
    drum_patterns=(
        {KICK: "x.......x.......", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
        {KICK: "x.......x.....o.", SNARE: "....x.......x...", RIDE: "x.x.x.x.x.x.x.x."},
        {KICK: "x...o...x...o...", SNARE: "....x.....o.x...", HAT: "x.xox.x.x.xox.x."},
    ),
    groove_probability=0.55, lead_probability=0.75, pad_probability=0.25,
    lead_density=(0.8, 2.0), velocity=(70, 105),
))

_add(GenreStyle(
    name="classical", tempo=(56, 140), swing=(0.5, 0.5), swing_unit=1.0,
    scales=(("major", 3), ("minor", 2), ("harmonic_minor", 1)),
    progressions=(
        (_bars("I", "IV", "viidim", "iii", "vi", "ii", "V", "I"), 1),  # circle of fifths
        (_bars("i", "iv", "bVII", "bIII", "bVI", "iidim", "V", "i"), 1), (_bars("i", "bVI", "bIII", "bVII"), 1),
        ((("I", 2), ("V", 2), ("vi", 2), ("iii", 2), ("IV", 2), ("I", 2), ("ii", 2), ("V", 2)), 1),
        (_bars("I", "ii", "I", "V7", "vi", "IV", "V7", "I"), 1),
        (_bars("I", "IV", "V", "I"), 2), (_bars("I", "vi", "ii", "V"), 2), (_bars("i", "iv", "V", "i"), 2),
        (_bars("I", "V", "vi", "iii", "IV", "I", "IV", "V"), 2), (_bars("I", "ii", "V7", "I", "IV", "V7"), 1),
        ((("I", 2), ("IV", 2), ("V7", 2), ("I", 2)), 1),
    ),
    bass_programs=((42, 3), (43, 2), (0, 2), (32, 1), (70, 1)),
    comp_programs=((48, 3), (0, 3), (49, 2), (46, 1), (6, 1), (19, 1)),
    lead_programs=((40, 3), (73, 2), (68, 2), (71, 1), (60, 1), (0, 2), (41, 1), (56, 1)),
    pad_programs=((48, 3), (49, 2), (52, 1), (89, 1)),
    bass_styles=(("sustained", 3), ("root_quarters", 1), ("arpeggio_low", 2)),
    comp_styles=(("alberti", 3), ("arpeggio", 3), ("block", 2)),
    drum_patterns=(), groove_probability=0.0, lead_probability=0.9, pad_probability=0.4,
    lead_density=(1.0, 3.0), velocity=(45, 95), comp_octave=4, bass_octave=2,
))

_add(GenreStyle(
    name="country", tempo=(88, 150), swing=(0.5, 0.56), swing_unit=1.0,
    scales=(("major", 6), ("mixolydian", 1)),
    progressions=(
        (_bars("I", "I", "IV", "I", "V", "IV", "I", "I"), 1), (_bars("I", "V", "IV", "I"), 1),
        (_bars("I", "vi", "IV", "V"), 1), (_bars("I", "I7", "IV", "iv"), 1), (_bars("I", "IV", "I", "V", "I"), 1),
        (_bars("I", "IV", "V", "I"), 3), (_bars("I", "I", "IV", "IV", "V", "V", "I", "I"), 2),
        (_bars("I", "V", "vi", "IV"), 1), (_bars("I", "IV", "I", "V7"), 2), (_bars("I", "ii", "V", "I"), 1),
    ),
    bass_programs=((33, 3), (32, 3), (34, 1)),
    comp_programs=((25, 4), (24, 2), (27, 2), (105, 1), (0, 1)),
    lead_programs=((110, 3), (105, 2), (22, 1), (27, 2), (25, 1), (0, 1)),
    pad_programs=((0, 1), (16, 1), (48, 1)),
    bass_styles=(("root_fifth", 5), ("walking", 1), ("root_quarters", 1)),
    comp_styles=(("boom_chick", 3), ("strum8", 3), ("arpeggio", 1)),
    drum_patterns=(
        {KICK: "x.......x.......", STICK: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
        {KICK: "x.......x.......", SNARE: "oooxooooooooxooo"},
        {KICK: "x...x...x...x...", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x.", TAMBOURINE: "....x.......x..."},
    ),
    groove_probability=0.5, lead_probability=0.7, pad_probability=0.15,
    lead_density=(1.0, 2.5), velocity=(65, 100),
))

_add(GenreStyle(
    name="disco", tempo=(110, 132), swing=(0.5, 0.53), swing_unit=0.5,
    scales=(("minor", 2), ("dorian", 2), ("major", 1)),
    progressions=(
        (_bars("i7", "IV7"), 1), (_bars("vi7", "ii7", "V7", "Imaj7"), 1), (_bars("Imaj7", "iii7", "vi7", "V7"), 1),
        (_bars("i7", "bVII", "bVI", "V7"), 1), (_bars("ii7", "iii7", "IVmaj7", "V"), 1),
        (_bars("i7", "iv7"), 2), (_bars("ii7", "V7", "Imaj7", "vi7"), 1), (_bars("i7", "bVII", "bVI", "bVII"), 1),
        (_bars("Imaj7", "ii7"), 1), (_bars("vi", "IV", "I", "V"), 1),
    ),
    bass_programs=((33, 2), (34, 2), (38, 1), (39, 1)),
    comp_programs=((28, 2), (7, 2), (4, 2), (48, 2), (27, 1)),
    lead_programs=((61, 2), (48, 2), (81, 1), (56, 1), (65, 1), (4, 1)),
    pad_programs=((48, 3), (49, 2), (89, 1), (61, 1)),
    bass_styles=(("octave", 5), ("root_8ths", 1), ("funk", 2)),
    comp_styles=(("muted16", 3), ("stabs", 2), ("offbeat", 1), ("block", 1)),
    drum_patterns=(
        {KICK: "x...x...x...x...", CLAP: "....x.......x...", OPEN_HAT: "..x...x...x...x.", HAT: "x...x...x...x..."},
        {KICK: "x...x...x...x...", SNARE: "....x.......x...", HAT: "xxxxxxxxxxxxxxxx", OPEN_HAT: "..x...x...x...x."},
        {KICK: "x...x...x...x...", SNARE: "....x.......x..o", OPEN_HAT: "..x...x...x...x.",
         TAMBOURINE: "x.x.x.x.x.x.x.x."},
    ),
    groove_probability=0.45, lead_probability=0.55, pad_probability=0.6,
    lead_density=(1.0, 2.5), velocity=(80, 115),
))

_add(GenreStyle(
    name="hiphop", tempo=(78, 100), swing=(0.5, 0.62), swing_unit=0.5,
    scales=(("minor", 3), ("dorian", 2), ("phrygian", 1), ("minor_pentatonic", 1)),
    progressions=(
        (_bars("i7", "bVImaj7", "bIIImaj7", "bVII"), 1), (_bars("i", "iv", "bVI", "V"), 1), (_bars("vi7", "IVmaj7"), 1),
        (_bars("i9", "iv9"), 1), (_bars("i", "bVII", "bVI", "bVII"), 1),
        (_bars("i7", "i7", "iv7", "iv7"), 2), (_bars("i", "bVI"), 2), (_bars("i7", "bVII"), 1),
        (_bars("ii7", "V7"), 1), (_bars("i", "i", "i", "bII"), 1), (_bars("Imaj7", "IVmaj7"), 1),
    ),
    bass_programs=((38, 3), (39, 2), (33, 2), (87, 1)),
    comp_programs=((4, 3), (0, 2), (48, 1), (11, 1), (5, 1)),
    lead_programs=((4, 2), (80, 1), (11, 1), (0, 1), (73, 1), (56, 1)),
    pad_programs=((48, 2), (89, 2), (91, 1), (50, 1)),
    bass_styles=(("hiphop", 4), ("sustained", 2), ("funk", 1)),
    comp_styles=(("stabs", 3), ("block", 2), ("arpeggio", 1), ("jazz_comp", 1)),
    drum_patterns=(
        {KICK: "x......x..x.....", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
        {KICK: "x.x.......x..x..", SNARE: "....X.......X...", HAT: "xxxxxxxxxxxxxxxx"},
        {KICK: "x.........x.....", CLAP: "........X.......", HAT: "x.x.x.xxx.x.x.xx"},
        {KICK: "x......x.x......", SNARE: "....X..o....X...", OPEN_HAT: "..............x.", HAT: "x.x.x.x.x.x.x..."},
    ),
    groove_probability=0.55, lead_probability=0.4, pad_probability=0.45,
    lead_density=(0.5, 1.5), velocity=(75, 115), bass_octave=1,
))

_add(GenreStyle(
    name="jazz", tempo=(96, 220), swing=(0.62, 0.7), swing_unit=1.0,
    scales=(("major", 3), ("dorian", 1), ("minor", 1)),
    progressions=(
        ((("Imaj7", 2), ("vi7", 2), ("ii7", 2), ("V7", 2), ("iii7", 2), ("VI7", 2), ("ii7", 2), ("V7", 2)), 1),
        (_bars("iim7b5", "V7", "i7", "i7"), 1),
        (_bars("Imaj7", "IVmaj7", "iii7", "VI7", "ii7", "V7", "Imaj7", "Imaj7"), 1),
        (_bars("I6", "vi7", "ii7", "V7"), 1),
        (_bars("i7", "iv7", "bVII7", "bIIImaj7", "bVImaj7", "iim7b5", "V7", "i7"), 1),  # minor circle
        (_bars("ii7", "V7", "Imaj7", "Imaj7"), 3), (_bars("Imaj7", "vi7", "ii7", "V7"), 3),
        (_bars("iii7", "VI7", "ii7", "V7"), 1), (_bars("ii7", "V7", "iii7", "VI7", "ii7", "V7", "Imaj7", "Imaj7"), 1),
        ((("ii7", 2), ("V7", 2), ("Imaj7", 4)), 1), (BLUES_12, 1),
    ),
    bass_programs=((32, 6), (33, 1)),
    comp_programs=((0, 4), (11, 2), (26, 2), (4, 1), (16, 1)),
    lead_programs=((65, 3), (66, 2), (56, 2), (59, 1), (64, 1), (11, 1), (73, 1), (26, 1)),
    pad_programs=((0, 1), (48, 1), (16, 1)),
    bass_styles=(("walking", 8), ("root_fifth", 1)),
    comp_styles=(("jazz_comp", 5), ("block", 1), ("stabs", 1)),
    drum_patterns=(
        {RIDE: "x...x.x.x...x.x.", PEDAL_HAT: "....x.......x...", KICK: "o.......o......."},
        {RIDE: "x...x.x.x...x.x.", PEDAL_HAT: "....x.......x...", SNARE: "......o.......o."},
        {RIDE: "x...x.x.x...x.x.", PEDAL_HAT: "....x.......x...", SNARE: "..o.......o...o.", KICK: "o..............."},
    ),
    groove_probability=0.55, lead_probability=0.85, pad_probability=0.1,
    lead_density=(1.0, 3.0), velocity=(55, 95),
))

_add(GenreStyle(
    name="metal", tempo=(96, 200), swing=(0.5, 0.5), swing_unit=1.0,
    scales=(("minor", 3), ("phrygian", 2), ("harmonic_minor", 1)),
    progressions=(
        (_bars("i5", "bVII5", "bVI5", "bVII5"), 1), (_bars("i5", "bIII5", "bVII5", "iv5"), 1),
        (_bars("i5", "bV5", "iv5", "i5"), 1), (_bars("i5", "i5", "bII5", "bII5"), 1),
        (_bars("i5", "bVI5", "bVII5", "i5"), 3), (_bars("i5", "bII5", "i5", "bVII5"), 2),
        (_bars("i5", "i5", "bVI5", "V5"), 1), (_bars("i5", "iv5", "bVI5", "bVII5"), 1),
        ((("i5", 2), ("bII5", 2), ("i5", 2), ("bVII5", 2)), 1),
    ),
    bass_programs=((34, 3), (33, 2), (30, 1)),
    comp_programs=((30, 6), (29, 2)),
    lead_programs=((30, 3), (29, 2), (81, 1), (48, 1)),
    pad_programs=((48, 2), (52, 1), (19, 1)),
    bass_styles=(("chug", 4), ("root_8ths", 2)),
    comp_styles=(("power_chug", 5), ("power16", 3), ("block", 1)),
    drum_patterns=(
        {KICK: "xxxxxxxxxxxxxxxx", SNARE: "....X.......X...", CRASH: "x...x...x...x..."},
        {KICK: "x.x.x.x.x.x.x.x.", SNARE: "....X.......X...", RIDE: "x.x.x.x.x.x.x.x."},
        {KICK: "x.x.x.x.x.x.x.x.", SNARE: "..X...X...X...X.", CRASH: "x.x.x.x.x.x.x.x."},
        {KICK: "x..x..x...x..x..", SNARE: "........X.......", HAT: "x.x.x.x.x.x.x.x."},
    ),
    groove_probability=0.25, lead_probability=0.5, pad_probability=0.15,
    lead_density=(1.5, 4.0), velocity=(95, 124), comp_octave=3, bass_octave=1,
))

_add(GenreStyle(
    name="pop", tempo=(88, 130), swing=(0.5, 0.54), swing_unit=0.5,
    scales=(("major", 5), ("minor", 2)),
    progressions=(
        (_bars("I", "V", "vi", "iii", "IV", "I", "IV", "V"), 1), (_bars("vi", "V", "IV", "V"), 1),
        (_bars("I", "IV", "vi", "V"), 1), (_bars("Iadd9", "V", "vi", "IV"), 1), (_bars("ii", "IV", "I", "V"), 1),
        (_bars("I", "V", "vi", "IV"), 4), (_bars("vi", "IV", "I", "V"), 3), (_bars("I", "vi", "IV", "V"), 2),
        (_bars("IV", "I", "V", "vi"), 1), (_bars("I", "iii", "IV", "V"), 1),
    ),
    bass_programs=((33, 2), (38, 2), (34, 1), (39, 1)),
    comp_programs=((0, 3), (4, 2), (27, 2), (25, 1), (89, 1), (5, 1)),
    lead_programs=((80, 2), (81, 2), (0, 2), (73, 1), (65, 1), (11, 1), (27, 1)),
    pad_programs=((89, 3), (88, 2), (48, 2), (91, 1)),
    bass_styles=(("root_8ths", 4), ("root_quarters", 2), ("octave", 1)),
    comp_styles=(("strum8", 2), ("block", 2), ("arpeggio", 2), ("stabs", 1), ("offbeat", 1)),
    drum_patterns=(
        {KICK: "x.....x.x.......", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
        {KICK: "x...x...x...x...", CLAP: "....x.......x...", HAT: "..x...x...x...x."},
        {KICK: "x.......x.x.....", SNARE: "....x.......x...", CLAP: "....x.......x...", SHAKER: "xxxxxxxxxxxxxxxx"},
    ),
    groove_probability=0.5, lead_probability=0.8, pad_probability=0.55,
    lead_density=(1.0, 2.0), velocity=(75, 110),
))

_add(GenreStyle(
    name="reggae", tempo=(64, 92), swing=(0.5, 0.6), swing_unit=0.5,
    scales=(("major", 3), ("minor", 2), ("dorian", 1)),
    progressions=(
        (_bars("I", "V"), 1), (_bars("i", "bVII", "bVI", "bVII"), 1), (_bars("ii", "V"), 1),
        (_bars("I", "IV", "V", "IV"), 1), (_bars("vi", "IV", "I", "V"), 1),
        (_bars("I", "IV"), 3), (_bars("i", "iv"), 2), (_bars("I", "V", "IV", "V"), 1), (_bars("i", "bVII"), 2),
        (_bars("I", "vi", "IV", "V"), 1),
    ),
    bass_programs=((33, 3), (34, 2), (38, 1), (32, 1)),
    comp_programs=((27, 3), (16, 3), (17, 1), (0, 1), (28, 1)),
    lead_programs=((16, 2), (56, 1), (65, 1), (27, 1), (11, 1), (80, 1)),
    pad_programs=((16, 2), (48, 1), (89, 1)),
    bass_styles=(("reggae", 6), ("root_quarters", 1)),
    comp_styles=(("skank", 5), ("offbeat", 2)),
    drum_patterns=(
        {KICK: "........x.......", STICK: "........x.......", HAT: "x.x.x.x.x.x.x.x."},
        {KICK: "x...x...x...x...", SNARE: "....x.......x...", HAT: "..x...x...x...x."},
        {KICK: "........X.......", SNARE: "........x.......", HAT: "xxx.xxx.xxx.xxx.", RIDE_BELL: "....x.......x..."},
    ),
    groove_probability=0.5, lead_probability=0.45, pad_probability=0.2,
    lead_density=(0.5, 1.5), velocity=(70, 105),
))

_add(GenreStyle(
    name="rock", tempo=(96, 168), swing=(0.5, 0.52), swing_unit=1.0,
    scales=(("major", 3), ("mixolydian", 2), ("minor", 2)),
    progressions=(
        (_bars("I", "IV"), 1), (_bars("I", "bIII", "IV", "I"), 1), (_bars("I", "V", "IV", "I"), 1),
        (_bars("i", "bVII", "bVI", "V"), 1), (_bars("IV", "I", "V", "V"), 1),
        (_bars("I", "IV", "V", "IV"), 2), (_bars("I", "bVII", "IV", "I"), 2), (_bars("I5", "IV5", "V5", "I5"), 2),
        (_bars("vi", "IV", "I", "V"), 1), (_bars("i", "bVI", "bVII", "i"), 1), (_bars("I", "V", "vi", "IV"), 1),
    ),
    bass_programs=((34, 3), (33, 3), (35, 1)),
    comp_programs=((29, 4), (30, 3), (27, 1), (25, 1), (16, 1)),
    lead_programs=((29, 3), (30, 2), (27, 1), (16, 1), (81, 1)),
    pad_programs=((16, 2), (48, 1), (89, 1)),
    bass_styles=(("root_8ths", 5), ("root_quarters", 1), ("root_fifth", 1)),
    comp_styles=(("strum8", 3), ("power_chug", 3), ("block", 1)),
    drum_patterns=(
        {KICK: "x.......x.x.....", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
        {KICK: "x.x.....x.x.....", SNARE: "....X.......X...", RIDE: "x.x.x.x.x.x.x.x."},
        {KICK: "x...x...x...x...", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
        {KICK: "x.....x...x.....", SNARE: "....x.......x...", OPEN_HAT: "x.x.x.x.x.x.x.x."},
    ),
    groove_probability=0.6, lead_probability=0.6, pad_probability=0.2,
    lead_density=(1.0, 3.0), velocity=(85, 120),
))
