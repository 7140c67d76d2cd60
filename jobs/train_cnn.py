"""Ray wiring of `genre-job train cnn` for the slice CNN (``cnn.arch: slice_cnn``): Ray Train with Ray Data.

    songs of split train (blocks of decode.songs_per_block; block order shuffled every epoch)
      --> decode actor pool (SliceRows: decode, log-mel, a slice every train.train_slice_hop_frames; CPU)
      --> split over the workers in equal shares --> each worker: iter_torch_batches (a local shuffle buffer of
          resources.shuffle_buffer slices; pinned memory on a GPU) --> CNNTrainLoop under DDP (gloo / NCCL)
    songs of split val --> decode actor pool (DecodeStage) --> split over the workers, each song scored once;
          the figures are summed over the workers, so that every worker takes the same early-stopping decision
    after every epoch: rank 0 writes the loop's state (torch.save; loaded with weights_only=True) as a Ray Train
          checkpoint under --checkpoints (local or s3://); a worker that dies restarts the group from it
    after training: val and test songs --> DecodeStage --> SongScorer (the best epoch's weights) --> the driver
          (slice probabilities per song: tau/m on val, the test figures)

A worker holds a shuffle buffer and a few in-flight blocks, never the training set: its memory does not grow with
the catalog (benchmarks/train_scale.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch
from ray.train import DataConfig

from genre_core.config import AudioConfig, Config
from genre_core.decoding import DecodeStage
from genre_core.training.cnn import CNNTrainLoop
from genre_core.training.data import SliceRows, SongScorer
from jobs import ray_train
from jobs.ray_train import Fitted, PeakPrivate, max_over_workers, peak_rss_mb, report, resume, worker
from jobs.resources import TrainResources

VAL_SONGS_PER_BATCH = 16


class _EverySongOnce(DataConfig):
    """Training slices go to the workers in equal shares (DDP needs as many batches on each); validation songs are
    split without equalising, so that each is scored once (equal shares would drop up to ``workers - 1``)."""

    def configure(self, datasets: dict[str, Any], world_size: int, worker_handles: Any, worker_node_ids: Any,
                  **kwargs: Any) -> list[dict[str, Any]]:
        if set(datasets) == {"val"}:
            return [{"val": it} for it in datasets["val"].streaming_split(world_size, equal=False)]
        return super().configure(datasets, world_size, worker_handles, worker_node_ids, **kwargs)


def song_blocks(df: pd.DataFrame, songs_per_block: int, seed: int) -> Any:
    """The songs as Ray Data blocks of ``songs_per_block`` rows, in a seeded random order (so blocks mix genres)."""
    rows = df[["track_id", "audio_uri", "genre_index"]].sample(frac=1.0, random_state=seed).reset_index(drop=True)
    parts = [rows.iloc[i:i + songs_per_block] for i in range(0, len(rows), songs_per_block)]
    return ray.data.from_pandas(parts)


def decode_pool(res: TrainResources) -> dict[str, Any]:
    """The ``map_batches`` arguments of the decode actors, with bounded restarts (the deprecated ``ray_remote_args``
    of Ray 2.60: see jobs/label_pipeline.py ``_actor_pool``)."""
    d = res.decode
    return {"compute": ray.data.ActorPoolStrategy(size=d.concurrency), "num_cpus": d.num_cpus, "batch_size": None,
            "batch_format": "numpy", "max_restarts": 3, "max_task_retries": 3}


def song_dataset(df: pd.DataFrame, cfg: Config, res: TrainResources, audio_root: str | None) -> Any:
    """Per-song rows with their slices at the inference hop (``DecodeStage``): validation and test songs."""
    fc = cfg.features
    return song_blocks(df, res.decode.songs_per_block, cfg.train.seed).map_batches(
        DecodeStage, fn_constructor_kwargs={"feature_cfg": fc, "audio_cfg": AudioConfig(sample_rate=fc.sample_rate),
                                            "root": audio_root}, **decode_pool(res))


def slice_dataset(df: pd.DataFrame, cfg: Config, res: TrainResources, audio_root: str | None) -> Any:
    """One row per training slice (``x``, ``y``); the order of the song blocks is drawn anew every epoch."""
    return song_blocks(df, res.decode.songs_per_block, cfg.train.seed).randomize_block_order().map_batches(
        SliceRows, fn_constructor_kwargs={"feature_cfg": cfg.features, "hop_frames": cfg.train.train_slice_hop_frames,
                                          "root": audio_root}, **decode_pool(res))


def _val_batches(shard: Any) -> Iterator[tuple[list[np.ndarray], list[int]]]:
    for b in shard.iter_batches(batch_size=VAL_SONGS_PER_BATCH, batch_format="numpy"):
        yield list(b["slices"]), [int(g) for g in b["genre_index"]]


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: the epochs of :class:`CNNTrainLoop` over this worker's share of the songs."""
    import ray.train
    import ray.train.torch

    cfg: Config = config["cfg"]
    res: TrainResources = config["resources"]
    me = worker(res)
    loop = CNNTrainLoop(config["n_classes"], cfg.cnn, cfg.train, cfg.features.n_mels, cfg.features.slice_frames,
                        me.device, wrap=ray.train.torch.prepare_model, log=me.log)
    if resume(loop, me.device):
        loop.resumed_after.append(loop.epoch)
        me.log(f"resumed from the checkpoint of epoch {loop.epoch}")
    train = ray.train.get_dataset_shard("train")
    val = ray.train.get_dataset_shard("val") if config["has_val"] else None
    me.log(f"{me.world_size} workers on {me.device}; bf16 {loop.model.bf16_on(me.device)}")
    memory = PeakPrivate()
    while not loop.stopped:
        t0 = time.perf_counter()
        batches = ((b["x"], b["y"]) for b in train.iter_torch_batches(
            batch_size=cfg.train.batch_size, local_shuffle_buffer_size=max(res.shuffle_buffer, cfg.train.batch_size),
            dtypes={"x": torch.float32, "y": torch.int64}, pin_memory=me.device.type == "cuda"))
        row = loop.train_epoch(memory.watch(batches))
        if val is not None:
            row.update(loop.validate(memory.watch(_val_batches(val))))
        row["seconds"] = time.perf_counter() - t0
        row["worker_peak_private_mb"] = max_over_workers(memory.peak, me.device)
        row["worker_peak_rss_mb"] = max_over_workers(peak_rss_mb(), me.device)
        loop.end_epoch(row)
        report(loop.state_dict(), {"epoch": loop.epoch, **{k: v for k, v in row.items() if k != "epoch"}}, me.rank)


