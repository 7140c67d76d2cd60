"""Songs' slices computed by a pool of processes on this machine, for the commands that need a few thousand songs'
features in one process (`genre-job calibrate`); training at catalog scale streams them through Ray Data instead
(jobs/train_cnn.py)."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from genre_core.config import AudioConfig, Config, FeatureConfig
from genre_core.errors import TrackError

# ---- feature workers (module-level so that spawned processes can import them) -----------------------

_W: dict[str, Any] = {}


def _init_worker(audio_cfg: AudioConfig, feature_cfg: FeatureConfig, root: str | None) -> None:
    import torch

    from genre_core.features import warm_up

    torch.set_num_threads(1)
    _W.update(audio=audio_cfg, features=feature_cfg, root=root)
    warm_up(feature_cfg)


def _song_features(task: tuple[str, str, int]) -> tuple[str, np.ndarray | None, str | None]:
    """(track_id, slices or None, error or None) for one song."""
    from genre_core.audio import load_audio
    from genre_core.features import song_slices

    track_id, uri, hop = task
    try:
        audio = load_audio(uri, _W["audio"], root=_W["root"])
        return track_id, song_slices(audio, _W["features"], hop_frames=hop), None
    except TrackError as exc:
        return track_id, None, exc.describe()


def compute_features(
    tasks: list[tuple[str, str, int]], cfg: Config, workers: int, root: str | None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Slices per track id (and errors per track id) of ``(track_id, audio_uri, hop_frames)`` tasks, computed by
    ``workers`` processes; a line of progress every 10 s."""
    slices: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    t0, last = time.perf_counter(), 0.0

    def results() -> Iterator[tuple[str, np.ndarray | None, str | None]]:
        if workers <= 1:
            _init_worker(cfg.audio, cfg.features, root)
            yield from map(_song_features, tasks)
            return
        ctx = mp.get_context("spawn")  # no fork after torch/OpenMP initialisation
        with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg.audio, cfg.features, root)) as pool:
            yield from pool.imap_unordered(_song_features, tasks, chunksize=4)

    for k, (tid, arr, err) in enumerate(results(), start=1):
        if err is not None:
            errors[tid] = err
            print(f"  skipping {tid}: {err}", flush=True)
        else:
            slices[tid] = arr
        now = time.perf_counter() - t0
        if k == len(tasks) or now - last >= 10.0:
            last = now
            print(f"features: {k}/{len(tasks)} songs, {len(errors)} errors, {now:.1f} s "
                  f"({k / max(now, 1e-9):.1f} songs/s)", flush=True)
    return slices, errors
