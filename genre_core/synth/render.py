"""Render MIDI to audio with the FluidSynth command-line synthesizer."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf

# Debian's General MIDI soundfonts, in order of preference (the 6 MB one renders fastest).
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
)
SHIFTED_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
# The MuseScore General soundfonts are reserved for held-out evaluation outside the project: the project never
# trains, tunes or tests on them, so it never renders with them.
RESERVED_SOUNDFONT_PREFIX = "musescore_general"


class SynthSetupError(RuntimeError):
    """FluidSynth or a soundfont is missing; the message says how to install it."""


def find_fluidsynth() -> str:
    path = shutil.which("fluidsynth")
    if path is None:
        raise SynthSetupError(
            "FluidSynth is not installed (no 'fluidsynth' on PATH). Install it with "
            "'apt-get install --no-install-recommends fluidsynth' or run 'make setup'."
        )
    return path


def is_reserved_soundfont(path: str) -> bool:
    """Whether ``path`` is, or links to, a MuseScore General soundfont (Debian's default-GM.sf2/.sf3 are
    alternatives links that point at MuseScore's file when it is installed)."""
    names = (os.path.basename(path), os.path.basename(os.path.realpath(path)))
    return any(n.lower().startswith(RESERVED_SOUNDFONT_PREFIX) for n in names)


def default_soundfont() -> str:
    for path in SOUNDFONT_CANDIDATES:
        if os.path.exists(path) and not is_reserved_soundfont(path):
            return path
    raise SynthSetupError(
        "no General MIDI soundfont found (looked for " + ", ".join(SOUNDFONT_CANDIDATES) + "). Install one with "
        "'apt-get install --no-install-recommends timgm6mb-soundfont' or pass --soundfont PATH."
    )


def check_soundfont(path: str) -> str:
    """Return ``path`` if it is a readable .sf2/.sf3 file, else raise a SynthSetupError saying why."""
    if not os.path.isfile(path):
        raise SynthSetupError(f"soundfont not found: {path}")
    if is_reserved_soundfont(path):
        raise SynthSetupError(
            f"soundfont {path} ({os.path.realpath(path)}) is a MuseScore General soundfont, reserved for held-out "
            "evaluation: "
            "the project never trains, tunes or tests on it. Pick another General MIDI soundfont."
        )
    if not path.lower().endswith((".sf2", ".sf3")):
        raise SynthSetupError(f"soundfont must be a .sf2 or .sf3 file: {path}")
    with open(path, "rb") as fh:
        head = fh.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise SynthSetupError(f"not a SoundFont file (no RIFF/sfbk header): {path}")
    return path


def render_midi(midi: bytes, soundfont: str, sample_rate: int = 22050, gain: float = 0.5) -> np.ndarray:
    """Render Standard MIDI File bytes to float32 mono audio at ``sample_rate``.

    FluidSynth's own reverb and chorus are off (our effects chain adds rooms); output is 32-bit float so
    that no dither noise makes renders differ between runs.
    """
    exe = find_fluidsynth()
    with tempfile.TemporaryDirectory(prefix="genre-synth-") as tmp:
        mid_path, wav_path = os.path.join(tmp, "song.mid"), os.path.join(tmp, "song.wav")
        with open(mid_path, "wb") as fh:
            fh.write(midi)
        cmd = [
            exe, "-ni", "-q", "-R", "0", "-C", "0", "-g", str(gain), "-r", str(sample_rate),
            "-O", "float", "-T", "wav", "-o", "synth.cpu-cores=1", "-F", wav_path, soundfont, mid_path,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not os.path.exists(wav_path):
            raise RuntimeError(f"fluidsynth failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
        audio, sr = sf.read(wav_path, dtype="float32", always_2d=True)
    if sr != sample_rate:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz, expected {sample_rate} Hz")
    return audio.mean(axis=1)
