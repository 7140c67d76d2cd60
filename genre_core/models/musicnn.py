"""musicnn, the pretrained music audio tagger of Pons & Serra (2019), ported to PyTorch.

Attribution: Jordi Pons and Xavier Serra, "musicnn: Pre-trained convolutional neural networks for music audio
tagging", ISMIR 2019 late-breaking/demo (arXiv:1909.06654). The weights come from the ``musicnn`` package 0.1.0
(github.com/jordipons/musicnn), Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019, code by
Jordi Pons, ISC licence; they were converted once by ``tools/convert_musicnn.py`` and live, with their licence,
under ``models/backbones/musicnn-{msd,mtt}/``. This module is an independent torch implementation of the
architecture described in the paper and in the package's ``models.py``.

Architecture (input: a 3 s patch, 187 frames x 96 mel bands of ``log10(1 + 10000 * mel_power)``):

* front end: a batch norm of the whole input (one channel), then musically motivated convolutions, each
  conv -> ReLU -> batch norm -> max over all mel positions: two *timbral* convs with kernels 7x38 and 7x67
  (frames x mels, 204 filters, 'valid' over the input zero-padded by 3 frames on both sides) and three
  *temporal* convs with kernels 128x1, 64x1, 32x1 (51 filters, TensorFlow 'same' padding, which for an even
  kernel k puts (k-1)//2 zero frames before and k//2 after). Concatenated: 561 features per frame.
* mid end: three conv-over-time layers (kernel 7 spanning all features, 64 filters, zero padding 3), each
  conv -> ReLU -> batch norm; the second and third add their input (residual); the front-end features and the
  three outputs are concatenated: 753 features per frame.
* back end: max and mean over time, interleaved per feature ([max_0, mean_0, max_1, ...], TF's flatten of
  concat([max, mean], axis=2)), batch norm, dense 200 + ReLU, batch norm (``penultimate``), dense -> tag logits.
  Dropout (0.5, twice) exists only in training.

Batch norms use TensorFlow's epsilon 1e-3 and, in eval mode, their moving statistics.

Two forward paths compute the same function. :meth:`Musicnn.forward_reference` is the plain layer-by-layer
version (``nn.Conv2d`` and friends; it is also what runs in training mode). In eval mode :meth:`Musicnn.forward`
takes a fast path designed for one CPU thread, which matches the reference to float32 rounding:

* every front-end conv is a matrix product with the input laid out time-major ``[time, ..., batch]``: the
  timbral convs as one im2col GEMM per frame on a strided (copy-free) view of a frequency-unfolded input, the
  temporal convs as GEMMs of small banded (Toeplitz) weight matrices over blocks of 8 output frames, which
  keeps the waste of the band to (8-1)/(8+k-1) while giving MKL large, well-shaped products;
* the ReLU -> batch norm -> max-over-mels chain is reordered so that the max runs on the raw conv output
  (before bias, ReLU and the affine batch norm, which are then applied to 59x to 96x fewer values). That is
  exact only per channel sign: a negative batch-norm scale turns the max into a min, so those channels' conv
  weights are negated (max(-z) = -min(z)) and the sign is restored afterwards. Most timbral channels of the
  shipped checkpoints do have negative scales, so this is not a corner case;
* the mid-end convs are seven accumulated GEMMs over shifted, contiguous views; the batch norm in front of
  the first dense layer is folded into that layer (no padding or nonlinearity sits between them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from torch import nn

from genre_core.artifacts import BundleError, sha256_hex

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "backbone.json"

TOEPLITZ_BLOCK = 8  # output frames per banded GEMM in the fast temporal convs
TIMBRAL_CHUNK = 4  # frames per batched GEMM in the fast timbral convs (keeps the product's output in cache)


def _bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as ``x * scale + shift``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _same_pad(k: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (stride 1) of a kernel of length k: (before, after); after >= before."""
    return (k - 1) // 2, k // 2


@dataclass
class _FastParams:
    """Eval-mode tensors of the fast path, derived from the module's parameters (see the module docstring)."""

    in_scale: torch.Tensor
    in_shift: torch.Tensor
    timbral: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]  # W^T, sign, b, s, t
    temporal: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]  # band^T, ...
    mid: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]  # W [7, C, O], bias, scale, shift
    dense_w: torch.Tensor
    dense_b: torch.Tensor
    pen_scale: torch.Tensor
    pen_shift: torch.Tensor
    out_w: torch.Tensor
    out_b: torch.Tensor


