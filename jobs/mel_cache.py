"""Log-mels of a few thousand songs, decoded by a pool of processes on this machine (:func:`decode_log_mels`, for
the commands that need them in one process: `genre-job calibrate`), and cached on local disk
(:func:`cached_log_mels`: one .npy of all the mels concatenated along time, memory-mapped on reuse, and a .json
index): what the driver of `genre-job train gan` scores its validation songs on, and what the GAN benchmarks read
(benchmarks/gan_ablation.py). Training at catalog scale streams songs through Ray Data instead (jobs/train_cnn.py)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from genre_core.config import FeatureConfig

DEFAULT_CACHE_DIR = "/tmp/genre-tagger-cache"

_W: dict[str, Any] = {}


def _init_worker(feature_cfg: FeatureConfig, root: str | None) -> None:
    import torch

    from genre_core.features import warm_up

    torch.set_num_threads(1)
    _W.update(features=feature_cfg, root=root)
    warm_up(feature_cfg)


def _song_mel(task: tuple[str, str]) -> tuple[str, np.ndarray | None, str | None]:
    from genre_core.audio import load_audio
    from genre_core.config import AudioConfig
    from genre_core.errors import TrackError
    from genre_core.features import log_mel, n_slice_samples

    track_id, uri = task
    cfg = _W["features"]
    try:
        audio = load_audio(uri, AudioConfig(sample_rate=cfg.sample_rate), root=_W["root"])
        if len(audio) < n_slice_samples(cfg):
            return track_id, None, "too_short: shorter than one slice"
        return track_id, log_mel(audio, cfg), None
    except TrackError as exc:
        return track_id, None, exc.describe()


def decode_log_mels(tasks: Sequence[tuple[str, str]], feature_cfg: FeatureConfig, workers: int = 1,
                    root: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Log-mel ``[n_mels, n_frames]`` per track id, and errors per track id (a song that cannot be decoded or is
    shorter than a slice), of ``(track_id, audio_uri)`` tasks, decoded by ``workers`` processes; a line of progress
    every 10 s."""
    mels: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    t0, last = time.perf_counter(), 0.0

    def results() -> Iterator[tuple[str, np.ndarray | None, str | None]]:
        if workers <= 1:
            _init_worker(feature_cfg, root)
            yield from map(_song_mel, tasks)
            return
        ctx = mp.get_context("spawn")  # no fork after torch/OpenMP initialisation
        with ctx.Pool(workers, initializer=_init_worker, initargs=(feature_cfg, root)) as pool:
            yield from pool.imap(_song_mel, tasks, chunksize=4)

    for k, (tid, mel, err) in enumerate(results(), start=1):
        if err is not None:
            errors[tid] = err
        else:
            mels[tid] = mel
        now = time.perf_counter() - t0
        if k == len(tasks) or now - last >= 10.0:
            last = now
            print(f"decoding: {k}/{len(tasks)} songs, {len(errors)} errors, {now:.1f} s "
                  f"({k / max(now, 1e-9):.1f} songs/s)", flush=True)
    return mels, errors


def cached_log_mels(
    track_ids: Sequence[str], uris: Sequence[str], feature_cfg: FeatureConfig, cache_dir: str,
    workers: int = 1, root: str | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Log-mel ``[n_mels, n_frames]`` per track (not sliced, not normalised), and errors per track.

    Cached as one ``.npy`` (all mels concatenated along time, memory-mapped on reuse) and a ``.json`` index,
    named after the feature version and a hash of the (track_id, audio_uri) pairs.
    """
    from genre_core.features import feature_version

    key = hashlib.sha256("\n".join(f"{t}\t{u}" for t, u in zip(track_ids, uris, strict=True)).encode()).hexdigest()
    base = os.path.join(cache_dir, f"mels-{feature_version(feature_cfg)}-{key[:16]}")
    if os.path.exists(base + ".json") and os.path.exists(base + ".npy"):
        with open(base + ".json", encoding="utf-8") as fh:
            index = json.load(fh)
        big = np.load(base + ".npy", mmap_mode="r")
        mels = {t: big[:, a:b] for t, (a, b) in index["offsets"].items()}
        return mels, index["errors"]
    t0 = time.perf_counter()
    mels, errors = decode_log_mels(list(zip(track_ids, uris, strict=True)), feature_cfg, workers, root)
    offsets, pos = {}, 0
    for t in track_ids:
        if t in mels:
            offsets[t] = (pos, pos + mels[t].shape[1])
            pos += mels[t].shape[1]
    os.makedirs(cache_dir, exist_ok=True)
    big = np.concatenate([mels[t] for t in track_ids if t in mels], axis=1) if mels else np.zeros(
        (feature_cfg.n_mels, 0), np.float32)
    np.save(base + ".npy.tmp.npy", big)
    os.replace(base + ".npy.tmp.npy", base + ".npy")
    with open(base + ".json", "w", encoding="utf-8") as fh:
        json.dump({"offsets": offsets, "errors": errors}, fh)
    print(f"decoded {len(track_ids)} songs ({len(errors)} errors) in {time.perf_counter() - t0:.1f} s; "
          f"cached at {base}.npy", flush=True)
    return mels, errors


def load_catalog_mels(
    catalog: str, feature_cfg: FeatureConfig, splits: Sequence[str] | None, cache_dir: str, workers: int,
    root: str | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The catalog rows (of ``splits`` if given, with a genre) and their log-mels (all of the catalog's songs
    are decoded and cached together, so one cache serves every split)."""
    from genre_core.schema import check_catalog_columns, read_catalog

    df = read_catalog(catalog)  # validated: readable, track_id unique and never null
    check_catalog_columns(list(df.columns), extra=("genre",))
    mels, errors = cached_log_mels(df["track_id"].tolist(), df["audio_uri"].astype(str).tolist(), feature_cfg,
                                   cache_dir, workers, root)
    if errors:
        print(f"{len(errors)} songs could not be decoded, e.g. {next(iter(errors.items()))}", flush=True)
    if "split" not in df.columns:
        df["split"] = "train"
    keep = df["genre"].notna() & df["track_id"].isin(list(mels))
    if splits is not None:
        keep &= df["split"].isin(list(splits))
    return df[keep].reset_index(drop=True), mels
