"""Recording-chain augmentation of standardised log-mel crops: the degraded INPUT the GAN learns to clean up.

The shifted split is ambiguous to the CNN mainly because of how it was recorded (another soundfont, rooms,
equalisers, band-limited transfers, hiss, compression; see :mod:`genre_core.synth.effects`). With
``GANTrainConfig.augment > 0`` the generator is trained on crops degraded by :func:`degrade` and asked to give
back the CLEAN crop when the target genre is the crop's own (restoration) and after a round trip (cycle), so
``G(x, c)`` learns to remove recording effects from a slice of genre ``c``.

All effects act in the log-mel power domain of one crop ``[B, 1, n_mels, T]`` (standardised per slice, so
multiplied back by :data:`LOG_MEL_STD` first), each drawn per crop with the probability and parameter ranges of
the synthesizer's ``shifted`` preset, ranges scaled by ``strength`` (1 = that preset):

- room: power smeared forward in time with an exponential tail of ``rt60`` 0.3-1.8 s, ``wet`` 0.1-0.35;
- EQ: low shelf below 250 Hz and high shelf above 3 kHz, each +-7 dB;
- old transfer: band-pass 150-400 Hz .. 2.5-5 kHz (4th order);
- compression: each frame's level pulled towards the crop's mean level (drive 1.5-4);
- hiss: pink noise 18-40 dB below the crop's mean power;
- timbre: a spectral tilt and two smooth EQ bumps (always; an instrument sounding a little different).

The result is re-standardised per slice. Deterministic for a given ``torch.Generator``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genre_core.refine import standardize_slices

LOG_MEL_STD = 3.7        # median std of a 128-frame ln-mel slice of the demo corpus (ln power units)
HOP_SECONDS = 512 / 22050
REVERB_FRAMES = 48       # length of the room tail kernel (~1.1 s at the default hop)

# (probability per crop, as in genre_core.synth.effects.PRESETS["shifted"])
P_REVERB, P_EQ, P_OLD, P_COMPRESS, P_NOISE = 0.6, 0.7, 0.2, 0.4, 0.5


def mel_band_hz(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Centre frequencies (Hz) of the Slaney mel bands of the feature front end."""
    import librosa

    return librosa.mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=False)[1:-1].astype(np.float32)


