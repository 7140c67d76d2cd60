"""musicnn in torch: the pretrained music audio tagger of Pons & Serra (2019), ported from its TensorFlow model.

Jordi Pons and Xavier Serra, "musicnn: Pre-trained convolutional neural networks for music audio tagging",
ISMIR 2019 late-breaking demo (arXiv:1909.06654); package ``musicnn`` 0.1.0, ISC licence, Copyright (c) Music
Technology Group, Universitat Pompeu Fabra 2019. Our own code, written from the paper and the layers of the
package's ``models.py``; the weights were converted once by ``tools/convert_musicnn.py`` and live, with their
licence and the TensorFlow model's recorded outputs, in ``models/backbones/musicnn-*/``.

Input: a 3 s patch of musicnn's front end (16 kHz, n_fft 512, hop 256, 96 mel bands, log10(1 + 10000 x)),
in our slice layout ``[B, n_mels=96, n_frames=187]``; musicnn itself works on ``[B, time, mels]``.

- **front end**: batch norm of the input; two *timbral* convolutions spanning 7 frames x 40% / 70% of the mel
  axis (204 filters each, the input padded by 3 frames so that time keeps its length), and three *temporal*
  ones spanning 128 / 64 / 32 frames x 1 band (51 filters each, TensorFlow's 'same' padding: for an even kernel
  one frame more after than before); each ReLU, batch norm, max over the mel axis -> 561 features per frame.
- **mid end**: three 1-D convolutions over time (64 filters, 7 frames, ReLU then batch norm), the second and
  third residual; the front-end features and the three outputs are concatenated (753 per frame).
- **back end**: max and mean over time (interleaved per feature, as TensorFlow flattens ``[753, 2]``), batch
  norm, a 200-unit ReLU dense layer and batch norm (the **penultimate** features), and the tag logits.
Every batch norm uses TensorFlow's epsilon 1e-3 and, in eval mode, its moving statistics.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from torch import nn

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "backbone.json"


def _same_padding(kernel: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of a stride-1 axis: (before, after), the extra frame after."""
    total = kernel - 1
    return total // 2, total - total // 2


