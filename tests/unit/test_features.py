"""genre_core.features: log-mel values and shapes, slicing, normalisation, TooShortError, feature_version."""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest

from genre_core.config import ConfigError, FeatureConfig
from genre_core.errors import TooShortError
from genre_core.features import (
    feature_version,
    log_mel,
    n_slice_samples,
    n_slices_for,
    slice_mel,
    song_slices,
    warm_up,
)

CFG = FeatureConfig()
SR = CFG.sample_rate


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)


def test_log_mel_matches_librosa_reference() -> None:
    x = noise(5.0)
    ref = librosa.feature.melspectrogram(
        y=x, sr=SR, n_fft=CFG.n_fft, hop_length=CFG.hop_length, n_mels=CFG.n_mels, fmin=CFG.fmin, fmax=CFG.fmax
    )
    out = log_mel(x, CFG)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert out.shape == ref.shape == (CFG.n_mels, 1 + x.shape[0] // CFG.hop_length)
    np.testing.assert_allclose(out, np.log(ref + 1e-6), atol=1e-4)


def test_log_mel_puts_a_tone_in_the_right_band() -> None:
    t = np.arange(3 * SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out = log_mel(tone, CFG)
    centres = librosa.mel_frequencies(n_mels=CFG.n_mels + 2, fmin=CFG.fmin, fmax=CFG.fmax)[1:-1]
    band = int(np.argmax(out[:, out.shape[1] // 2]))
    assert abs(centres[band] - 1000) < 60


def test_log_mel_floor_on_zeros_and_rejects_bad_input() -> None:
    out = log_mel(np.zeros(SR, dtype=np.float32), CFG)
    np.testing.assert_allclose(out, np.log(1e-6), rtol=1e-6)
    with pytest.raises(ValueError):
        log_mel(np.zeros((2, SR), dtype=np.float32), CFG)
    with pytest.raises(ValueError):
        log_mel(np.zeros(0, dtype=np.float32), CFG)


def test_block_boundaries_do_not_change_values() -> None:
    x = noise(20.0, seed=3)  # > 256 frames: several FFT blocks
    whole = log_mel(x, CFG)
    part = log_mel(x[: 300 * CFG.hop_length], CFG)
    np.testing.assert_array_equal(whole[:, :290], part[:, :290])


@pytest.mark.parametrize("seconds", [2.96, 2.97, 3.0, 10.0, 30.0, 61.3])
def test_song_slices_shape_and_count(seconds: float) -> None:
    x = noise(seconds)
    n_frames = 1 + x.shape[0] // CFG.hop_length
    if n_frames < CFG.slice_frames:
        with pytest.raises(TooShortError):
            song_slices(x, CFG)
        assert n_slices_for(x.shape[0], CFG) == 0
        return
    out = song_slices(x, CFG)
    expected = 1 + (n_frames - CFG.slice_frames) // CFG.slice_hop_frames
    assert out.shape == (expected, CFG.n_mels, CFG.slice_frames)
    assert out.dtype == np.float32
    assert n_slices_for(x.shape[0], CFG) == expected


def test_30s_song_gives_ten_slices_and_overlap_gives_more() -> None:
    x = noise(30.0)
    assert song_slices(x, CFG).shape[0] == 10
    assert song_slices(x, CFG, hop_frames=64).shape[0] == 1 + (1292 - 128) // 64 == 19


def test_exactly_one_slice_boundary() -> None:
    n = n_slice_samples(CFG)
    assert song_slices(noise(5.0)[:n], CFG).shape[0] == 1
    with pytest.raises(TooShortError) as info:
        song_slices(noise(5.0)[: n - 1], CFG)
    assert info.value.kind == "too_short"


def test_slices_are_the_right_windows_of_the_mel() -> None:
    cfg = dataclasses.replace(CFG, normalization="none")
    x = noise(12.0, seed=1)
    mel = log_mel(x, cfg)
    out = slice_mel(mel, cfg, hop_frames=50)
    for i in range(out.shape[0]):
        np.testing.assert_array_equal(out[i], mel[:, 50 * i: 50 * i + cfg.slice_frames])
    out[0, 0, 0] = 123.0  # a copy, not a view of the mel
    assert mel[0, 0] != 123.0


def test_per_slice_normalisation() -> None:
    x = noise(10.0) * np.linspace(0.01, 1.0, int(10.0 * SR), dtype=np.float32)  # loudness ramp
    out = song_slices(x, CFG)
    flat = out.reshape(out.shape[0], -1)
    np.testing.assert_allclose(flat.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(flat.std(axis=1), 1.0, atol=1e-3)
    raw = song_slices(x, dataclasses.replace(CFG, normalization="none"))
    assert raw.reshape(raw.shape[0], -1).mean(axis=1)[-1] > raw.reshape(raw.shape[0], -1).mean(axis=1)[0]


def test_normalisation_of_a_constant_slice_is_finite() -> None:
    mel = np.full((CFG.n_mels, CFG.slice_frames), -5.0, dtype=np.float32)
    out = slice_mel(mel, CFG)
    assert out.shape == (1, CFG.n_mels, CFG.slice_frames)
    np.testing.assert_array_equal(out, 0.0)


def test_unknown_normalisation_is_a_config_error() -> None:
    cfg = dataclasses.replace(CFG, normalization="per_song")
    with pytest.raises(ConfigError, match="per_song"):
        song_slices(noise(5.0), cfg)
    with pytest.raises(ConfigError):
        slice_mel(np.zeros((CFG.n_mels, 200), dtype=np.float32), cfg)


def test_bad_hop_and_short_mel() -> None:
    with pytest.raises(ConfigError):
        slice_mel(np.zeros((CFG.n_mels, 200), dtype=np.float32), CFG, hop_frames=0)
    with pytest.raises(TooShortError):
        slice_mel(np.zeros((CFG.n_mels, CFG.slice_frames - 1), dtype=np.float32), CFG)


def test_other_feature_configs() -> None:
    cfg = FeatureConfig(sample_rate=16000, n_fft=512, hop_length=256, n_mels=64, fmax=8000.0, slice_frames=96)
    out = song_slices(noise(8.0), cfg)
    assert out.shape[1:] == (64, 96)


def test_feature_version_is_stable_and_tracks_config() -> None:
    assert feature_version(CFG) == feature_version(FeatureConfig())
    assert feature_version(CFG).startswith("fv-") and len(feature_version(CFG)) == 15
    changed = {
        feature_version(dataclasses.replace(CFG, **{name: value}))
        for name, value in [("n_mels", 64), ("hop_length", 256), ("normalization", "none"), ("fmin", 0.0)]
    }
    assert len(changed) == 4 and feature_version(CFG) not in changed


def test_warm_up_runs_and_is_deterministic() -> None:
    warm_up(CFG)
    x = noise(4.0, seed=7)
    np.testing.assert_array_equal(song_slices(x, CFG), song_slices(x.copy(), CFG))


MUSICNN_FRONT_END = FeatureConfig(sample_rate=16000, n_fft=512, hop_length=256, n_mels=96, fmin=0.0, fmax=8000.0,
                                  slice_frames=187, slice_hop_frames=187, normalization="none",
                                  log_compression="log10_1p")


def test_log10_1p_front_end_matches_musicnns_librosa_recipe() -> None:
    x = noise(5.0, seed=3)
    cfg = MUSICNN_FRONT_END
    # musicnn's own preprocessing: log10(10000 * melspectrogram + 1) at 16 kHz, n_fft 512, hop 256, 96 bands
    ref = np.log10(10000.0 * librosa.feature.melspectrogram(y=x, sr=16000, n_fft=512, hop_length=256, n_mels=96)
                   + 1.0)
    np.testing.assert_allclose(log_mel(x, cfg), ref, atol=1e-4, rtol=0)
    assert feature_version(cfg) != feature_version(dataclasses.replace(cfg, log_compression="ln"))


def test_unknown_log_compression_is_refused() -> None:
    with pytest.raises(ConfigError, match="log_compression"):
        log_mel(noise(1.0), dataclasses.replace(CFG, log_compression="log2"))
