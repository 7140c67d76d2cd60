"""Broken audio files for the job-level tests, each made from a real rendered song, and what the job must say.

:func:`write_bad_inputs` writes one file per kind of bad input (under ``root``, plus files outside it for the
root-escape rows) and returns the catalog rows with the exact error kind each must end in.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 22050
LONG_RATE = 4000          # the 2-hour file: 8-bit mono at 4 kHz, 28.8 MB of real (non-silent) audio
LONG_SECONDS = 2 * 3600


@dataclass(frozen=True)
class BadInput:
    track_id: str
    audio_uri: str
    kind: str       # the expected error kind ("kind: message" in the labels' error column)
    detail: str     # a fragment the message must hold


def song_samples(path: str) -> np.ndarray:
    audio, sr = sf.read(path, dtype="float32")
    assert sr == SR and audio.ndim == 1
    return audio


def encode(audio: np.ndarray, fmt: str, subtype: str | None = None, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_with_codec(tag: int, payload: bytes, sr: int = SR) -> bytes:
    """A well-formed RIFF/WAVE file whose 'fmt ' chunk names codec ``tag`` (cbSize 0), then ``payload``."""
    fmt = struct.pack("<HHIIHHH", tag, 1, sr, sr * 2, 2, 16, 0)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def two_hour_wav(song: np.ndarray) -> bytes:
    """A 2-hour 8-bit 4 kHz mono WAV: the song, resampled, looped for two hours (28.8 MB, never silent)."""
    low = soxr.resample(song, SR, LONG_RATE).astype(np.float32)
    loop = np.clip(np.round(low * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    n = LONG_RATE * LONG_SECONDS
    data = (loop * (n // len(loop) + 1))[:n]
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + n, b"WAVE", b"fmt ", 16, 1, 1, LONG_RATE, LONG_RATE, 1,
                         8, b"data", n)
    return header + data


def bad_files(song: np.ndarray) -> dict[str, tuple[bytes, str, str]]:
    """file name -> (bytes, expected error kind, message fragment), for the bad inputs that are file contents."""
    rng = np.random.default_rng(7)
    flac = encode(song, "FLAC")
    wav16 = encode(song, "WAV", "PCM_16")
    mp3 = encode(song, "MP3")
    nan, inf = song.copy(), song.copy()
    nan[SR * 2] = np.nan
    inf[SR * 3] = np.inf
    return {
        "corrupt.flac": (b"\x00\x01junk" + rng.bytes(64 * 1024), "decode_error", "Format not recognised"),
        "truncated.wav": (wav16[: len(wav16) // 2], "decode_error", "truncated"),
        "truncated.mp3": (mp3[: len(mp3) // 2], "decode_error", "truncated"),
        "empty.flac": (b"", "empty_audio", "0 bytes"),
        "zero-length.wav": (encode(np.zeros(0, np.float32), "WAV", "PCM_16"), "empty_audio", "no audio frames"),
        "silence.flac": (encode(np.zeros(SR * 10, np.float32), "FLAC"), "silent_audio", "digital silence"),
        "short.flac": (encode(song[: int(SR * 1.5)], "FLAC"), "too_short", "needed for one slice"),
        "flac-named.mp3": (flac, "wrong_extension", "content is FLAC but the name says '.mp3'"),
        "notes.txt": (flac, "wrong_extension", "'.txt' is not an audio file extension"),
        "ac3-in.wav": (wav_with_codec(0x2000, rng.bytes(8192)), "unsupported_codec", "codec tag 0x2000 (AC-3)"),
        "aac.m4a": (struct.pack(">I", 24) + b"ftypM4A " + bytes(16) + rng.bytes(4096), "unsupported_codec",
                    "MP4/M4A"),
        "nan.wav": (encode(nan, "WAV", "FLOAT"), "invalid_samples", "NaN or infinite"),
        "inf.wav": (encode(inf, "WAV", "FLOAT"), "invalid_samples", "NaN or infinite"),
    }


def write_bad_inputs(root: Path, song: np.ndarray) -> list[BadInput]:
    """Write every bad file under ``root`` (and one valid song just outside it); return their catalog rows."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (data, kind, detail) in bad_files(song).items():
        (root / name).write_bytes(data)
        rows.append(BadInput(f"bad-{Path(name).stem}-{Path(name).suffix[1:]}", str(root / name), kind, detail))
    outside = root.parent / "outside.flac"
    outside.write_bytes(encode(song, "FLAC"))  # a valid song: only its place is wrong
    rows += [
        BadInput("bad-missing", str(root / "missing.flac"), "missing_object", "not found"),
        BadInput("bad-escape-dotdot", f"{root}/../outside.flac", "unsafe_path", "'..' segments are not allowed"),
        BadInput("bad-escape-absolute", str(outside), "unsafe_path", "outside root"),
    ]
    return rows
