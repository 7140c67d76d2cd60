"""Inference: a genre model's outputs per slice, for many songs at once (labelling, evaluation, calibration and
training's validation all read a model through it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def slice_outputs(
    model: nn.Module, slices: Sequence[np.ndarray], batch_size: int = 256, device: torch.device | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(logits, embeddings)`` per song: ``[n_i, n_classes]`` genre logits and ``[n_i, D]`` slice embeddings (the
    features the model's genre layer reads: ``model.embed``), batched across songs; model in eval mode."""
    device = device or next(model.parameters()).device
    counts = [len(s) for s in slices]
    if sum(counts) == 0:
        return [np.zeros((0, model.n_classes), np.float32) for _ in slices], [np.zeros((0, 0), np.float32)
                                                                              for _ in slices]
    allx = np.concatenate([s for s in slices if len(s)], axis=0)
    model.eval()
    logits = np.empty((len(allx), model.n_classes), dtype=np.float32)
    embeddings: np.ndarray | None = None
    with torch.inference_mode():
        for i in range(0, len(allx), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(allx[i:i + batch_size], dtype=np.float32)).to(device)
            e = model.embed(x)
            if embeddings is None:
                embeddings = np.empty((len(allx), e.shape[1]), dtype=np.float32)
            embeddings[i:i + batch_size] = e.float().cpu().numpy()
            logits[i:i + batch_size] = model.head_logits(e).float().cpu().numpy()
    cuts = np.cumsum(counts)[:-1]
    return np.split(logits, cuts), np.split(embeddings, cuts)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float32)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def slice_probabilities(
    model: nn.Module, slices: Sequence[np.ndarray], batch_size: int = 256, device: torch.device | None = None
) -> list[np.ndarray]:
    """Softmax per slice for each song (``[n_i, n_classes]``), batched across songs; model in eval mode."""
    return [softmax(z) for z in slice_outputs(model, slices, batch_size, device)[0]]
