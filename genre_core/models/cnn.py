"""The slice classifier: a compact CNN over one log-mel slice [n_mels, n_frames] -> genre logits.

Layout: a strided stem (halves both axes) followed by one conv-BN-ReLU-maxpool block per entry of
``CNNConfig.channels``. The head pools the time axis globally (mean and max) but keeps a coarse
frequency profile (``FREQ_BINS`` bands), because *where* in the spectrum the energy sits is a strong genre
cue that fully global pooling would discard. Dropout, then one linear layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genre_core.config import CNNConfig

FREQ_BINS = 4  # frequency bands kept by the head


def pick_device() -> torch.device:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(requested: str | torch.device, gpu_reserved: bool) -> torch.device:
    """The device to compute on, resolved by the process that computes (a Ray actor or training worker, never the
    driver, whose view is the head node's): ``auto`` is CUDA when a GPU is reserved for this process
    (``gpu_reserved``: Ray's ``num_gpus`` > 0 for it), else the CPU. CUDA that torch cannot see here (a CPU-only
    torch build, no NVIDIA driver) is an error rather than a silent fall back to the CPU."""
    name = str(requested)
    if name == "auto":
        name = "cuda" if gpu_reserved else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {str(requested)!r}" + (" with a GPU reserved for this process" if gpu_reserved else "")
            + f": torch {torch.__version__} sees no CUDA device here (a CPU-only torch build, or no NVIDIA driver)")
    return torch.device(name)


PRECISIONS = ("auto", "fp32", "bf16")


def use_bf16(device: torch.device, precision: str) -> bool:
    """Whether ``precision`` ("auto" | "fp32" | "bf16") means bf16 autocast on ``device``; "auto" is bf16 only
    where the device computes bf16 natively (oneDNN's check on CPU, i.e. AVX512-BF16 or AMX; a CUDA card's own)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {list(PRECISIONS)}")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _block(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SliceCNN(nn.Module):
    """Slice classifier: input ``[B, 1, n_mels, n_frames]`` or ``[B, n_mels, n_frames]`` -> logits ``[B, C]``
    (float32; computed in bf16 under autocast where ``cfg.precision`` says so, see :func:`use_bf16`, in training
    and inference alike).

    ``n_mels``/``n_frames`` are the slice shape the model is built for; they are checked on input so that a
    model is never silently fed features of another shape.
    """

    def __init__(self, n_classes: int, cfg: CNNConfig | None = None, n_mels: int = 128, n_frames: int = 128):
        super().__init__()
        cfg = cfg or CNNConfig()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        if not cfg.channels:
            raise ValueError("CNNConfig.channels must name at least one block")
        min_size = 2 ** len(cfg.channels)
        if n_mels < min_size or n_frames < min_size:
            raise ValueError(
                f"slice {n_mels}x{n_frames} is too small for {len(cfg.channels)} blocks (needs >= {min_size})"
            )
        self.n_classes = n_classes
        self.n_mels = n_mels
        self.n_frames = n_frames
        self.cfg = cfg
        self._bf16_on: dict[torch.device, bool] = {}
        stem_ch = cfg.channels[0]
        layers: list[nn.Module] = [_block(1, stem_ch, stride=2, kernel=5), nn.MaxPool2d(2, ceil_mode=True)]
        c_in = stem_ch
        for i, c_out in enumerate(cfg.channels):
            layers.append(_block(c_in, c_out))
            if i < len(cfg.channels) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            out_mels = self.features(torch.zeros(1, 1, n_mels, n_frames)).shape[-2]
        self.freq_bins = min(FREQ_BINS, out_mels)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(c_in * self.freq_bins * 2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.n_mels or x.shape[3] != self.n_frames:
            raise ValueError(
                f"expected input [B, 1, {self.n_mels}, {self.n_frames}] or [B, {self.n_mels}, {self.n_frames}], "
                f"got {list(x.shape)}"
            )
        return self.head_logits(self.embed(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 2C * bins]``: the pooled features the last layer reads (``x`` as checked by :meth:`forward`), in
        float32 (computed under bf16 autocast where ``cfg.precision`` says so)."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16_on(x.device)):
            h = self.features(x)                                   # [B, C, F', T']
            h = F.adaptive_avg_pool2d(h, (self.freq_bins, h.shape[-1]))  # [B, C, bins, T']
            return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1).flatten(1).float()  # [B, 2C * bins]

    def head_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """Genre logits from :meth:`embed`."""
        return self.head(self.dropout(embedding))

    @property
    def n_gan_features(self) -> int:
        """Channels of :meth:`gan_features`: the mel bands."""
        return self.n_mels

    def gan_features(self, x: torch.Tensor) -> torch.Tensor:
        """Slices -> ``[B, n_mels, n_frames]``: the GAN stage translates the log-mel slice itself (mel bands as
        channels; :mod:`genre_core.models.gan`)."""
        return (x[:, 0] if x.dim() == 4 else x).float()

    def logits_from_gan_features(self, f: torch.Tensor) -> torch.Tensor:
        """Genre logits of (translated) :meth:`gan_features`."""
        return self(f)

    def bf16_on(self, device: torch.device) -> bool:
        """Whether this model computes in bf16 on ``device`` (``cfg.precision``; autocast), asked once per device."""
        if device not in self._bf16_on:
            self._bf16_on[device] = use_bf16(device, self.cfg.precision)
        return self._bf16_on[device]

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (no grad; caller sets eval mode)."""
        return torch.softmax(self.forward(x), dim=-1)
