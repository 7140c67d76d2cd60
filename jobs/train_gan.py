"""Train the conditional spectrogram GAN of the refine stage and write a GAN bundle.

The GAN is tied to one CNN bundle (--cnn): it uses that bundle's feature config, translates slices of the
songs of split 'train' (the CNN's training songs), and the refine parameters (top-k, cost weight,
threshold) are chosen on the songs of split 'val' with the CNN's votes; 'test' songs are never used (their
log-mels are only decoded into the shared cache). The bundle names the CNN bundle's version and the
feature_version, and loading it with another CNN refuses. Log-mels of the whole catalog are decoded once and
cached under --cache-dir (a .npy per catalog and feature version).

Examples:
  python -m jobs.train gan --cnn /work/models/cnn-default --catalog /work/corpus/default/catalog.parquet \\
      --out /work/models/gan-default-s0 --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from genre_core.config import ConfigError, FeatureConfig

DEFAULT_CACHE_DIR = "/tmp/genre-tagger-cache"
DEFAULT_AUGMENT = 1.0  # restoration training: on the shifted validation songs it made the reading informative


def build_parser(parser: argparse.ArgumentParser) -> None:
    from genre_core.training.gan import GANTrainConfig

    d = GANTrainConfig()
    parser.add_argument("--cnn", required=True, help="CNN bundle directory the GAN serves (local or s3://)")
    parser.add_argument("--catalog", required=True, help="catalog Parquet with track_id, audio_uri, genre, split")
    parser.add_argument("--out", required=True, help="GAN bundle directory to write (local or s3://)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--steps", type=int, default=d.steps, help=f"generator steps ({d.steps})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--crop-frames", type=int, default=d.crop_frames,
                        help="time crop of the training slices (fully convolutional nets; 0 = whole slices)")
    parser.add_argument("--max-minutes", type=float, default=d.max_minutes,
                        help="stop training after this wall time even if steps remain")
    parser.add_argument("--augment", type=float, default=DEFAULT_AUGMENT,
                        help="recording-chain degradation of the generator's input crops, which it learns to "
                             "undo (1 = the ranges of the synthesizer's shifted preset, the default; 0 = off, "
                             "plain identity loss as in StarGAN)")
    parser.add_argument("--g-channels", type=int, default=None, help="generator base channels")
    parser.add_argument("--g-res-blocks", type=int, default=None, help="generator residual blocks")
    parser.add_argument("--refine-min-songs", type=int, default=40,
                        help="validation songs used to choose the refine parameters: the unclassified ones, "
                             "topped up with the most ambiguous classified ones to this many (40)")
    parser.add_argument("--wrong-penalty", type=float, default=1.0,
                        help="the refine threshold maximises right - penalty * wrong on validation (1.0)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="feature worker processes")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="where decoded log-mels are cached")
    parser.add_argument("--audio-root", default=None, help="if set, every audio_uri must lie inside it")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads for training (use 1 on a machine shared with other jobs: "
                             "oversubscribed OpenMP threads made the discriminator warm-up 4x slower)")


# ---- log-mel cache ---------------------------------------------------------------------------------------

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
    tasks = list(zip(track_ids, uris, strict=True))
    if workers <= 1:
        _init_worker(feature_cfg, root)
        results = list(map(_song_mel, tasks))
    else:
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(feature_cfg, root)) as pool:
            results = pool.map(_song_mel, tasks, chunksize=8)
    mels = {t: m for t, m, _ in results if m is not None}
    errors = {t: e for t, _, e in results if e is not None}
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
    print(f"decoded {len(tasks)} songs ({len(errors)} errors) in {time.perf_counter() - t0:.1f} s; "
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


# ---- job ---------------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    try:
        return _run_gan(args)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_gan(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from genre_core.artifacts import load_cnn_bundle
    from genre_core.features import slice_mel
    from genre_core.inference import slice_probabilities
    from genre_core.models.cnn import pick_device
    from genre_core.models.gan import GANBundle, GANModelConfig, save_gan_bundle
    from genre_core.training.cnn import Song
    from genre_core.training.gan import GANTrainConfig, choose_refine_params, refine_tuning_set, train_gan
    from genre_core.training.recording_chain import mel_band_hz

    t_all = time.perf_counter()
    phases: dict[str, float] = {}
    torch.set_num_threads(max(1, args.threads))
    device = pick_device()
    cnn, cnn_meta = load_cnn_bundle(args.cnn, device=device)
    fc = cnn_meta.feature_config
    print(f"CNN bundle {cnn_meta.version} ({len(cnn_meta.classes)} classes, {cnn_meta.feature_version}); "
          f"device {device}", flush=True)

    t0 = time.perf_counter()
    df, mels = load_catalog_mels(args.catalog, fc, ("train", "val"), args.cache_dir, args.workers, args.audio_root)
    cls_index = {g: i for i, g in enumerate(cnn_meta.classes)}
    unknown = sorted(set(df["genre"]) - set(cls_index))
    if unknown:
        raise ValueError(f"catalog genres {unknown} are not classes of the CNN bundle {list(cnn_meta.classes)}")
    train_hop = 64 if fc.slice_frames >= 64 else fc.slice_hop_frames

    def songs(split: str, hop: int) -> list[Song]:
        rows = df[df["split"] == split]
        out = []
        for tid, genre in zip(rows["track_id"], rows["genre"], strict=True):
            mel = np.asarray(mels[tid])
            if mel.shape[1] >= fc.slice_frames:
                out.append(Song(tid, cls_index[genre], slice_mel(mel, fc, hop_frames=hop)))
        return out

    train_songs, val_songs = songs("train", train_hop), songs("val", fc.slice_hop_frames)
    if not train_songs:
        raise ValueError("catalog has no 'train' songs")
    phases["features"] = time.perf_counter() - t0
    print(f"train {len(train_songs)} songs ({sum(len(s.slices) for s in train_songs)} slices, hop {train_hop}); "
          f"val {len(val_songs)} songs; features {phases['features']:.1f} s", flush=True)

    model_cfg = GANModelConfig()
    if args.g_channels is not None:
        model_cfg = dataclasses.replace(model_cfg, g_channels=args.g_channels)
    if args.g_res_blocks is not None:
        model_cfg = dataclasses.replace(model_cfg, g_res_blocks=args.g_res_blocks)
    train_cfg = dataclasses.replace(
        GANTrainConfig(), seed=args.seed, steps=args.steps, batch_size=args.batch_size,
        crop_frames=args.crop_frames, max_minutes=args.max_minutes, augment=args.augment,
    )
    mel_hz = mel_band_hz(fc.n_mels, fc.fmin, fc.fmax) if train_cfg.augment > 0 else None
    result = train_gan(train_songs, len(cnn_meta.classes), model_cfg, train_cfg, fc.n_mels, mel_hz=mel_hz,
                       device=device, log=lambda msg: print(msg, flush=True))
    phases["train"] = result.timings["train_s"]

    t0 = time.perf_counter()
    selection: dict[str, Any] = {"n_val_songs": len(val_songs)}
    refine_params = {"top_k": 2, "cost_weight": 0.0, "threshold": 0.0}
    if val_songs:
        probs = slice_probabilities(cnn, [s.slices for s in val_songs], device=device)
        tuning = refine_tuning_set(probs, cnn_meta.voting, min_songs=args.refine_min_songs)
        refine_params, selection = choose_refine_params(
            [val_songs[i].slices for i in tuning], [probs[i].mean(axis=0) for i in tuning],
            [val_songs[i].genre_index for i in tuning], result.generator, cnn,
            standardize=fc.normalization == "per_slice", wrong_penalty=args.wrong_penalty,
        )
        selection["tuning_song_ids"] = [val_songs[i].song_id for i in tuning]
        selection["n_val_songs"] = len(val_songs)
    phases["select_refine"] = time.perf_counter() - t0
    print(f"refine parameters (validation): {refine_params}; {selection.get('summary', '')}", flush=True)

    meta = GANBundle(
        classes=tuple(cnn_meta.classes), model_config=model_cfg, train_config=train_cfg,
        cnn_version=cnn_meta.version, feature_version=cnn_meta.feature_version, feature_config=fc,
        n_mels=fc.n_mels, n_frames=fc.slice_frames, refine=refine_params,
        metrics={"history": result.history, "timings": result.timings, "selection": selection,
                 "n_train_songs": len(train_songs), "phases_s": phases,
                 "torch_threads": torch.get_num_threads(), "device": str(device)},
    )
    saved = save_gan_bundle(args.out, result.generator.cpu(), result.discriminator.cpu(), meta)
    print(f"wrote GAN bundle {saved.url} version {saved.version} (for CNN {saved.cnn_version}); "
          f"training wall time {phases['train']:.1f} s; total {time.perf_counter() - t_all:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