def fit(splits: dict[str, pd.DataFrame], n_classes: int, cfg: Config, res: TrainResources, *, checkpoints: str,
        name: str, audio_root: str | None = None) -> Fitted:
    """Train the slice CNN on Ray Train; the loop state of the last checkpoint (best weights, history)."""
    datasets = {"train": slice_dataset(splits["train"], cfg, res, audio_root)}
    if len(splits["val"]):
        datasets["val"] = song_dataset(splits["val"], cfg, res, audio_root)
    return ray_train.fit(_worker_loop, {"cfg": cfg, "n_classes": n_classes, "has_val": "val" in datasets}, res,
                         datasets, name=name, checkpoints=checkpoints, dataset_config=_EverySongOnce())


def score(df: pd.DataFrame, model_state: dict[str, torch.Tensor], n_classes: int, cfg: Config, res: TrainResources,
          audio_root: str | None = None) -> dict[str, np.ndarray]:
    """Slice probabilities per track id of ``df``'s songs under ``model_state`` (a Ray Data pass: decode actors,
    then scoring actors on the training workers' devices); songs that could not be decoded are absent."""
    if df.empty:
        return {}
    fc = cfg.features
    use_gpu = res.num_gpus > 0
    ds = song_dataset(df, cfg, res, audio_root).map_batches(
        SongScorer, fn_constructor_kwargs={"state": model_state, "n_classes": n_classes, "cnn_cfg": cfg.cnn,
                                           "n_mels": fc.n_mels, "n_frames": fc.slice_frames, "gpu_reserved": use_gpu,
                                           "torch_threads": res.torch_threads},
        compute=ray.data.ActorPoolStrategy(size=res.workers), num_cpus=res.num_cpus,
        num_gpus=res.num_gpus if use_gpu else 0, batch_size=VAL_SONGS_PER_BATCH, batch_format="numpy")
    probs: dict[str, np.ndarray] = {}
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for tid, status, p in zip(b["track_id"], b["status"], b["probabilities"], strict=True):
            if status != "error" and len(p):
                probs[str(tid)] = np.asarray(p, np.float32)
    return probs
