"""Log-mel spectrograms and fixed-size slices of a song, as pure functions of audio and a FeatureConfig.

The log-mel is ``ln(mel_power + 1e-6)`` (natural log, floor 1e-6 -> -13.8; ``log_compression="ln"``) or
``log10(1 + 10000 * mel_power)`` (``"log10_1p"``, musicnn's front end); ``mel_power`` equals, to float32 rounding,
librosa's ``melspectrogram(center=True, pad_mode="constant", window="hann", power=2, htk=False,
norm="slaney")``, computed here with a periodic-Hann framed real FFT (scipy, one worker) and a sparse
Slaney mel filterbank; float32 throughout. Everything is single-threaded and ~3x faster than librosa's own
path; call :func:`warm_up` once per worker so the first song does not pay for imports and caches.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft
import scipy.sparse

from genre_core.config import ConfigError, FeatureConfig, fingerprint
from genre_core.errors import TooShortError

LOG_FLOOR = 1e-6         # added to mel power before the log
NORM_EPS = 1e-5          # added to the std in per-slice standardisation
NORMALIZATIONS = ("per_slice", "none")
LOG_COMPRESSIONS = ("ln", "log10_1p")
LOG10_1P_GAIN = 10000.0  # musicnn: log10(1 + 10000 * mel power)
FRAME_BLOCK = 128        # STFT frames processed per block in log_mel


def feature_version(cfg: FeatureConfig) -> str:
    """A stable identifier of the feature definition: ``"fv-" + fingerprint(cfg)``."""
    return "fv-" + fingerprint(cfg)


def log_mel(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel ``[n_mels, 1 + len(audio) // hop_length]`` float32 of mono audio at ``cfg.sample_rate``."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"log_mel expects non-empty 1-D mono audio, got shape {x.shape}")
    if cfg.log_compression not in LOG_COMPRESSIONS:
        raise ConfigError(f"features.log_compression={cfg.log_compression!r}; allowed: {list(LOG_COMPRESSIONS)}")
    n_fft, hop = cfg.n_fft, cfg.hop_length
    padded = np.pad(x, n_fft // 2)  # center=True, zero padding (librosa >= 0.10 default)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]  # a view, no copy
    window = _window(n_fft)
    basis = _mel_basis(cfg.sample_rate, n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    n_frames = frames.shape[0]
    mel = np.empty((cfg.n_mels, n_frames), dtype=np.float32)
    # Blocks of frames through buffers allocated once per song: the temporaries stay small and cache-resident
    # (2.3x faster than one block for the whole song with glibc's default thresholds, where the big temporaries
    # are handed back to the OS and faulted in again on every call; 5% with genre_core.allocator's).
    windowed = np.empty((min(FRAME_BLOCK, n_frames), n_fft), dtype=np.float32)
    power = np.empty((windowed.shape[0], n_fft // 2 + 1), dtype=np.float32)
    for start in range(0, n_frames, FRAME_BLOCK):
        stop = min(start + FRAME_BLOCK, n_frames)
        block, block_power = windowed[:stop - start], power[:stop - start]
        np.multiply(frames[start:stop], window, out=block)
        np.abs(scipy.fft.rfft(block, axis=-1, workers=1), out=block_power)
        block_power *= block_power  # [block, n_fft // 2 + 1]
        mel[:, start:stop] = basis @ block_power.T
    if cfg.log_compression == "log10_1p":
        mel *= np.float32(LOG10_1P_GAIN)
        np.log1p(mel, out=mel)
        mel *= np.float32(1.0 / np.log(10.0))
    else:
        mel += np.float32(LOG_FLOOR)
        np.log(mel, out=mel)
    return mel


def slice_mel(mel: np.ndarray, cfg: FeatureConfig, hop_frames: int | None = None) -> np.ndarray:
    """Cut ``mel [n_mels, n_frames]`` into ``[n_slices, n_mels, cfg.slice_frames]`` float32 slices.

    Slices start every ``hop_frames`` frames (default ``cfg.slice_hop_frames``); trailing frames that do not
    fill a whole slice are dropped, so ``n_slices = 1 + (n_frames - slice_frames) // hop``. With
    ``cfg.normalization == "per_slice"`` each slice is standardised (minus its mean, divided by its
    std + 1e-5); with ``"none"`` the log-mel values are kept. Raises TooShortError below one slice.
    """
    _check_normalization(cfg)
    hop = cfg.slice_hop_frames if hop_frames is None else int(hop_frames)
    if hop < 1:
        raise ConfigError(f"slice hop must be >= 1 frame, got {hop}")
    if mel.ndim != 2:
        raise ValueError(f"slice_mel expects a [n_mels, n_frames] array, got shape {mel.shape}")
    length, n_frames = cfg.slice_frames, mel.shape[1]
    if n_frames < length:
        raise TooShortError(
            f"{n_frames} mel frames < {length} needed for one slice ({cfg.slice_seconds:.2f} s)"
        )
    windows = np.lib.stride_tricks.sliding_window_view(mel, length, axis=1)[:, ::hop]  # [mels, n, length]
    slices = np.array(windows.transpose(1, 0, 2), dtype=np.float32, order="C")  # always a fresh copy
    if cfg.normalization == "per_slice":
        flat = slices.reshape(slices.shape[0], -1)
        mean = flat.mean(axis=1, keepdims=True)
        std = flat.std(axis=1, keepdims=True)
        flat -= mean
        flat /= std + np.float32(NORM_EPS)
    return slices


def song_slices(audio: np.ndarray, cfg: FeatureConfig, hop_frames: int | None = None) -> np.ndarray:
    """Log-mel slices ``[n_slices, n_mels, slice_frames]`` of a song; TooShortError below one slice."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1 and x.shape[0] < n_slice_samples(cfg):
        raise TooShortError(
            f"{x.shape[0] / cfg.sample_rate:.2f} s of audio < {cfg.slice_seconds:.2f} s needed for one slice"
        )
    _check_normalization(cfg)  # fail before the expensive part
    return slice_mel(log_mel(x, cfg), cfg, hop_frames)


