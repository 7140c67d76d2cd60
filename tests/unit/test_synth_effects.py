"""Recording effects: seeded, bounded, and each one does what it says to the spectrum."""

from __future__ import annotations

import numpy as np
import pytest

from genre_core.synth import effects as E

SR = 22050


def _tone(freqs=(100.0, 6000.0), seconds=2.0):
    t = np.arange(int(SR * seconds)) / SR
    return sum(np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float64) * 0.3


def _band_energy(x, lo, hi):
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return spec[(freqs >= lo) & (freqs < hi)].sum()


def test_draw_is_seeded_and_presets_differ():
    a = E.draw_effects("default", np.random.default_rng(5))
    assert a == E.draw_effects("default", np.random.default_rng(5))
    shifted = [E.draw_effects("shifted", np.random.default_rng(s)) for s in range(50)]
    default = [E.draw_effects("default", np.random.default_rng(s)) for s in range(50)]
    assert sum(len(e) for e in shifted) > sum(len(e) for e in default)
    assert E.draw_effects("none", np.random.default_rng(0)).keys() == {"gain"}
    with pytest.raises(ValueError, match="unknown effects preset"):
        E.draw_effects("loud", np.random.default_rng(0))


def test_old_recording_removes_highs_and_lows():
    x = _tone((60.0, 1000.0, 8000.0))
    y = E.old_recording(x, SR, 300.0, 3000.0)
    assert _band_energy(y, 7000, 9000) < 0.01 * _band_energy(x, 7000, 9000)
    assert _band_energy(y, 40, 80) < 0.05 * _band_energy(x, 40, 80)
    assert _band_energy(y, 900, 1100) > 0.5 * _band_energy(x, 900, 1100)


def test_eq_tilts_the_spectrum():
    x = _tone()
    y = E.shelf_eq(x, SR, low_db=-6.0, high_db=6.0)
    assert _band_energy(y, 90, 110) < 0.6 * _band_energy(x, 90, 110)
    assert _band_energy(y, 5900, 6100) > 2.0 * _band_energy(x, 5900, 6100)


def test_reverb_adds_a_decaying_tail():
    x = np.zeros(SR * 2)
    x[100] = 1.0
    y = E.reverb(x, SR, rt60=1.0, wet=0.5, rng=np.random.default_rng(0))
    assert np.abs(y[SR // 2: SR]).max() > 1e-4          # still ringing after 0.5 s
    assert np.abs(y[SR // 10: SR // 5]).mean() > np.abs(y[SR: SR + SR // 10]).mean()  # and decaying


def test_noise_level_follows_snr():
    x = _tone()
    y = E.add_noise(x, 20.0, np.random.default_rng(0))
    snr = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
    assert snr == pytest.approx(20.0, abs=0.5)


def test_apply_effects_is_bounded_finite_and_deterministic():
    x = _tone()
    fx = E.draw_effects("shifted", np.random.default_rng(1))
    a, b = E.apply_effects(x, SR, fx, seed=3), E.apply_effects(x, SR, fx, seed=3)
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert np.isfinite(a).all() and np.abs(a).max() <= 0.99