def timbre(x: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """A spectral tilt (up to ``+-strength`` at the band edges) and two Gaussian EQ bumps (width 4-24 bands,
    gain ~ N(0, (strength/2)^2)), additive on ``x`` (any units), not re-standardised."""
    b, _, m, _ = x.shape
    f = torch.linspace(-1.0, 1.0, m).view(1, m)
    curve = (2 * torch.rand(b, 1, generator=gen) - 1) * strength * f
    for _ in range(2):
        center = torch.rand(b, 1, generator=gen) * (m - 1)
        width = 4 + 20 * torch.rand(b, 1, generator=gen)
        gain = torch.randn(b, 1, generator=gen) * strength / 2
        curve = curve + gain * torch.exp(-0.5 * ((torch.arange(m).view(1, m) - center) / width) ** 2)
    return x + curve.to(x.device).view(b, 1, m, 1)


def _draw(b: int, p: float, lo: float, hi: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    on = (torch.rand(b, generator=gen) < p).float()
    return on, lo + (hi - lo) * torch.rand(b, generator=gen)


def _room(power: torch.Tensor, rt60: torch.Tensor, wet: torch.Tensor) -> torch.Tensor:
    """``(1-wet)^2 P + wet^2 tail``, tail = P convolved (causally, in time) with a unit-sum exponential decay."""
    b, m, t = power.shape
    j = torch.arange(REVERB_FRAMES, dtype=power.dtype)
    decay = 10 ** (-6 * HOP_SECONDS * j.view(1, -1) / rt60.view(-1, 1))        # [b, K], power decay per frame
    kernel = (decay / decay.sum(1, keepdim=True)).flip(1)                       # conv1d is a correlation
    padded = F.pad(power.reshape(1, b * m, t), (REVERB_FRAMES - 1, 0), mode="replicate")
    tail = F.conv1d(padded, kernel.repeat_interleave(m, 0).unsqueeze(1), groups=b * m).view(b, m, t)
    w = wet.view(b, 1, 1)
    return (1 - w) ** 2 * power + w ** 2 * tail


def degrade(x: torch.Tensor, mel_hz: np.ndarray, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Random recording chain on standardised crops ``[B, 1, n_mels, T]`` (see the module docstring)."""
    if strength <= 0:
        return x
    b, _, m, _ = x.shape
    if len(mel_hz) != m:
        raise ValueError(f"{len(mel_hz)} band frequencies for {m} mel bands")
    hz = torch.as_tensor(mel_hz, dtype=x.dtype).view(1, m, 1)
    s = float(strength)
    log_p = x[:, 0].detach().cpu().float() * LOG_MEL_STD
    log_p = log_p - log_p.amax(dim=(1, 2), keepdim=True)                       # max 0: exp stays finite

    on, rt60 = _draw(b, P_REVERB, 0.3, 0.3 + 1.5 * s, gen)
    wet = on * (0.1 + 0.25 * torch.rand(b, generator=gen)) * min(s, 1.0)
    log_p = torch.log(_room(log_p.exp(), rt60, wet) + 1e-30)

    on, low_db = _draw(b, P_EQ, -7 * s, 7 * s, gen)
    high_db = (-7 + 14 * torch.rand(b, generator=gen)) * s
    h_low = 1 / torch.sqrt(1 + (hz / 250) ** 4)
    h_high = 1 / torch.sqrt(1 + (3000 / hz) ** 4)
    a, c = 10 ** (low_db / 20), 10 ** (high_db / 20)
    gain = (1 + (a.view(b, 1, 1) - 1) * h_low + (c.view(b, 1, 1) - 1) * h_high) ** 2
    log_p = log_p + on.view(b, 1, 1) * torch.log(gain)

    on, low_hz = _draw(b, P_OLD * min(s, 1.0), 150, 400, gen)
    high_hz = 5000 - 2500 * torch.rand(b, generator=gen)
    band = 1 / (1 + (low_hz.view(b, 1, 1) / hz) ** 8) / (1 + (hz / high_hz.view(b, 1, 1)) ** 8)
    log_p = log_p + on.view(b, 1, 1) * torch.log(band + 1e-6)

    on, drive = _draw(b, P_COMPRESS, 1.5, 1.5 + 2.5 * s, gen)
    frame = torch.logsumexp(log_p, dim=1, keepdim=True)                        # [b, 1, T] frame level
    pull = (on * (1 - 1 / drive)).view(b, 1, 1) * 0.5
    log_p = log_p - pull * (frame - frame.mean(dim=2, keepdim=True))

    on, snr_db = _draw(b, P_NOISE, 40 - 22 * min(s, 1.0), 40, gen)
    band_width = torch.gradient(hz.view(-1))[0].clamp_min(1.0).view(1, m, 1)
    pink = band_width / hz                                                     # pink density (1/f) per band
    pink = pink / pink.sum(dim=1, keepdim=True)
    signal_power = log_p.exp().sum(dim=1, keepdim=True).mean(dim=2, keepdim=True)   # mean power per frame
    noise = pink * signal_power * 10 ** (-snr_db.view(b, 1, 1) / 10)
    noise = noise * torch.exp(0.5 * torch.randn(log_p.shape, generator=gen))  # frame-to-frame fluctuation
    log_p = torch.log(log_p.exp() + on.view(b, 1, 1) * noise)

    y = timbre(log_p.unsqueeze(1) / LOG_MEL_STD, s, gen)
    return standardize_slices(y).to(x.device, x.dtype)
