"""What the training jobs' Ray Data stages compute, as plain callables over column batches (no Ray): songs ->
training slices (:class:`SliceRows`), a trained model's slice probabilities per song (:class:`SongScorer`), and the
GAN's training pairs: paired renders -> aligned slices (:class:`PairSlices`) -> the frozen CNN's GAN features
(:class:`PairFeatures`). Per-song decoding for validation is the labelling job's
:class:`genre_core.decoding.DecodeStage`."""

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


class PairSlices:
    """Paired renders (``audio_uri``: the song as it is, ``reference_uri``: the same notes through the reference
    soundfont, no effects) -> one row per training pair: ``x`` and ``y``, the input's and the target's log-mel slices
    ``[n_mels, n_frames]`` of the same time span (slices every ``hop_frames`` frames over the frames both renders
    have), and ``track_id``. A song either render of which cannot be decoded, or shorter than a slice, gives no row
    and a printed line."""

    def __init__(self, feature_cfg: FeatureConfig, hop_frames: int, root: str | None = None) -> None:
        keep_freed_memory()
        warm_up(feature_cfg)
        self.feature_cfg, self.hop_frames, self.root = feature_cfg, hop_frames, root
        self.audio_cfg = AudioConfig(sample_rate=feature_cfg.sample_rate)

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        from genre_core.audio import load_audio
        from genre_core.features import log_mel, slice_mel

        fc = self.feature_cfg
        ids, xs, ys = [], [], []
        for tid, uri, ref in zip(batch["track_id"], batch["audio_uri"], batch["reference_uri"], strict=True):
            try:
                a, b = (log_mel(load_audio(str(u), self.audio_cfg, root=self.root), fc) for u in (uri, ref))
            except TrackError as exc:
                print(f"  skipping the pair of {tid}: {exc.describe()}", flush=True)
                continue
            length = min(a.shape[1], b.shape[1])  # the two renders' tails may differ
            if length < fc.slice_frames:
                print(f"  skipping the pair of {tid}: shorter than one slice", flush=True)
                continue
            xs.append(slice_mel(a[:, :length], fc, hop_frames=self.hop_frames))
            ys.append(slice_mel(b[:, :length], fc, hop_frames=self.hop_frames))
            ids += [str(tid)] * len(xs[-1])
        empty = np.zeros((0, fc.n_mels, fc.slice_frames), np.float32)
        return {"track_id": np.asarray(ids, dtype=object), "x": np.concatenate(xs) if xs else empty,
                "y": np.concatenate(ys) if ys else empty}


class PairFeatures:
    """Pairs of slices (``x``, ``y`` from :class:`PairSlices`) -> the frozen CNN's GAN features of each
    (``cnn.gan_features``), ``inputs`` and ``targets`` ``[C, n_frames]`` as float16 (half the bytes of float32;
    musicnn's are 210 KB a slice even so); drops ``x`` and ``y``. The CNN is the bundle at ``cnn_url``; ``device`` is
    resolved in this process (:func:`resolve_device`); torch runs on ``torch_threads`` threads."""

    def __init__(self, cnn_url: str, device: str = "auto", gpu_reserved: bool = False, batch_slices: int = 32,
                 torch_threads: int = 1) -> None:
        from genre_core.artifacts import load_cnn_bundle

        torch.set_num_threads(torch_threads)
        self.device = resolve_device(device, gpu_reserved)
        self.cnn = load_cnn_bundle(cnn_url, device=self.device)[0].eval()
        self.batch_slices = batch_slices

    @torch.inference_mode()
    def _features(self, slices: np.ndarray) -> np.ndarray:
        out = np.empty((len(slices), self.cnn.n_gan_features, slices.shape[-1]), np.float16)
        for i in range(0, len(slices), self.batch_slices):
            # a copy: Ray Data hands over read-only arrays (zero-copy from its object store), which torch warns
            # about sharing; a batch of slices is small beside the front end that reads it
            x = torch.tensor(slices[i:i + self.batch_slices], dtype=torch.float32)
            out[i:i + self.batch_slices] = self.cnn.gan_features(x.to(self.device)).cpu().numpy()
        return out

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in batch.items() if k not in ("x", "y")}
        out.update(inputs=self._features(np.asarray(batch["x"])), targets=self._features(np.asarray(batch["y"])))
        return out
