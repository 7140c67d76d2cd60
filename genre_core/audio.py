"""Decode an audio file or URI into float32 mono samples at the target rate, with typed validation errors.

Decoding uses libsndfile (``soundfile``: WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...), resampling uses soxr ('HQ').
Only the first ``AudioConfig.max_duration_s`` seconds are read, so a huge file never loads fully from a local
path. Every problem with one track raises a :class:`~genre_core.errors.TrackError` subclass.
"""

from __future__ import annotations

import io
import os
import re
import stat
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from genre_core import storage
from genre_core.config import AudioConfig
from genre_core.errors import (
    DecodeError,
    EmptyAudioError,
    InvalidSamplesError,
    MissingObjectError,
    SilentAudioError,
    TooShortError,
    UnsafePathError,
)

DEFAULT_AUDIO_CONFIG = AudioConfig()
SILENCE_PEAK = 1e-6        # a peak |sample| below this is digital silence
RESAMPLE_QUALITY = "HQ"    # soxr quality; ~3.5 ms per 30 s of 44.1 kHz mono on one core

# Integer subtypes read as integers and scaled here: ~3x faster than libsndfile's own float conversion,
# and bit-identical to it (libsndfile normalises by 1/0x8000 and 1/0x80000000).
_INT16_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "ALAW", "ULAW"})
_INT32_SUBTYPES = frozenset({"PCM_24", "PCM_32"})
# libsndfile's log line when a WAV/AIFF header declares more data than the file holds.
_DATA_LENGTH_RE = re.compile(r"^\s*data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_LENGTH = 0x7F000000  # streaming writers put 0 or ~0xFFFFFFFF here: length unknown, not truncated


def load_audio(
    uri: str,
    cfg: AudioConfig = DEFAULT_AUDIO_CONFIG,
    root: str | None = None,
    min_seconds: float = 0.0,
) -> np.ndarray:
    """Decode ``uri`` (absolute path, ``file://`` or ``s3://`` URL) to float32 mono at ``cfg.sample_rate``.

    With ``root`` given, ``uri`` must lie inside it (a relative local ``uri`` is taken relative to ``root``);
    otherwise :class:`UnsafePathError`. Local files are streamed (only ``max_duration_s`` is read); s3
    objects are fetched into memory and decoded with :func:`decode_bytes`.
    """
    if storage.is_remote(uri):
        key = _check_remote(uri, root)
        try:
            data = storage.read_bytes(key)
        except FileNotFoundError as exc:
            raise MissingObjectError(f"{uri}: object not found") from exc
        return decode_bytes(data, cfg, name=uri, min_seconds=min_seconds)

    path = resolve_local_path(uri, root)
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise MissingObjectError(f"{uri}: file not found") from exc
    if not stat.S_ISREG(st.st_mode):
        raise MissingObjectError(f"{uri}: not a regular file")
    if st.st_size == 0:
        raise EmptyAudioError(f"{uri}: empty file (0 bytes)")
    with open(path, "rb") as fh:
        return _decode(fh, cfg, uri, min_seconds)


def decode_bytes(
    data: bytes,
    cfg: AudioConfig = DEFAULT_AUDIO_CONFIG,
    name: str = "<bytes>",
    min_seconds: float = 0.0,
) -> np.ndarray:
    """Decode an in-memory encoded file (any libsndfile format) to float32 mono at ``cfg.sample_rate``."""
    if len(data) == 0:
        raise EmptyAudioError(f"{name}: empty file (0 bytes)")
    return _decode(io.BytesIO(data), cfg, name, min_seconds)


def resolve_local_path(uri: str, root: str | None = None) -> str:
    """The absolute, symlink-resolved local path of ``uri``; raises UnsafePathError if it escapes ``root``."""
    path = storage.strip_file_scheme(uri)
    if "\x00" in path:
        raise UnsafePathError(f"{uri!r}: path contains a NUL byte")
    if root is None:
        return os.path.abspath(path)
    if storage.is_remote(root):
        raise UnsafePathError(f"{uri}: local path outside remote root {root}")
    base = os.path.realpath(storage.strip_file_scheme(root))
    resolved = os.path.realpath(os.path.join(base, path))  # join keeps an absolute ``path`` as is
    if os.path.commonpath([base, resolved]) != base:
        raise UnsafePathError(f"{uri}: resolves to {resolved}, outside root {base}")
    return resolved


def _check_remote(uri: str, root: str | None) -> str:
    """Validate a remote URI against ``root`` (same scheme and prefix, no '..' segments)."""
    if root is None:
        return uri
    rest = uri.partition("://")[2]
    if any(part in ("..", ".") for part in rest.split("/")):
        raise UnsafePathError(f"{uri}: '.' or '..' segments are not allowed")
    prefix = root.rstrip("/") + "/"
    if not uri.startswith(prefix):
        raise UnsafePathError(f"{uri}: outside root {root}")
    return uri


def _decode(src: BinaryIO, cfg: AudioConfig, name: str, min_seconds: float) -> np.ndarray:
    try:
        with sf.SoundFile(src) as snd:
            sr_in, subtype = snd.samplerate, snd.subtype
            limit = max(1, int(np.ceil(cfg.max_duration_s * sr_in)))
            expected = min(snd.frames, limit)
            exact_length = snd.frames < 2**62 and not subtype.startswith("MPEG")
            dtype = _read_dtype(subtype)
            raw = snd.read(frames=expected, dtype=dtype, always_2d=True)
            log = snd.extra_info
    except sf.LibsndfileError as exc:
        raise DecodeError(f"{name}: {exc.error_string}") from exc
    except (RuntimeError, ValueError, TypeError, EOFError) as exc:
        raise DecodeError(f"{name}: {exc}") from exc

    _check_truncation(name, log, raw.shape[0], expected if exact_length else None, sr_in)
    if raw.shape[0] == 0:
        raise EmptyAudioError(f"{name}: no audio frames")
    audio = _to_mono_float32(raw)
    if dtype == "float32" and not np.isfinite(audio).all():
        raise InvalidSamplesError(f"{name}: NaN or infinite samples")
    peak = max(float(audio.max()), -float(audio.min()))
    if peak < SILENCE_PEAK:
        raise SilentAudioError(f"{name}: digital silence (peak {peak:.2g})")
    if sr_in != cfg.sample_rate:
        audio = soxr.resample(audio, sr_in, cfg.sample_rate, quality=RESAMPLE_QUALITY)
        audio = audio.astype(np.float32, copy=False)
    if min_seconds > 0 and audio.shape[0] < min_seconds * cfg.sample_rate:
        raise TooShortError(f"{name}: {audio.shape[0] / cfg.sample_rate:.2f} s < {min_seconds:.2f} s")
    return audio


def _check_truncation(name: str, log: str, got: int, expected: int | None, sr_in: int) -> None:
    """Raise DecodeError when the data ends before the header says it should.

    ``expected`` is None where the container's frame count is only an estimate (MP3: mpg123 guesses it from
    the file size for streams without a Xing/Info header); such a stream keeps the audio that decoded.
    """
    match = _DATA_LENGTH_RE.search(log)
    if match:
        declared, actual = int(match.group(1)), int(match.group(2))
        if actual < declared < _UNKNOWN_LENGTH:
            raise DecodeError(f"{name}: truncated file (data chunk {declared} bytes, {actual} present)")
    if expected is not None and expected - got > max(sr_in // 10, expected // 1000):
        raise DecodeError(f"{name}: truncated stream ({got} of {expected} frames decoded)")


def _read_dtype(subtype: str) -> str:
    if subtype in _INT16_SUBTYPES:
        return "int16"
    return "int32" if subtype in _INT32_SUBTYPES else "float32"


def _to_mono_float32(raw: np.ndarray) -> np.ndarray:
    """[frames, channels] int16/int32/float32 -> contiguous float32 mono (channel mean, full scale = 1)."""
    scale = {np.dtype(np.int16): 2.0**-15, np.dtype(np.int32): 2.0**-31}.get(raw.dtype)
    if raw.shape[1] == 1:
        audio = raw[:, 0].astype(np.float32)  # always a fresh contiguous copy
    else:
        audio = raw.mean(axis=1, dtype=np.float32)
    if scale is not None:
        audio *= np.float32(scale)
    return audio
