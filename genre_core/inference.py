"""Inference: a genre model's softmax per slice, for many songs at once (labelling, evaluation and training's
validation all read a model through it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def slice_probabilities(
    model: nn.Module, slices: Sequence[np.ndarray], batch_size: int = 256,
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """Softmax per slice for each song (``[n_i, n_classes]``), batched across songs; model in eval mode.

    On a GPU the slices go from pinned host memory with non-blocking copies, and the outputs stay on the GPU until
    the last batch, so that copies, kernels and the host overlap."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    counts = [len(s) for s in slices]
    if sum(counts) == 0:
        return [np.zeros((0, model.n_classes), np.float32) for _ in slices]
    allx = torch.from_numpy(np.concatenate([np.asarray(s, np.float32) for s in slices if len(s)], axis=0))
    model.eval()
    if device.type == "cuda":
        allx = allx.pin_memory()
        with torch.inference_mode():
            outs = [torch.softmax(model(allx[i:i + batch_size].to(device, non_blocking=True)).float(), dim=-1)
                    for i in range(0, len(allx), batch_size)]
            out = torch.cat(outs).cpu().numpy()
    else:
        out = np.empty((len(allx), model.n_classes), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, len(allx), batch_size):
                out[i:i + batch_size] = torch.softmax(model(allx[i:i + batch_size]), dim=-1).float().numpy()
    return np.split(out, np.cumsum(counts)[:-1])
