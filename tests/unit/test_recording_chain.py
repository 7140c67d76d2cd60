"""genre_core.training.recording_chain: the degradations the GAN learns to undo."""

from __future__ import annotations

import numpy as np
import torch

from genre_core.refine import standardize_slices as standardize
from genre_core.training.recording_chain import LOG_MEL_STD, _room, degrade, mel_band_hz


def _crops(b: int = 6, m: int = 32, t: int = 24, seed: int = 0) -> torch.Tensor:
    return standardize(torch.randn(b, 1, m, t, generator=torch.Generator().manual_seed(seed)))


def test_band_frequencies_rise_within_the_front_end_range() -> None:
    hz = mel_band_hz(128, 20.0, 11025.0)
    assert hz.shape == (128,) and hz[0] > 20.0 and hz[-1] < 11025.0 and bool(np.all(np.diff(hz) > 0))


def test_degrade_keeps_shape_and_standardisation_and_is_seeded() -> None:
    x, hz = _crops(), mel_band_hz(32, 20.0, 11025.0)
    assert degrade(x, hz, 0.0, torch.Generator().manual_seed(0)) is x
    y = degrade(x, hz, 1.0, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and bool(torch.isfinite(y).all()) and (y - x).abs().mean() > 0.05
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), torch.zeros(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(y.std(dim=(1, 2, 3), unbiased=False), torch.ones(6), atol=1e-3, rtol=0)
    torch.testing.assert_close(y, degrade(x, hz, 1.0, torch.Generator().manual_seed(0)), rtol=0, atol=0)
    assert not torch.allclose(y, degrade(x, hz, 1.0, torch.Generator().manual_seed(1)))


def test_room_tail_is_causal_and_decays_faster_in_a_dry_room() -> None:
    power = torch.full((2, 1, 40), 1e-6)
    power[:, :, 10] = 1.0                                                      # one click at frame 10
    out = _room(power, rt60=torch.tensor([0.3, 1.8]), wet=torch.tensor([1.0, 1.0]))[:, 0]
    assert bool((out[:, :10] < 1e-5).all())                                   # nothing before the click
    tail = out[:, 11:30]
    assert bool((tail[:, 1:] <= tail[:, :-1] + 1e-9).all())                   # the tail only decays
    assert out[0, 25] < out[1, 25]                                            # short rt60 dies out sooner


def test_degrade_works_in_log_power_units() -> None:
    # a crop of pure "tone" in one band and silence (-40 dB) elsewhere: in ln-power units the degradations stay
    # finite and the tone stays above the crop's mean level (EQ and hiss change levels by dB, not by slice stds)
    x = torch.full((8, 1, 32, 16), -40 * np.log(10) / 10 / LOG_MEL_STD)
    x[:, :, 10] = 0.0
    y = degrade(standardize(x), mel_band_hz(32, 20.0, 11025.0), 1.0, torch.Generator().manual_seed(3))
    assert bool(torch.isfinite(y).all())
    assert bool((y[:, 0, 10].mean(dim=1) > y[:, 0].mean(dim=(1, 2))).all())