class Musicnn(nn.Module):
    """musicnn tagger: ``[B, n_mels=96, n_frames=187]`` log-compressed mel patches ->
    ``(tag_logits, penultimate, pooled)``.

    ``tag_logits`` is ``[B, n_tags]`` (apply a sigmoid for musicnn's tag likelihoods); ``penultimate`` is the
    batch-normalised 200-unit dense layer ``[B, 200]``, what musicnn's extractor calls 'penultimate';
    ``pooled`` is ``[B, 1506]``, the max and mean over time of the front-end and mid-end features (interleaved,
    before the back end's batch norm), what the extractor calls 'max_pool' and 'mean_pool'. The input layout is
    this project's (mels, frames); musicnn's own is (frames, mels). Other patch lengths work too (the network
    pools over time), but the pretrained models were trained on 187 frames.
    """

    def __init__(self, tags: Sequence[str], n_mels: int = 96, n_frames: int = 187, n_tags: int = 50,
                 timbral_filters: int = 204, timbral_kernels: Any = ((7, 38), (7, 67)), temporal_filters: int = 51,
                 temporal_kernels: Any = (128, 64, 32), midend_filters: int = 64, midend_kernel: int = 7,
                 backend_units: int = 200, batch_norm_eps: float = 1e-3) -> None:
        """The arguments are ``backbone.json``'s ``architecture`` (musicnn's: 1.6 x 128 timbral filters spanning
        7 frames x 40% / 70% of 96 mels, 1.6 x 32 temporal ones, TensorFlow's batch-norm epsilon)."""
        super().__init__()
        if len(tags) != n_tags:
            raise ValueError(f"{len(tags)} tag names for {n_tags} outputs")
        (t1, f1), (t2, f2) = timbral_kernels
        if t1 != t2 or t1 % 2 != 1:
            raise ValueError(f"the timbral kernels must span the same odd number of frames, got {timbral_kernels}")
        if n_mels < max(f1, f2):
            raise ValueError(f"n_mels must be >= {max(f1, f2)}, got {n_mels}")
        self.tags, self.n_tags, self.n_mels, self.n_frames = tuple(tags), n_tags, n_mels, n_frames
        self.n_penultimate = backend_units
        self.timbral_frames, self.timbral_widths = t1, (f1, f2)
        self.temporal_kernels = tuple(temporal_kernels)
        self.midend_kernel = midend_kernel

        def bn(n: int, dims: int = 1) -> nn.Module:
            return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(n, eps=batch_norm_eps)

        self.bn_input = bn(1, dims=2)
        self.timbral74 = nn.Conv2d(1, timbral_filters, (t1, f1))
        self.bn_timbral74 = bn(timbral_filters, dims=2)
        self.timbral77 = nn.Conv2d(1, timbral_filters, (t2, f2))
        self.bn_timbral77 = bn(timbral_filters, dims=2)
        for k in self.temporal_kernels:
            setattr(self, f"temporal{k}", nn.Conv2d(1, temporal_filters, (k, 1)))
            setattr(self, f"bn_temporal{k}", bn(temporal_filters, dims=2))
        n_front = 2 * timbral_filters + len(self.temporal_kernels) * temporal_filters  # 561
        self.mid1 = nn.Conv1d(n_front, midend_filters, midend_kernel)
        self.bn_mid1 = bn(midend_filters)
        self.mid2 = nn.Conv1d(midend_filters, midend_filters, midend_kernel)
        self.bn_mid2 = bn(midend_filters)
        self.mid3 = nn.Conv1d(midend_filters, midend_filters, midend_kernel)
        self.bn_mid3 = bn(midend_filters)
        n_feat = n_front + 3 * midend_filters  # 753
        self.n_pooled = 2 * n_feat
        self.n_front = n_front
        self.bn_pool = bn(2 * n_feat)
        self.dense = nn.Linear(2 * n_feat, backend_units)
        self.bn_dense = bn(backend_units)
        self.output = nn.Linear(backend_units, n_tags)
        self.dropout = nn.Dropout(0.5)
        self._fast: _FastParams | None = None

    # ---------------------------------------------------------------- plumbing
    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.n_mels:
            raise ValueError(f"expected input [B, {self.n_mels}, n_frames], got {tuple(x.shape)}")

    def train(self, mode: bool = True) -> Musicnn:
        self._fast = None  # parameters may change while training; rebuild the fast tensors afterwards
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._fast = None
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .double() ...
        self._fast = None
        return super()._apply(fn, *args, **kwargs)

    # ---------------------------------------------------------------- reference path
    def forward_reference(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer-by-layer musicnn (training and eval mode): the readable definition the fast path must match."""
        self._check(x)
        h = self.bn_input(x.transpose(1, 2).unsqueeze(1))  # [B, 1, T, M]: TF's NHWC with H = time, W = mels
        front = []
        for conv, bn in ((self.timbral74, self.bn_timbral74), (self.timbral77, self.bn_timbral77)):
            pad = self.timbral_frames // 2
            front.append(bn(F.relu(conv(F.pad(h, (0, 0, pad, pad))))).amax(dim=3))  # [B, 204, T]
        for k in self.temporal_kernels:
            conv, bn = getattr(self, f"temporal{k}"), getattr(self, f"bn_temporal{k}")
            front.append(bn(F.relu(conv(F.pad(h, (0, 0, *_same_pad(k)))))).amax(dim=3))  # [B, 51, T]
        f = torch.cat(front, dim=1)  # [B, 561, T]
        pad = self.midend_kernel // 2
        m1 = self.bn_mid1(F.relu(self.mid1(F.pad(f, (pad, pad)))))
        m2 = self.bn_mid2(F.relu(self.mid2(F.pad(m1, (pad, pad))))) + m1
        m3 = self.bn_mid3(F.relu(self.mid3(F.pad(m2, (pad, pad))))) + m2
        feats = torch.cat([f, m1, m2, m3], dim=1)  # [B, 753, T]
        pooled = torch.stack([feats.amax(dim=2), feats.mean(dim=2)], dim=2).flatten(1)  # [B, 1506] interleaved
        hidden = self.dense(self.dropout(self.bn_pool(pooled)))
        penultimate = self.bn_dense(F.relu(hidden))
        return self.output(self.dropout(penultimate)), penultimate, pooled

    # ---------------------------------------------------------------- fast eval path
    @torch.no_grad()
    def _fast_params(self) -> _FastParams:
        if self._fast is not None:
            return self._fast
        in_scale, in_shift = _bn_affine(self.bn_input)
        timbral = []
        for conv, bn in ((self.timbral74, self.bn_timbral74), (self.timbral77, self.bn_timbral77)):
            scale, shift = _bn_affine(bn)
            sign = torch.where(scale < 0, -1.0, 1.0).to(scale)
            w = conv.weight[:, 0] * sign[:, None, None]  # [O, frames, kw]
            timbral.append((w.reshape(w.shape[0], -1).t().contiguous(), sign, conv.bias.clone(), scale, shift))
        temporal = []
        L = TOEPLITZ_BLOCK
        for k in self.temporal_kernels:
            conv, bn = getattr(self, f"temporal{k}"), getattr(self, f"bn_temporal{k}")
            scale, shift = _bn_affine(bn)
            sign = torch.where(scale < 0, -1.0, 1.0).to(scale)
            w = conv.weight[:, 0, :, 0] * sign[:, None]  # [O, k]
            band = w.new_zeros(L, w.shape[0], L + k - 1)  # band[i, o, i + j] = w[o, j]: output frame i of a block
            for i in range(L):
                band[i, :, i:i + k] = w
            temporal.append((band.reshape(L * w.shape[0], L + k - 1).t().contiguous(), sign, conv.bias.clone(),
                             scale, shift))
        mid = []
        for conv, bn in ((self.mid1, self.bn_mid1), (self.mid2, self.bn_mid2), (self.mid3, self.bn_mid3)):
            scale, shift = _bn_affine(bn)
            mid.append((conv.weight.permute(2, 1, 0).contiguous(), conv.bias.clone(), scale, shift))  # [7, C, O]
        pool_scale, pool_shift = _bn_affine(self.bn_pool)
        pen_scale, pen_shift = _bn_affine(self.bn_dense)
        self._fast = _FastParams(
            in_scale=in_scale, in_shift=in_shift, timbral=timbral, temporal=temporal, mid=mid,
            dense_w=(self.dense.weight * pool_scale[None, :]).t().contiguous(),
            dense_b=self.dense.bias + self.dense.weight @ pool_shift,
            pen_scale=pen_scale, pen_shift=pen_shift,
            out_w=self.output.weight.t().contiguous(), out_b=self.output.bias.clone(),
        )
        return self._fast

    @staticmethod
    def _pool_finish(m: torch.Tensor, sign: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor,
                     shift: torch.Tensor) -> torch.Tensor:
        """From max_f(sign * conv_nobias) to max_f(BN(ReLU(conv))): undo the sign, add bias, ReLU, affine BN."""
        return F.relu(m * sign + bias) * scale + shift

    def _timbral_fast(self, xf: torch.Tensor, n_frames: int, wt: torch.Tensor) -> torch.Tensor:
        """max over mel positions of the 7 x kw conv (signed weights, no bias): ``[T, B, O]``.

        ``xf`` is ``[T + 6, kw, F', B]`` (contiguous): the zero-padded, time-major input unfolded along the mels,
        so that the im2col matrix of output frame t, rows (f', b) and columns (dt, df), is a strided view of
        ``xf[t:t + 7]``; ``wt`` is the weight as ``[7 * kw, O]`` (7: ``timbral_frames``).
        """
        frames = self.timbral_frames
        _, kw, n_pos, batch = xf.shape
        row = kw * n_pos * batch  # elements per input frame
        outs = []
        for t0 in range(0, n_frames, TIMBRAL_CHUNK):
            n = min(TIMBRAL_CHUNK, n_frames - t0)
            cols = xf.as_strided((n, n_pos * batch, frames * kw), (row, 1, n_pos * batch),
                                 xf.storage_offset() + t0 * row)
            z = torch.matmul(cols, wt)  # [n, F' * B, O]: rows ordered (f', b)
            outs.append(z.view(n, n_pos, -1).amax(dim=1))  # max over f' (an outer axis: vectorised)
        return torch.cat(outs).view(n_frames, batch, -1)

    def _temporal_fast(self, xt: torch.Tensor, start: int, n_frames: int, band_t: torch.Tensor) -> torch.Tensor:
        """max over mels of a k x 1 conv (signed weights, no bias) as banded GEMMs: ``[T, B, O]``.

        ``xt`` is the padded time-major input ``[T_pad, M, B]``; the conv's first input frame is ``start``.
        Block j computes output frames 8j..8j+7 from input frames 8j..8j+k+6 with ``band_t`` ``[8 + k - 1, 8 * O]``.
        """
        L = TOEPLITZ_BLOCK
        _, n_mels, batch = xt.shape
        k_rows = band_t.shape[0]
        n_blocks = -(-n_frames // L)
        assert start + n_blocks * L + k_rows - L <= xt.shape[0], "time-major buffer too short for the banded GEMMs"
        row = n_mels * batch
        rows = xt.as_strided((n_blocks, row, k_rows), (L * row, 1, row), xt.storage_offset() + start * row)
        z = torch.matmul(rows, band_t)  # [blocks, (m, b), (i, o)]
        m = z.view(n_blocks, n_mels, batch, L, -1).amax(dim=1)  # [blocks, B, L, O]
        return m.transpose(1, 2).reshape(n_blocks * L, batch, -1)[:n_frames]

    def _mid_fast(self, f_pad: torch.Tensor, n_frames: int, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Conv over time, kernel 7, on zero-padded ``[T + 6, B, C]`` features: seven GEMMs over shifted views."""
        batch, c_in = f_pad.shape[1], f_pad.shape[2]
        acc = torch.addmm(bias, f_pad[0:n_frames].reshape(-1, c_in), w[0])
        for dt in range(1, w.shape[0]):
            acc = torch.addmm(acc, f_pad[dt:dt + n_frames].reshape(-1, c_in), w[dt])
        return acc.view(n_frames, batch, -1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [B, n_mels, n_frames]`` -> ``(tag_logits [B, n_tags], penultimate [B, 200], pooled [B, 1506])``.

        Training mode runs :meth:`forward_reference`; eval mode the fast path (same function, see the module
        docstring), which is :meth:`back_end` of :meth:`front_end`.
        """
        if self.training:
            return self.forward_reference(x)
        return self._back_time_major(self._front_time_major(x))

    def front_end(self, x: torch.Tensor) -> torch.Tensor:
        """Eval mode: ``x [B, n_mels, n_frames]`` -> the front end's features ``[B, 561, n_frames]`` (timbral and
        temporal convolutions after their batch norm and the max over mel bands): musicnn's own time-frequency
        representation of the patch, which the GAN stage translates (:mod:`genre_core.models.gan`)."""
        return self._front_time_major(x).permute(1, 2, 0)

    def back_end(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eval mode: front-end features ``[B, 561, T]`` -> ``(tag_logits, penultimate, pooled)`` as :meth:`forward`
        gives them; differentiable with respect to ``f`` (the GAN's losses read the frozen network through it;
        call ``eval()`` first outside ``torch.inference_mode``, which rebuilds the fast-path tensors)."""
        return self._back_time_major(f.permute(2, 0, 1))

    def _front_time_major(self, x: torch.Tensor) -> torch.Tensor:
        """The fast front end: ``x [B, n_mels, n_frames]`` -> ``[n_frames, B, 561]``."""
        self._check(x)
        p = self._fast_params()
        batch, n_mels, n_frames = x.shape
        L = TOEPLITZ_BLOCK
        before = max(_same_pad(k)[0] for k in self.temporal_kernels)  # 63
        n_blocks = -(-n_frames // L)
        t_pad = before + n_blocks * L + max(self.temporal_kernels)
        # time-major [T_pad, M, B], batch-normalised input in rows before..before+T, zeros around (the TF padding)
        xt = x.new_zeros(t_pad, n_mels, batch, dtype=p.in_scale.dtype)
        xt[before:before + n_frames] = x.permute(2, 1, 0) * p.in_scale + p.in_shift

        front = []
        half = self.timbral_frames // 2
        timbral_rows = xt[before - half:before + n_frames + half]
        for (wt, sign, bias, scale, shift), kw in zip(p.timbral, self.timbral_widths, strict=True):
            xf = timbral_rows.unfold(1, kw, 1).permute(0, 3, 1, 2).contiguous()  # [T + 6, kw, F', B]
            front.append(self._pool_finish(self._timbral_fast(xf, n_frames, wt), sign, bias, scale, shift))
        for (band_t, sign, bias, scale, shift), k in zip(p.temporal, self.temporal_kernels, strict=True):
            m = self._temporal_fast(xt, before - _same_pad(k)[0], n_frames, band_t)
            front.append(self._pool_finish(m, sign, bias, scale, shift))
        return torch.cat(front, dim=2)  # [T, B, 561]

    def _back_time_major(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The fast mid and back end: ``f [n_frames, B, 561]`` -> ``(tag_logits, penultimate, pooled)``."""
        p = self._fast_params()
        n_frames = f.shape[0]
        pad = self.midend_kernel // 2
        f_pad = F.pad(f, (0, 0, 0, 0, pad, pad))  # [T + 6, B, 561]
        feats = [f]
        h = f_pad
        for i, (w, bias, scale, shift) in enumerate(p.mid):
            y = F.relu(self._mid_fast(h, n_frames, w, bias)) * scale + shift
            if i:
                y = y + feats[-1]
            feats.append(y)
            h = F.pad(y, (0, 0, 0, 0, pad, pad))
        all_feats = torch.cat(feats, dim=2)  # [T, B, 753]
        pooled = torch.stack([all_feats.amax(dim=0), all_feats.mean(dim=0)], dim=2).flatten(1)  # [B, 1506]
        penultimate = F.relu(torch.addmm(p.dense_b, pooled, p.dense_w)) * p.pen_scale + p.pen_shift
        return torch.addmm(p.out_b, penultimate, p.out_w), penultimate, pooled


def load_backbone(directory: str, device: torch.device | str | None = None) -> tuple[Musicnn, dict]:
    """Load a converted musicnn backbone (``weights.safetensors`` + ``backbone.json``) from a local directory.

    The weights file's sha256 must equal ``backbone.json["weights_sha256"]``; tensors are read with
    safetensors only (never pickle) and must match the module's keys and shapes exactly. Returns the model in
    eval mode (on ``device`` when given) and the parsed ``backbone.json``. Raises :class:`BundleError` on a
    missing file, a hash mismatch or weights that do not fit.
    """
    meta_path, weights_path = os.path.join(directory, META_FILE), os.path.join(directory, WEIGHTS_FILE)
    for path in (meta_path, weights_path):
        if not os.path.isfile(path):
            raise BundleError(f"no musicnn backbone at {directory}: {os.path.basename(path)} not found")
    try:
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path} is not valid JSON: {exc}") from exc
    with open(weights_path, "rb") as fh:
        blob = fh.read()
    expected, actual = meta.get("weights_sha256"), sha256_hex(blob)
    if actual != expected:
        raise BundleError(f"{weights_path}: sha256 {actual} does not match backbone.json's weights_sha256 "
                          f"{expected}; the weights are corrupted or were replaced")
    try:
        tensors = st_load(blob)
    except SafetensorError as exc:
        raise BundleError(f"{weights_path} is not a valid safetensors file: {exc}") from exc
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or "tags" not in meta:
        raise BundleError(f"{meta_path} lacks the backbone's architecture or tags")
    try:
        model = Musicnn(tuple(meta["tags"]), **arch)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{meta_path}: the architecture does not fit Musicnn: {exc}") from exc
    expected_keys = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(expected_keys - tensors.keys()), sorted(tensors.keys() - expected_keys)
    if missing or unexpected:
        raise BundleError(f"{weights_path} does not fit Musicnn: missing {missing}, unexpected {unexpected}")
    try:
        model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise BundleError(f"{weights_path} does not fit Musicnn: {exc}") from exc
    if device is not None:
        model.to(device)
    return model.eval(), meta
