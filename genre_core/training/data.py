"""What the training job's Ray Data stages compute, as plain callables over column batches (no Ray): songs ->
training slices (:class:`SliceRows`), and a trained model's slice probabilities per song (:class:`SongScorer`).
Per-song decoding for validation is the labelling job's :class:`genre_core.decoding.DecodeStage`."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from genre_core.allocator import keep_freed_memory
from genre_core.config import AudioConfig, CNNConfig, FeatureConfig
from genre_core.decoding import as_column, decode_song
from genre_core.errors import TrackError
from genre_core.features import warm_up
from genre_core.inference import slice_probabilities
from genre_core.models.cnn import SliceCNN, resolve_device


class SliceRows:
    """Songs (``audio_uri``, ``genre_index``) -> one row per training slice: ``x`` ``[n_mels, n_frames]`` float32
    and ``y`` (the class index), slices every ``hop_frames`` frames. A song that cannot be decoded
    (:class:`TrackError`) gives no row and a printed line."""

    def __init__(self, feature_cfg: FeatureConfig, hop_frames: int, root: str | None = None) -> None:
        keep_freed_memory()
        warm_up(feature_cfg)
        self.feature_cfg = dataclasses.replace(feature_cfg, slice_hop_frames=hop_frames)
        self.audio_cfg = AudioConfig(sample_rate=feature_cfg.sample_rate)
        self.root = root

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        xs, ys = [], []
        for uri, genre_index in zip(batch["audio_uri"], batch["genre_index"], strict=True):
            try:
                slices, _ = decode_song(str(uri), self.feature_cfg, self.audio_cfg, self.root)
            except TrackError as exc:
                print(f"  skipping {uri}: {exc.describe()}", flush=True)
                continue
            xs.append(slices)
            ys.append(np.full(len(slices), int(genre_index), np.int64))
        fc = self.feature_cfg
        return {"x": np.concatenate(xs) if xs else np.zeros((0, fc.n_mels, fc.slice_frames), np.float32),
                "y": np.concatenate(ys) if ys else np.zeros(0, np.int64)}


class SongScorer:
    """A slice CNN's softmax per slice for each song of a batch (``slices`` from :class:`DecodeStage`): adds
    ``probabilities`` (``[n_i, n_classes]`` per song; ``[0, n_classes]`` for a song without slices) and drops
    ``slices``. ``device`` is resolved here, in the process that computes (:func:`resolve_device`); torch runs on
    ``torch_threads`` threads."""

    def __init__(self, state: dict[str, torch.Tensor], n_classes: int, cnn_cfg: CNNConfig, n_mels: int,
                 n_frames: int, device: str = "auto", gpu_reserved: bool = False, batch_slices: int = 256,
                 torch_threads: int = 1) -> None:
        torch.set_num_threads(torch_threads)
        self.device = resolve_device(device, gpu_reserved)
        self.model = SliceCNN(n_classes, cnn_cfg, n_mels=n_mels, n_frames=n_frames)
        self.model.load_state_dict(state)
        self.model.to(self.device).eval()
        self.batch_slices = batch_slices

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        probs = slice_probabilities(self.model, list(batch["slices"]), self.batch_slices, self.device)
        out = {k: v for k, v in batch.items() if k != "slices"}
        out["probabilities"] = as_column(probs)
        return out
