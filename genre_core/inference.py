"""Inference: a genre model's outputs per slice, for many songs at once (labelling, evaluation, calibration and
training's validation all read a model through it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def slice_outputs(
    model: nn.Module, slices: Sequence[np.ndarray], batch_size: int = 256, device: str | torch.device | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(logits, embeddings)`` per song: ``[n_i, n_classes]`` genre logits and ``[n_i, D]`` slice embeddings (the
    features the model's genre layer reads: ``model.embed``), batched across songs; model in eval mode.

    On a GPU the slices go from pinned host memory with non-blocking copies, and the outputs stay on the GPU until
    the last batch, so that copies, kernels and the host overlap."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    counts = [len(s) for s in slices]
    if sum(counts) == 0:
        return ([np.zeros((0, model.n_classes), np.float32) for _ in slices],
                [np.zeros((0, 0), np.float32) for _ in slices])
    allx = torch.from_numpy(np.concatenate([np.asarray(s, np.float32) for s in slices if len(s)], axis=0))
    if device.type == "cuda":
        allx = allx.pin_memory()
    model.eval()
    logits, embeddings = [], []
    with torch.inference_mode():
        for i in range(0, len(allx), batch_size):
            e = model.embed(allx[i:i + batch_size].to(device, non_blocking=True)).float()
            embeddings.append(e)
            logits.append(model.head_logits(e).float())
    cuts = np.cumsum(counts)[:-1]
    return (np.split(torch.cat(logits).cpu().numpy(), cuts), np.split(torch.cat(embeddings).cpu().numpy(), cuts))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float32)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def slice_probabilities(
    model: nn.Module, slices: Sequence[np.ndarray], batch_size: int = 256,
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """Softmax per slice for each song (``[n_i, n_classes]``), batched across songs; model in eval mode."""
    return [softmax(z) for z in slice_outputs(model, slices, batch_size, device)[0]]