class Musicnn(nn.Module):
    """The musicnn tagger: ``forward(x [B, n_mels, n_frames]) -> (tag_logits [B, n_tags], penultimate [B, units])``."""

    def __init__(self, tags: tuple[str, ...], n_mels: int = 96, n_frames: int = 187, n_tags: int = 50,
                 timbral_filters: int = 204, timbral_kernels: Any = ((7, 38), (7, 67)), temporal_filters: int = 51,
                 temporal_kernels: Any = (128, 64, 32), midend_filters: int = 64, midend_kernel: int = 7,
                 backend_units: int = 200, batch_norm_eps: float = 1e-3) -> None:
        super().__init__()
        if len(tags) != n_tags:
            raise ValueError(f"{len(tags)} tag names for {n_tags} outputs")
        self.tags, self.n_mels, self.n_frames, self.n_tags = tuple(tags), n_mels, n_frames, n_tags
        self.n_penultimate = backend_units
        eps = batch_norm_eps
        (t1, f1), (t2, f2) = timbral_kernels
        self.bn_input = nn.BatchNorm2d(1, eps=eps)
        self.timbral74 = nn.Conv2d(1, timbral_filters, (t1, f1))
        self.bn_timbral74 = nn.BatchNorm2d(timbral_filters, eps=eps)
        self.timbral77 = nn.Conv2d(1, timbral_filters, (t2, f2))
        self.bn_timbral77 = nn.BatchNorm2d(timbral_filters, eps=eps)
        self.timbral_pad = t1 // 2
        self.temporal_kernels = tuple(temporal_kernels)
        for k in self.temporal_kernels:
            setattr(self, f"temporal{k}", nn.Conv2d(1, temporal_filters, (k, 1)))
            setattr(self, f"bn_temporal{k}", nn.BatchNorm2d(temporal_filters, eps=eps))
        n_front = 2 * timbral_filters + len(self.temporal_kernels) * temporal_filters
        self.midend_pad = midend_kernel // 2
        self.mid1 = nn.Conv1d(n_front, midend_filters, midend_kernel)
        self.mid2 = nn.Conv1d(midend_filters, midend_filters, midend_kernel)
        self.mid3 = nn.Conv1d(midend_filters, midend_filters, midend_kernel)
        self.bn_mid1 = nn.BatchNorm1d(midend_filters, eps=eps)
        self.bn_mid2 = nn.BatchNorm1d(midend_filters, eps=eps)
        self.bn_mid3 = nn.BatchNorm1d(midend_filters, eps=eps)
        n_mid = n_front + 3 * midend_filters
        self.bn_pool = nn.BatchNorm1d(2 * n_mid, eps=eps)
        self.dense = nn.Linear(2 * n_mid, backend_units)
        self.bn_dense = nn.BatchNorm1d(backend_units, eps=eps)
        self.output = nn.Linear(backend_units, n_tags)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.shape[1] != self.n_mels or x.shape[2] != self.n_frames:
            raise ValueError(f"expected input [B, {self.n_mels}, {self.n_frames}], got {list(x.shape)}")
        h = self.bn_input(x.transpose(1, 2).unsqueeze(1))           # [B, 1, time, mels]
        padded = F.pad(h, (0, 0, self.timbral_pad, self.timbral_pad))
        front = [bn(F.relu(conv(padded))).amax(dim=3)                # [B, filters, time]
                 for conv, bn in ((self.timbral74, self.bn_timbral74), (self.timbral77, self.bn_timbral77))]
        for k in self.temporal_kernels:
            conv, bn = getattr(self, f"temporal{k}"), getattr(self, f"bn_temporal{k}")
            front.append(bn(F.relu(conv(F.pad(h, (0, 0, *_same_padding(k)))))).amax(dim=3))
        fe = torch.cat(front, dim=1)                                 # [B, 561, time]
        p = self.midend_pad
        m1 = self.bn_mid1(F.relu(self.mid1(F.pad(fe, (p, p)))))
        m2 = self.bn_mid2(F.relu(self.mid2(F.pad(m1, (p, p))))) + m1
        m3 = self.bn_mid3(F.relu(self.mid3(F.pad(m2, (p, p))))) + m2
        mid = torch.cat([fe, m1, m2, m3], dim=1)                     # [B, 753, time]
        pooled = torch.stack([mid.amax(dim=2), mid.mean(dim=2)], dim=2).flatten(1)  # max, mean per feature
        penultimate = self.bn_dense(F.relu(self.dense(self.bn_pool(pooled))))
        return self.output(penultimate), penultimate


def load_backbone(directory: str, device: str | torch.device | None = None) -> tuple[Musicnn, dict[str, Any]]:
    """The musicnn backbone in ``directory`` (eval mode) and its ``backbone.json``; the weights' sha256 must be
    the one ``backbone.json`` records, else BundleError. Tensors are read with safetensors only."""
    from genre_core.artifacts import BundleError, sha256_hex

    try:
        with open(os.path.join(directory, META_FILE), encoding="utf-8") as fh:
            meta = json.load(fh)
        with open(os.path.join(directory, WEIGHTS_FILE), "rb") as fh:
            blob = fh.read()
    except FileNotFoundError as exc:
        raise BundleError(f"no musicnn backbone at {directory}: {exc.filename} not found") from exc
    digest = sha256_hex(blob)
    if digest != meta.get("weights_sha256"):
        raise BundleError(f"backbone weights in {directory} fail the integrity check: sha256 {digest} != "
                          f"{meta.get('weights_sha256')} recorded in {META_FILE}; refusing to load")
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{WEIGHTS_FILE} in {directory} is not a valid safetensors file: {exc}") from exc
    model = Musicnn(tags=tuple(meta["tags"]), **meta["architecture"])
    model.load_state_dict(tensors, strict=False)
    missing = set(model.state_dict()) - set(tensors)
    if missing - {k for k in missing if k.endswith("num_batches_tracked")}:
        raise BundleError(f"backbone weights in {directory} lack {sorted(missing)[:5]}")
    if device is not None:
        model.to(device)
    return model.eval(), meta
