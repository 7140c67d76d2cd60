"""The GAN stage's networks: a generator ``G(x)`` that turns a hard-to-read slice into an easy-to-read one, and
a patch discriminator.

``G`` has no genre condition: one network for every song (Bae 2020 converts an unclassified song's
spectrograms into easy-to-read ones, then classifies again). It works on the CNN's own features (for the
musicnn model: 96 log-compressed mel bands x 187 frames) and is **residual**:
``stem conv -> n_down strided convs -> n_res residual blocks -> n_down (upsample + conv) -> conv``, the last
conv zero-initialised and its output a change ``delta`` added to the input, so an untrained ``G`` is the
identity and ``|G(x) - x|`` is exactly what it changed. Fully convolutional: any slice length works (lengths
that the strides do not divide are padded and the change cropped back).

The discriminator is a spectral-norm PatchGAN (Isola et al. 2017): strided convs with LeakyReLU and a
real/fake logit per patch, telling ``G``'s outputs from clean training-domain slices.

The losses are in :mod:`genre_core.training.gan`, the bundle I/O in :mod:`genre_core.models.gan_bundle`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass(frozen=True)
class GANModelConfig:
    """Architecture of both networks. The default is CPU-sized: G ~0.1 M parameters and ~0.13 GMAC per
    96 x 187 slice, a tenth of the musicnn backbone that reads its output."""

    g_channels: int = 8      # channels after the stem; doubled at every downsampling
    g_downsamples: int = 2
    g_res_blocks: int = 3
    d_channels: int = 16     # channels of the first discriminator layer; doubled at every layer
    d_layers: int = 3        # strided conv layers (each halves both axes)


def as_slices(x: torch.Tensor, n_mels: int) -> torch.Tensor:
    """``[B, n_mels, T]`` or ``[B, 1, n_mels, T]`` -> ``[B, 1, n_mels, T]`` (ValueError otherwise)."""
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != n_mels:
        raise ValueError(f"expected slices [B, 1, {n_mels}, T] or [B, {n_mels}, T], got {list(x.shape)}")
    return x


class _ConvNormAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, act: bool = True) -> None:
        pad = (kernel - stride + 1) // 2 if stride > 1 else kernel // 2
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False),
                                   nn.InstanceNorm2d(c_out, affine=True)]
        if act:
            layers.append(nn.ReLU())
        super().__init__(*layers)


class _ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_ConvNormAct(channels, channels, 3), _ConvNormAct(channels, channels, 3, act=False))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


class Generator(nn.Module):
    """``G(x) = x + delta(x)``: slices ``[B, 1, n_mels, T]`` (or ``[B, n_mels, T]``) -> ``[B, 1, n_mels, T]``."""

    def __init__(self, cfg: GANModelConfig | None = None, n_mels: int = 96) -> None:
        super().__init__()
        cfg = cfg or GANModelConfig()
        if n_mels % (2 ** cfg.g_downsamples):
            raise ValueError(f"n_mels={n_mels} must be divisible by 2**g_downsamples={2 ** cfg.g_downsamples}")
        self.n_mels, self.cfg = n_mels, cfg
        ch = cfg.g_channels
        self.stem = _ConvNormAct(1, ch, 5)
        self.down = nn.ModuleList()
        for _ in range(cfg.g_downsamples):
            self.down.append(_ConvNormAct(ch, 2 * ch, 4, stride=2))
            ch *= 2
        self.res = nn.Sequential(*(_ResBlock(ch) for _ in range(cfg.g_res_blocks)))
        self.up = nn.ModuleList()
        for _ in range(cfg.g_downsamples):
            self.up.append(_ConvNormAct(ch, ch // 2, 3))
            ch //= 2
        self.out = nn.Conv2d(ch, 1, 5, padding=2)
        nn.init.zeros_(self.out.weight)  # starts as the identity map: G(x) = x
        nn.init.zeros_(self.out.bias)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The change the generator adds to ``x``: ``G(x) - x``, ``[B, 1, n_mels, T]``."""
        x = as_slices(x, self.n_mels)
        length, step = x.shape[-1], 2 ** self.cfg.g_downsamples
        if length % step:  # e.g. musicnn's 187-frame patches: pad to the strides, crop the change back
            x = F.pad(x, (0, -length % step, 0, 0), mode="replicate")
        h = self.stem(x)
        sizes = []
        for layer in self.down:
            sizes.append(h.shape[-2:])
            h = layer(h)
        h = self.res(h)
        for layer, size in zip(self.up, reversed(sizes), strict=True):
            h = layer(F.interpolate(h, size=tuple(size), mode="nearest"))
        return self.out(h)[..., :length]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = as_slices(x, self.n_mels)
        return x + self.delta(x)


class PatchDiscriminator(nn.Module):
    """Spectral-norm PatchGAN: slices -> real/fake logits ``[B, 1, n_mels / 2^L, T / 2^L]``."""

    def __init__(self, cfg: GANModelConfig | None = None, n_mels: int = 96) -> None:
        super().__init__()
        cfg = cfg or GANModelConfig()
        if n_mels < 2 ** cfg.d_layers:
            raise ValueError(f"n_mels={n_mels} too small for {cfg.d_layers} discriminator layers")
        self.n_mels, self.cfg = n_mels, cfg
        layers: list[nn.Module] = []
        c_in, c_out = 1, cfg.d_channels
        for _ in range(cfg.d_layers):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            c_in, c_out = c_out, c_out * 2
        layers.append(spectral_norm(nn.Conv2d(c_in, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(as_slices(x, self.n_mels))
