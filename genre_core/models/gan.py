"""The GAN stage's networks: a generator ``G(f)`` that turns a hard-to-read slice into an easy-to-read one, and a
patch discriminator.

``G`` has no genre condition: one network for every song (Bae 2020 converts an unclassified song's spectrograms
into easy-to-read ones, then classifies again). It works in the CNN's own time-frequency representation of a
slice, its **GAN features** ``[B, C, T]`` (``model.gan_features``): for the musicnn genre model, the front end's
561 timbral and temporal feature maps over the patch's 187 frames (what musicnn learnt to see in real music; the
CNN reads the translation through its mid and back end, ``model.logits_from_gan_features``); for the
from-scratch slice CNN, the log-mel slice itself (mel bands as channels). Translating there rather than in the
96-band log-mel keeps the stage cheap (the front end, 95% of musicnn's cost, runs once per slice and is never
back-propagated through in training) and puts the translation where the network's reading of timbre lives.

``G`` is **residual**: ``1x1 conv -> n_res residual blocks of two convolutions over time -> 1x1 conv``, the last
zero-initialised and its output a change ``delta`` added to the input, so an untrained ``G`` is the identity and
``|G(f) - f|`` is exactly what it changed. Fully convolutional over time: any slice length works.

The discriminator is a spectral-norm PatchGAN over time (Isola et al. 2017): strided convolutions with LeakyReLU
and a real/fake logit per stretch of frames, telling ``G``'s outputs from the features of clean slices.

The losses are in :mod:`genre_core.training.gan`, the bundle I/O in :mod:`genre_core.models.gan_bundle`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass(frozen=True)
class GANModelConfig:
    """Architecture of both networks. The default, on musicnn's 561 x 187 features: G ~0.8 M parameters and
    ~0.15 GMAC per slice (a ninth of the musicnn pass that produces its input)."""

    g_channels: int = 128     # width of the generator's residual blocks
    g_res_blocks: int = 4
    g_kernel: int = 5         # frames spanned by each convolution of a block
    d_channels: int = 128     # channels of the discriminator's strided layers
    d_layers: int = 2         # strided conv layers (each halves the time axis)


def as_features(f: torch.Tensor, n_features: int) -> torch.Tensor:
    """``[B, n_features, T]`` (ValueError otherwise)."""
    if f.dim() != 3 or f.shape[1] != n_features:
        raise ValueError(f"expected GAN features [B, {n_features}, T], got {list(f.shape)}")
    return f


class _ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        groups = 8 if channels % 8 == 0 else 1
        self.body = nn.Sequential(
            nn.Conv1d(channels, channels, kernel, padding=kernel // 2), nn.GroupNorm(groups, channels), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=kernel // 2), nn.GroupNorm(groups, channels))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(h + self.body(h))


class Generator(nn.Module):
    """``G(f) = f + delta(f)``: GAN features ``[B, n_features, T]`` -> ``[B, n_features, T]``."""

    def __init__(self, cfg: GANModelConfig | None = None, n_features: int = 561) -> None:
        super().__init__()
        cfg = cfg or GANModelConfig()
        if cfg.g_kernel % 2 != 1:
            raise ValueError(f"g_kernel must be odd (centred convolutions), got {cfg.g_kernel}")
        self.n_features, self.cfg = n_features, cfg
        self.inp = nn.Conv1d(n_features, cfg.g_channels, 1)
        self.blocks = nn.Sequential(*(_ResBlock(cfg.g_channels, cfg.g_kernel) for _ in range(cfg.g_res_blocks)))
        self.out = nn.Conv1d(cfg.g_channels, n_features, 1)
        nn.init.zeros_(self.out.weight)  # starts as the identity map: G(f) = f
        nn.init.zeros_(self.out.bias)

    def delta(self, f: torch.Tensor) -> torch.Tensor:
        """The change the generator adds to ``f``: ``G(f) - f``."""
        return self.out(self.blocks(self.inp(as_features(f, self.n_features))))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f + self.delta(f)


class PatchDiscriminator(nn.Module):
    """Spectral-norm PatchGAN over time: GAN features -> real/fake logits ``[B, 1, T / 2^L]``."""

    def __init__(self, cfg: GANModelConfig | None = None, n_features: int = 561) -> None:
        super().__init__()
        cfg = cfg or GANModelConfig()
        self.n_features, self.cfg = n_features, cfg
        layers: list[nn.Module] = []
        c_in = n_features
        for _ in range(cfg.d_layers):
            layers += [spectral_norm(nn.Conv1d(c_in, cfg.d_channels, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            c_in = cfg.d_channels
        layers.append(spectral_norm(nn.Conv1d(c_in, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(as_features(f, self.n_features))
