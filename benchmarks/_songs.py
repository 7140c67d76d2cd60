"""Songs for the model-quality benchmarks: catalogs of several soundfonts, the musicnn backbone's outputs per
track (computed once, cached in an .npz file) and the from-scratch CNN's slices."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pandas as pd

from genre_core.config import GENRES, AudioConfig, Config, load_config
from genre_core.decoding import decode_song
from genre_core.inference import slice_probabilities
from genre_core.models.genre_head import MusicnnGenreModel, new_genre_model
from genre_core.synth.render import sample_family
from genre_core.training.cnn import Song, TrainResult, evaluate_songs, train_cnn
from genre_core.training.head import backbone_outputs
from jobs.models import backbone_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MUSICNN_CONFIG = os.path.join(REPO, "configs", "musicnn.yaml")
SCRATCH_CONFIG = os.path.join(REPO, "configs", "default.yaml")


def soundfont_name(path: object) -> str:
    return os.path.splitext(os.path.basename(str(path)))[0]


def read_catalogs(folders: list[str]) -> pd.DataFrame:
    """The catalogs of make-catalog ``folders`` with a ``group`` column, each song's soundfont file name, and a
    ``family`` column, the soundfonts it shares recordings with (``genre_core.synth.render.sample_family``)."""
    df = pd.concat([pd.read_parquet(os.path.join(c, "catalog.parquet")) for c in folders], ignore_index=True)
    if df["track_id"].duplicated().any():
        raise SystemExit("the catalogs share track_ids: give catalogs rendered with different seeds")
    df["group"] = df["soundfont"].map(soundfont_name)
    df["family"] = df["soundfont"].map(lambda p: sample_family(str(p)))
    return df


def musicnn_outputs(df: pd.DataFrame, cache_path: str | None) -> tuple[MusicnnGenreModel, dict[str, np.ndarray]]:
    """The genre model at its prior (``configs/musicnn.yaml``) and the backbone's outputs per track_id, from
    ``cache_path`` where cached there (keyed by audio_uri; the file is updated with what was computed)."""
    cfg = load_config(MUSICNN_CONFIG)
    model, _ = new_genre_model(backbone_dir(cfg.cnn.backbone), GENRES, cfg.cnn.precision)
    cache = dict(np.load(cache_path)) if cache_path and os.path.exists(cache_path) else {}  # by audio_uri
    cache = {u: v for u, v in cache.items() if v.shape[1] == model.head.n_inputs}  # outputs of this head's inputs
    todo = [u for u in df["audio_uri"] if u not in cache]
    t0 = time.perf_counter()
    if todo:
        audio_cfg = AudioConfig(sample_rate=cfg.features.sample_rate)
        slices = [decode_song(u, cfg.features, audio_cfg)[0] for u in todo]
        for u, out in zip(todo, backbone_outputs(model, slices), strict=True):
            cache[u] = out
        if cache_path:
            np.savez(cache_path, **cache)
    print(f"musicnn outputs: {len(todo)} songs computed, {len(df) - len(todo)} cached "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    return model, {t: cache[u] for t, u in zip(df["track_id"], df["audio_uri"], strict=True)}


def scratch_slices(df: pd.DataFrame, train_ids: set[str]) -> tuple[Config, dict[str, np.ndarray],
                                                                   dict[str, np.ndarray]]:
    """The from-scratch CNN's config (``configs/default.yaml``) and its slices per track: at the training hop
    (overlapping; the ``train_ids`` only) and at the inference hop (every song)."""
    cfg = load_config(SCRATCH_CONFIG)
    audio_cfg = dataclasses.replace(cfg.audio, sample_rate=cfg.features.sample_rate)
    train_features = dataclasses.replace(cfg.features, slice_hop_frames=cfg.train.train_slice_hop_frames)
    t0 = time.perf_counter()
    dense, plain = {}, {}
    for r in df.itertuples():
        if r.track_id in train_ids:
            dense[r.track_id] = decode_song(r.audio_uri, train_features, audio_cfg)[0]
        plain[r.track_id] = decode_song(r.audio_uri, cfg.features, audio_cfg)[0]
    print(f"slice-CNN features: {len(df)} songs ({time.perf_counter() - t0:.1f} s)", flush=True)
    return cfg, dense, plain


def scratch_model(cfg: Config, train_songs: list[Song], val_songs: list[Song], target_accuracy: float) -> TrainResult:
    """The from-scratch slice CNN (``cfg``: configs/default.yaml) trained on ``train_songs``, early stopping and
    tau/margin on ``val_songs``."""
    fc = cfg.features
    return train_cnn(train_songs, val_songs, len(GENRES), cfg.cnn, cfg.train, fc.n_mels, fc.slice_frames,
                     target_accuracy=target_accuracy, log=lambda _: None)


def scratch_scores(trained: TrainResult, test_slices: list[np.ndarray], labels: list[int]) -> dict[str, float]:
    """The scores of a ``scratch_model`` on the test songs."""
    return scores(evaluate_songs(slice_probabilities(trained.model, test_slices), labels, trained.voting), "scratch")


def scores(report: dict, name: str) -> dict[str, float]:
    """Forced accuracy, coverage and accuracy on decided songs of an ``evaluate_songs`` report, prefixed."""
    return {f"{name}_forced": report["song_accuracy"], f"{name}_coverage": report["coverage"],
            f"{name}_decided": report["accuracy_on_classified"]}
