"""Inference: a genre model's softmax per slice, for many songs at once (labelling, evaluation and training's
validation all read a model through it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def slice_probabilities(
    model: nn.Module, slices: Sequence[np.ndarray], batch_size: int = 256, device: torch.device | None = None
) -> list[np.ndarray]:
    """Softmax per slice for each song (``[n_i, n_classes]``), batched across songs; model in eval mode."""
    device = device or next(model.parameters()).device
    counts = [len(s) for s in slices]
    if sum(counts) == 0:
        return [np.zeros((0, model.n_classes), np.float32) for _ in slices]
    allx = np.concatenate([s for s in slices if len(s)], axis=0)
    model.eval()
    out = np.empty((len(allx), model.n_classes), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, len(allx), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(allx[i:i + batch_size], dtype=np.float32)).to(device)
            out[i:i + batch_size] = torch.softmax(model(x), dim=-1).float().cpu().numpy()
    return np.split(out, np.cumsum(counts)[:-1])
