"""Conditional spectrogram translation: ONE generator ``G(x, c)`` for all genres and a two-headed discriminator.

StarGAN-style (Choi et al. 2018), sized for a CPU: the target genre ``c`` is the condition, fed to every
normalisation layer of the generator as a per-genre scale and shift (conditional instance norm, FiLM).

Generator: ``stem conv -> n_down strided convs -> n_res residual blocks -> n_down (upsample + conv) -> conv``.
The last conv is zero-initialised and its output is a *change* ``delta`` added to the input, so
``G(x, c) = x + delta(x, c)``: an untrained generator is the identity, the identity loss ``G(x, c_x) ~ x``
is easy to meet, and the translation cost ``|G(x, c) - x| = |delta|`` is exactly what the generator added.
Everything is fully convolutional, so it trains on time crops and translates whole slices.

Discriminator: spectral-norm strided convs (LeakyReLU) shared by two heads: a PatchGAN real/fake map
(``[B, 1, M/2^L, T/2^L]``, hinge loss) and a genre head (logits ``[B, n_classes]``) that pools time but keeps
a coarse frequency profile, like the slice CNN.

Losses (:func:`generator_losses`, :func:`discriminator_losses`): hinge adversarial, genre classification
(the discriminator's genre head, trained on real slices, judges the fakes), cycle reconstruction
``G(G(x, c), c_x) ~ x`` and identity ``G(x, c_x) ~ x`` (both L1).

Bundles (:func:`save_gan_bundle` / :func:`load_gan_bundle`, kind ``"gan"``, through the generic helpers of
:mod:`genre_core.artifacts`): safetensors weights of both networks plus ``bundle.json`` naming the CNN bundle
version and the feature_version the GAN was trained for, and the refine parameters chosen on validation
songs. Loading for another CNN bundle or feature version raises :class:`GANBundleMismatch`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genre_core import storage
from genre_core.artifacts import BundleError, load_bundle, save_bundle
from genre_core.config import FeatureConfig, from_dict, to_dict

FREQ_BINS = 4          # frequency bands kept by the discriminator's genre head
FILM_INIT_STD = 0.1    # initial spread of the per-genre scales and shifts


@dataclass(frozen=True)
class GANModelConfig:
    """Architecture of the generator and the discriminator.

    The default is CPU-sized (G ~0.08 M, D ~0.18 M parameters; ~0.8 s per training step of 16 crops on
    2 cores); on a GPU, ``g_channels=32`` and more residual blocks cost little.
    """

    g_channels: int = 8      # channels after the stem; doubled at every downsampling
    g_downsamples: int = 2
    g_res_blocks: int = 3
    d_channels: int = 16     # channels of the first discriminator layer; doubled at every layer
    d_layers: int = 4        # strided conv layers (each halves both axes)


@dataclass(frozen=True)
class GANLossWeights:
    """Weights of the generator's losses. Cycle and identity are lighter than StarGAN's 10 / (StarGAN-VC's) 5:
    with the residual generator they are met by doing nothing, and at 10 / 5 a CPU-length run (~1,000 steps)
    ends with a generator that barely changes any slice (measured on a toy 3-genre task: mean change 0.009
    towards another genre after 120 steps, vs 0.77 at 5 / 2 with own-genre change still ~7x smaller)."""

    adversarial: float = 1.0
    classification: float = 1.0
    cycle: float = 5.0
    identity: float = 2.0


def _as_condition(c: torch.Tensor, n_classes: int, batch: int) -> torch.Tensor:
    """Genre indices ``[B]`` (or one-hot/soft ``[B, C]``) -> float ``[B, C]``."""
    if c.dim() == 1:
        if c.shape[0] != batch:
            raise ValueError(f"condition has {c.shape[0]} entries for a batch of {batch}")
        if c.dtype.is_floating_point:
            raise ValueError("a 1-D condition must hold integer genre indices")
        if bool(((c < 0) | (c >= n_classes)).any()):
            raise ValueError(f"genre index out of range [0, {n_classes})")
        return F.one_hot(c.long(), n_classes).float()
    if c.dim() == 2 and c.shape == (batch, n_classes):
        return c.float()
    raise ValueError(f"condition must be [B] indices or [B, {n_classes}] one-hot, got {list(c.shape)}")


class CondNorm(nn.Module):
    """Instance norm whose scale and shift depend on the condition: ``(1 + gamma(c)) * IN(h) + beta(c)``."""

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.film = nn.Linear(n_classes, 2 * channels)
        # small per-genre scales/shifts from the start, so the condition has a path before training moves it
        nn.init.normal_(self.film.weight, std=FILM_INIT_STD)
        nn.init.zeros_(self.film.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(cond).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return self.norm(h) * (1 + gamma) + beta


class _ConvNormAct(nn.Module):
    def __init__(self, c_in: int, c_out: int, n_classes: int, kernel: int, stride: int = 1,
                 act: bool = True) -> None:
        super().__init__()
        pad = (kernel - stride + 1) // 2 if stride > 1 else kernel // 2
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False)
        self.norm = CondNorm(c_out, n_classes)
        self.act = act

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(h), cond)
        return F.relu(h) if self.act else h


class _ResBlock(nn.Module):
    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.a = _ConvNormAct(channels, channels, n_classes, 3)
        self.b = _ConvNormAct(channels, channels, n_classes, 3, act=False)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return h + self.b(self.a(h, cond), cond)


class _Up(nn.Module):
    def __init__(self, c_in: int, c_out: int, n_classes: int) -> None:
        super().__init__()
        self.conv = _ConvNormAct(c_in, c_out, n_classes, 3)

    def forward(self, h: torch.Tensor, cond: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.conv(F.interpolate(h, size=size, mode="nearest"), cond)


def _check_input(x: torch.Tensor, n_mels: int) -> torch.Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != n_mels:
        raise ValueError(f"expected input [B, 1, {n_mels}, T] or [B, {n_mels}, T], got {list(x.shape)}")
    return x


class Generator(nn.Module):
    """``G(x, c)``: slices ``[B, 1, n_mels, T]`` (or ``[B, n_mels, T]``), genres ``[B]`` -> ``[B, 1, n_mels, T]``.

    ``T`` may be any length (training uses time crops divisible by ``2 ** g_downsamples``; other lengths are
    padded to one and the output cropped back).
    """

    def __init__(self, n_classes: int, cfg: GANModelConfig | None = None, n_mels: int = 128) -> None:
        super().__init__()
        cfg = cfg or GANModelConfig()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        if n_mels % (2 ** cfg.g_downsamples):
            raise ValueError(f"n_mels={n_mels} must be divisible by 2**g_downsamples={2 ** cfg.g_downsamples}")
        self.n_classes, self.n_mels, self.cfg = n_classes, n_mels, cfg
        ch = cfg.g_channels
        self.stem = _ConvNormAct(1, ch, n_classes, 5)
        self.down = nn.ModuleList()
        for _ in range(cfg.g_downsamples):
            self.down.append(_ConvNormAct(ch, 2 * ch, n_classes, 4, stride=2))
            ch *= 2
        self.res = nn.ModuleList(_ResBlock(ch, n_classes) for _ in range(cfg.g_res_blocks))
        self.up = nn.ModuleList()
        for _ in range(cfg.g_downsamples):
            self.up.append(_Up(ch, ch // 2, n_classes))
            ch //= 2
        self.out = nn.Conv2d(ch, 1, 5, padding=2)
        nn.init.zeros_(self.out.weight)  # starts as the identity map: G(x, c) = x
        nn.init.zeros_(self.out.bias)

    def delta(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The change the generator adds to ``x`` for target genres ``c``: ``G(x, c) - x``."""
        x = _check_input(x, self.n_mels)
        length, step = x.shape[-1], 2 ** self.cfg.g_downsamples
        if length % step:  # e.g. musicnn's 187-frame patches: pad to the strides, crop the change back
            x = F.pad(x, (0, -length % step, 0, 0), mode="replicate")
        cond = _as_condition(c.to(x.device), self.n_classes, x.shape[0])
        h = self.stem(x, cond)
        sizes = []
        for layer in self.down:
            sizes.append(h.shape[-2:])
            h = layer(h, cond)
        for block in self.res:
            h = block(h, cond)
        for layer, size in zip(self.up, reversed(sizes), strict=True):
            h = layer(h, cond, tuple(size))
        return self.out(h)[..., :length]

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = _check_input(x, self.n_mels)
        return x + self.delta(x, c)


class Discriminator(nn.Module):
    """Spectral-norm PatchGAN trunk with a real/fake head and a genre head.

    ``forward(x) -> (patch_logits [B, 1, m, t], genre_logits [B, n_classes])``.
    """

    def __init__(self, n_classes: int, cfg: GANModelConfig | None = None, n_mels: int = 128) -> None:
        super().__init__()
        cfg = cfg or GANModelConfig()
        if n_mels < 2 ** cfg.d_layers:
            raise ValueError(f"n_mels={n_mels} too small for {cfg.d_layers} discriminator layers")
        self.n_classes, self.n_mels, self.cfg = n_classes, n_mels, cfg
        layers: list[nn.Module] = []
        c_in, c_out = 1, cfg.d_channels
        for _ in range(cfg.d_layers):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            c_in, c_out = c_out, c_out * 2
        self.trunk = nn.Sequential(*layers)
        self.adv = spectral_norm(nn.Conv2d(c_in, 1, 3, padding=1))
        self.freq_bins = min(FREQ_BINS, n_mels // 2 ** cfg.d_layers)
        self.cls = nn.Linear(c_in * self.freq_bins * 2, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(_check_input(x, self.n_mels))
        h_f = F.adaptive_avg_pool2d(h, (self.freq_bins, h.shape[-1]))
        pooled = torch.cat([h_f.mean(dim=-1), h_f.amax(dim=-1)], dim=1).flatten(1)
        return self.adv(h), self.cls(pooled)


def discriminator_losses(
    d: Discriminator, real: torch.Tensor, real_genre: torch.Tensor, fake: torch.Tensor, w: GANLossWeights
) -> dict[str, torch.Tensor]:
    """Hinge loss on real vs (detached) fake patches + genre cross-entropy on real slices; ``total`` included."""
    adv_real, cls_real = d(real)
    adv_fake, _ = d(fake.detach())
    adv = F.relu(1.0 - adv_real).mean() + F.relu(1.0 + adv_fake).mean()
    cls = F.cross_entropy(cls_real, real_genre)
    return {"total": w.adversarial * adv + w.classification * cls, "adv": adv, "cls": cls,
            "cls_acc": (cls_real.argmax(1) == real_genre).float().mean()}


def generator_losses(
    g: Generator, d: Discriminator, real: torch.Tensor, real_genre: torch.Tensor, target: torch.Tensor,
    w: GANLossWeights, clean: torch.Tensor | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Generator losses for translating ``real`` (genres ``real_genre``) to ``target``; returns (losses, fake).

    ``clean``: what the identity and cycle terms must give back (default ``real``). When ``real`` is a
    degraded copy of ``clean``, the identity term is a restoration loss ``G(real, c_real) ~ clean``.
    """
    clean = real if clean is None else clean
    fake = g(real, target)
    adv_fake, cls_fake = d(fake)
    adv = -adv_fake.mean()
    cls = F.cross_entropy(cls_fake, target)
    cycle = (g(fake, real_genre) - clean).abs().mean()
    identity = (real + g.delta(real, real_genre) - clean).abs().mean()
    total = w.adversarial * adv + w.classification * cls + w.cycle * cycle + w.identity * identity
    return ({"total": total, "adv": adv, "cls": cls, "cycle": cycle, "identity": identity,
             "cost": (fake - real).abs().mean().detach(),
             "cls_acc": (cls_fake.argmax(1) == target).float().mean()}, fake)


# ---- bundle ---------------------------------------------------------------------------------------------------

class GANBundleMismatch(BundleError):
    """A GAN bundle is loaded for another CNN bundle or another feature definition than it was trained with."""


@dataclass(frozen=True)
class GANBundle:
    """Metadata of a GAN bundle (``bundle.json``, kind ``"gan"``).

    ``cnn_version`` and ``feature_version`` name the CNN bundle whose training songs and features the GAN was
    trained on; ``refine`` holds the refine parameters chosen on validation songs (top_k, vote_weight,
    cost_weight, threshold; a bundle without vote_weight means 0). ``train_config`` is informational (a plain dict).
    """

    classes: tuple[str, ...]
    model_config: GANModelConfig
    cnn_version: str
    feature_version: str
    feature_config: FeatureConfig
    n_mels: int
    n_frames: int
    refine: dict[str, Any] = field(default_factory=dict)
    train_config: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    created_at: str = ""
    weights_sha256: str = ""
    url: str = ""

    def to_json(self) -> dict[str, Any]:
        train = self.train_config
        return {
            "classes": list(self.classes),
            "model_config": to_dict(self.model_config),
            "cnn_version": self.cnn_version,
            "feature_version": self.feature_version,
            "feature_config": to_dict(self.feature_config),
            "n_mels": self.n_mels,
            "n_frames": self.n_frames,
            "refine": dict(self.refine),
            "train_config": to_dict(train) if dataclasses.is_dataclass(train) else train,
            "metrics": self.metrics,
            "version": self.version,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, meta: dict[str, Any], url: str = "") -> GANBundle:
        try:
            return cls(
                classes=tuple(meta["classes"]),
                model_config=from_dict(GANModelConfig, meta["model_config"], "model_config"),
                cnn_version=str(meta["cnn_version"]),
                feature_version=str(meta["feature_version"]),
                feature_config=from_dict(FeatureConfig, meta["feature_config"], "feature_config"),
                n_mels=int(meta["n_mels"]),
                n_frames=int(meta["n_frames"]),
                refine=dict(meta.get("refine") or {}),
                train_config=meta.get("train_config"),
                metrics=meta.get("metrics", {}),
                version=meta["version"],
                created_at=meta["created_at"],
                weights_sha256=meta["weights_sha256"],
                url=url,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise BundleError(f"bundle.json at {url or '?'} is incomplete or invalid: {exc!r}") from exc


def save_gan_bundle(url: str, generator: Generator, discriminator: Discriminator | None, meta: GANBundle) -> GANBundle:
    """Write the generator (and the discriminator, when given) with ``meta`` as a ``"gan"`` bundle at ``url``."""
    if len(meta.classes) != generator.n_classes:
        raise BundleError(f"{len(meta.classes)} classes in metadata but the generator has {generator.n_classes}")
    if meta.n_mels != generator.n_mels or meta.model_config != generator.cfg:
        raise BundleError("metadata n_mels/model_config differ from the generator's")
    if not meta.cnn_version or not meta.feature_version:
        raise BundleError("a GAN bundle must name the CNN bundle version and the feature_version it serves")
    tensors = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    if discriminator is not None:
        tensors.update({f"discriminator.{k}": v for k, v in discriminator.state_dict().items()})
    written = save_bundle(url, "gan", tensors, meta.to_json())
    return dataclasses.replace(meta, version=written["version"], created_at=written["created_at"],
                               weights_sha256=written["weights_sha256"], url=storage.absolute(url))


def load_gan_bundle(
    url: str,
    *,
    cnn_version: str,
    feature_version: str,
    device: str | torch.device | None = None,
    with_discriminator: bool = False,
) -> tuple[Generator, GANBundle] | tuple[Generator, GANBundle, Discriminator]:
    """Load a GAN bundle for use with the CNN bundle ``cnn_version`` and features ``feature_version``.

    Raises :class:`GANBundleMismatch` when the bundle was trained for another CNN bundle or feature version
    (its translations would be meaningless to that CNN), :class:`BundleError` when it is missing or corrupt.
    Models come back in eval mode.
    """
    tensors, raw = load_bundle(url, kind="gan")
    meta = GANBundle.from_json(raw, url=storage.absolute(url))
    problems = []
    if meta.cnn_version != cnn_version:
        problems.append(f"it was trained for CNN bundle {meta.cnn_version!r}, not {cnn_version!r}")
    if meta.feature_version != feature_version:
        problems.append(f"its feature_version is {meta.feature_version!r}, not {feature_version!r}")
    if problems:
        raise GANBundleMismatch(f"refusing to load GAN bundle {url}: " + "; ".join(problems)
                                + ". Train a GAN for this CNN bundle (python -m jobs.train gan --cnn ...).")
    n_classes = len(meta.classes)
    generator = Generator(n_classes, meta.model_config, n_mels=meta.n_mels)
    parts = {"generator": generator}
    discriminator = None
    if with_discriminator:
        discriminator = Discriminator(n_classes, meta.model_config, n_mels=meta.n_mels)
        parts["discriminator"] = discriminator
    for name, module in parts.items():
        prefix = name + "."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not state:
            raise BundleError(f"bundle {url} holds no {name} weights")
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BundleError(f"{name} weights of bundle {url} do not fit its model_config: {exc}") from exc
        if device is not None:
            module.to(device)
        module.eval()
    if discriminator is not None:
        return generator, meta, discriminator
    return generator, meta
