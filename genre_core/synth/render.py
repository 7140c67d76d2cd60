"""Render MIDI to audio with the FluidSynth command-line synthesizer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf

# Debian's General MIDI soundfonts the corpus is rendered with: short name -> (file, Debian package).
# Each song of a catalog draws one of them (see genre_core.synth.catalog.plan_catalog), so that a model
# cannot tell genres apart by the soundfont. OPL-3 is an FM-synthesis bank (a very different timbre); FluidR3
# Mono is an .sf3 (Vorbis samples).
SOUNDFONTS: dict[str, tuple[str, str]] = {
    "timgm6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
    "fluidr3": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    "fluidr3mono": ("/usr/share/sounds/sf3/FluidR3Mono_GM.sf3", "fluidr3mono-gm-soundfont"),
    "csound": ("/usr/share/sounds/sf2/sf_GMbank.sf2", "csound-soundfont"),
    "opl3": ("/usr/share/sounds/sf2/OPL-3_FM_128M.sf2", "opl3-soundfont"),
}

# Soundfonts made from the same recordings, by file name: a model "held out" from one of them has heard the
# other, so held-out evaluations hold out a whole family. sf_GMbank holds 318 of TimGM6mb's 505 samples byte
# for byte (27% of TimGM6mb's sample frames, 39% of its own); FluidR3 Mono is FluidR3's samples made mono and
# Vorbis-compressed (Debian's description of fluidr3mono-gm-soundfont). The other soundfonts share no
# sample (sha1 of each sample's PCM data, 2026-12-06). A file not named here is a family of its own.
SAMPLE_FAMILIES: dict[str, str] = {
    "TimGM6mb.sf2": "TimGM6mb+sf_GMbank", "sf_GMbank.sf2": "TimGM6mb+sf_GMbank",
    "FluidR3_GM.sf2": "FluidR3", "FluidR3Mono_GM.sf3": "FluidR3",
}


def sample_family(soundfont: str) -> str:
    """The family of a soundfont path or file name (SAMPLE_FAMILIES): its relatives share recordings with it."""
    name = os.path.basename(soundfont)
    return SAMPLE_FAMILIES.get(name, os.path.splitext(name)[0])


# The MuseScore General soundfonts (Debian packages musescore-general-soundfont*, files
# MuseScore_General*.sf2/.sf3) are reserved for held-out evaluation by people outside this project:
# the project never renders, trains, tunes or tests on them. Matched on every file name along a
# symlink chain (Debian's default-GM.sf2/.sf3 alternatives may point at them) and on the soundfont's
# own INAM name.
_RESERVED = re.compile(r"musescore[\s_\-]*general", re.IGNORECASE)
RESERVED_MESSAGE = ("is a MuseScore General soundfont, reserved for held-out evaluation outside this project: "
                    "never render, train, tune or test on it")


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


def is_reserved_soundfont(name: str) -> bool:
    """True if ``name`` (a file name, path or soundfont name) names a reserved MuseScore General soundfont."""
    return bool(_RESERVED.search(os.path.basename(str(name).rstrip("/\\"))))


def _link_chain(path: str) -> list[str]:
    """``path`` and every path its symlinks lead through, ending at the real file."""
    chain, seen = [os.path.abspath(path)], set()
    while os.path.islink(chain[-1]) and chain[-1] not in seen and len(chain) < 40:
        seen.add(chain[-1])
        target = os.readlink(chain[-1])
        chain.append(os.path.normpath(os.path.join(os.path.dirname(chain[-1]), target)))
    real = os.path.realpath(path)
    if real != chain[-1]:  # a symlinked folder on the way
        chain.append(real)
    return chain


def _info_name(head: bytes) -> str:
    """The INAM (bank name) of a SoundFont's INFO list, from the file's first bytes ('' if absent)."""
    at = head.find(b"INAM", 12)
    if at < 0 or at + 8 > len(head):
        return ""
    size = int.from_bytes(head[at + 4:at + 8], "little")
    return head[at + 8:at + 8 + min(size, 256)].split(b"\0")[0].decode("latin-1", "replace")


def installed_soundfonts() -> dict[str, str]:
    """Short name -> path of the SOUNDFONTS that are installed here, in the order of SOUNDFONTS."""
    return {name: path for name, (path, _) in SOUNDFONTS.items() if os.path.isfile(path)}


def default_soundfont() -> str:
    """The first installed soundfont of SOUNDFONTS."""
    for path in installed_soundfonts().values():
        return path
    raise SynthSetupError(
        "no General MIDI soundfont found (looked for " + ", ".join(p for p, _ in SOUNDFONTS.values()) + "). "
        "Install them with 'apt-get install --no-install-recommends " + " ".join(k for _, k in SOUNDFONTS.values())
        + "' or run 'make system-deps'."
    )


def check_soundfont(path: str) -> str:
    """Return ``path`` if it is a readable .sf2/.sf3 file, else raise a SynthSetupError saying why.

    Refuses the reserved MuseScore General soundfonts, whether named directly, reached through a symlink
    (e.g. Debian's default-GM.sf3 alternative) or renamed (by the bank name inside the file).
    """
    for hop in _link_chain(path):
        if is_reserved_soundfont(hop):
            where = "" if hop == os.path.abspath(path) else f" (it resolves to {hop})"
            raise SynthSetupError(f"soundfont {path}{where} {RESERVED_MESSAGE}")
    if not os.path.isfile(path):
        raise SynthSetupError(f"soundfont not found: {path}")
    if not path.lower().endswith((".sf2", ".sf3")):
        raise SynthSetupError(f"soundfont must be a .sf2 or .sf3 file: {path}")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise SynthSetupError(f"not a SoundFont file (no RIFF/sfbk header): {path}")
    if is_reserved_soundfont(_info_name(head)):
        raise SynthSetupError(f"soundfont {path} (bank name {_info_name(head)!r}) {RESERVED_MESSAGE}")
    return path


def resolve_soundfonts(spec: str) -> list[str]:
    """The soundfonts named by ``spec``, checked, as real paths (symlinks resolved), in order, no duplicates.

    ``spec`` is ``all`` (every installed soundfont of SOUNDFONTS) or a comma list of short names of
    SOUNDFONTS and .sf2/.sf3 paths. Raises SynthSetupError naming what is missing or refused.
    """
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        raise SynthSetupError("no soundfont given: pass 'all', short names (" + ", ".join(SOUNDFONTS)
                              + ") or .sf2/.sf3 paths")
    paths: list[str] = []
    for item in items:
        if item == "all":
            found = list(installed_soundfonts().values())
            if not found:
                default_soundfont()  # raises, saying what to install
            paths += found
        elif item in SOUNDFONTS:
            path, package = SOUNDFONTS[item]
            if not os.path.isfile(path):
                raise SynthSetupError(f"soundfont {item!r} is not installed ({path}); install it with "
                                      f"'apt-get install --no-install-recommends {package}' or run 'make system-deps'")
            paths.append(path)
        else:
            paths.append(item)
    out: list[str] = []
    for path in paths:
        real = os.path.realpath(check_soundfont(path))
        if real not in out:
            out.append(real)
    return out


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
            "-O", "float", "-T", "wav", "-o", "synth.cpu-cores=1",
        ]
        if soundfont.lower().endswith(".sf3"):
            # Decode only the Vorbis samples the song plays (5x faster for FluidR3 Mono; same bytes each run).
            cmd += ["-o", "synth.dynamic-sample-loading=1"]
        cmd += ["-F", wav_path, soundfont, mid_path]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not os.path.exists(wav_path):
            raise RuntimeError(f"fluidsynth failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
        audio, sr = sf.read(wav_path, dtype="float32", always_2d=True)
    if sr != sample_rate:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz, expected {sample_rate} Hz")
    return audio.mean(axis=1)