def n_slices_for(n_samples: int, cfg: FeatureConfig, hop_frames: int | None = None) -> int:
    """How many slices :func:`song_slices` returns for ``n_samples`` of audio (0 when too short)."""
    hop = cfg.slice_hop_frames if hop_frames is None else hop_frames
    n_frames = 1 + n_samples // cfg.hop_length
    return 0 if n_frames < cfg.slice_frames else 1 + (n_frames - cfg.slice_frames) // hop


def warm_up(cfg: FeatureConfig) -> None:
    """Build the filterbank/window caches and FFT plans once (imports librosa's filter module, ~0.6 s)."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(n_slice_samples(cfg) + cfg.hop_length).astype(np.float32) * 0.1
    song_slices(noise, cfg)


def n_slice_samples(cfg: FeatureConfig) -> int:
    """The fewest audio samples that give one slice (``1 + n // hop_length >= slice_frames``)."""
    return (cfg.slice_frames - 1) * cfg.hop_length


def _check_normalization(cfg: FeatureConfig) -> None:
    if cfg.normalization not in NORMALIZATIONS:
        raise ConfigError(f"features.normalization={cfg.normalization!r}; allowed: {list(NORMALIZATIONS)}")


@functools.lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (== scipy.signal.get_window("hann", n_fft), without importing scipy.signal)."""
    win = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    win.setflags(write=False)
    return win


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> scipy.sparse.csr_matrix:
    """Slaney mel filterbank ``[n_mels, n_fft // 2 + 1]``, sparse float32."""
    import librosa.filters  # lazy: ~0.6 s import, paid once in warm_up

    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return scipy.sparse.csr_matrix(basis.astype(np.float32))
