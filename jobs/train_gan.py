"""Train the GAN stage's generator on paired renders and write a GAN bundle.

The generator is tied to one CNN bundle (--cnn): it works on that bundle's features and learns with that
CNN frozen (genre_core.training.gan). Its training pairs come from the catalog's split 'train': each song's
audio (input) and the same composition rendered through a reference soundfont without effects (target,
column reference_uri: `genre-job make-catalog --reference-soundfont fluidr3`). The refine parameters
(gan_weight, threshold; genre_core.refine) are then chosen on validation songs: the split 'val' of the
catalog, or every song of --tune-catalog (songs like the ones the stage will meet, e.g. of another
soundfont); 'test' songs are never used. The bundle names the CNN bundle's version and the feature_version,
and loading it with another CNN refuses. Log-mels are decoded once and cached under --cache-dir.

Examples:
  genre-job make-catalog --per-genre 100 --reference-soundfont fluidr3 --out data/paired
  genre-job train gan --cnn models/default/cnn --catalog data/paired/catalog.parquet --out models/default/gan
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
REFERENCE_SUFFIX = "#reference"  # cache key of a song's reference render


def build_parser(parser: argparse.ArgumentParser) -> None:
    from genre_core.training.gan import GANTrainConfig

    d = GANTrainConfig()
    parser.add_argument("--cnn", required=True, help="CNN bundle directory the GAN serves (local or s3://)")
    parser.add_argument("--catalog", required=True,
                        help="catalog Parquet with track_id, audio_uri, genre, split and reference_uri (the clean "
                             "target render of each train song)")
    parser.add_argument("--out", required=True, help="GAN bundle directory to write (local or s3://)")
    parser.add_argument("--tune-catalog", default=None,
                        help="validation songs for the refine parameters (every song with a genre); default: the "
                             "split 'val' of --catalog")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--steps", type=int, default=d.steps, help=f"training steps ({d.steps})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--max-minutes", type=float, default=d.max_minutes,
                        help="stop training after this wall time even if steps remain")
    parser.add_argument("--pair-hop", type=int, default=None,
                        help="frames between the starts of training pairs (default: a slice, no overlap)")
    parser.add_argument("--refine-min-songs", type=int, default=40,
                        help="validation songs used to choose the refine parameters: the unclassified ones, "
                             "topped up with the most ambiguous classified ones to this many (40)")
    parser.add_argument("--wrong-penalty", type=float, default=1.0,
                        help="the refine threshold maximises right - penalty * wrong on validation (1.0)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="feature worker processes")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="where decoded log-mels are cached")
    parser.add_argument("--audio-root", default=None, help="if set, every audio_uri must lie inside it")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads for training (use 1 on a machine shared with other jobs)")


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


def training_pairs(catalog: pd.DataFrame, fc: FeatureConfig, cache_dir: str, workers: int, hop: int,
                   root: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Input and target slices ``[N, n_mels, n_frames]`` of the same time spans of every train song with a
    reference render, and the track_id of each pair."""
    from genre_core.features import slice_mel

    if "reference_uri" not in catalog.columns:
        raise ValueError("the catalog has no reference_uri column: render it with `genre-job make-catalog "
                         "--reference-soundfont NAME` (the clean targets of the GAN's training pairs)")
    rows = catalog[(catalog["split"] == "train") & catalog["reference_uri"].notna() & catalog["genre"].notna()]
    if rows.empty:
        raise ValueError("the catalog has no 'train' songs with a reference_uri")
    ids = rows["track_id"].tolist()
    keys = ids + [t + REFERENCE_SUFFIX for t in ids]
    uris = rows["audio_uri"].astype(str).tolist() + rows["reference_uri"].astype(str).tolist()
    mels, errors = cached_log_mels(keys, uris, fc, cache_dir, workers, root)
    if errors:
        print(f"{len(errors)} training renders could not be decoded (their pairs are skipped), e.g. "
              f"{next(iter(errors.items()))}", flush=True)
    xs, ys, owners = [], [], []
    for tid in ids:
        if tid not in mels or tid + REFERENCE_SUFFIX not in mels:
            continue
        a, b = np.asarray(mels[tid]), np.asarray(mels[tid + REFERENCE_SUFFIX])
        length = min(a.shape[1], b.shape[1])
        if length < fc.slice_frames:
            continue
        xs.append(slice_mel(a[:, :length], fc, hop_frames=hop))
        ys.append(slice_mel(b[:, :length], fc, hop_frames=hop))
        owners += [tid] * len(xs[-1])
    if not xs:
        raise ValueError("no training pair could be built (every train song failed to decode or is too short)")
    return np.concatenate(xs), np.concatenate(ys), owners


def gan_features(cnn: Any, slices: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The CNN's GAN features of ``slices`` ``[N, n_mels, n_frames]``, as float16 ``[N, C, n_frames]`` (half the
    memory of float32; musicnn's are 210 KB a slice even so)."""
    import torch

    device = next(cnn.parameters()).device
    out = np.empty((len(slices), cnn.n_gan_features, slices.shape[-1]), np.float16)
    with torch.inference_mode():
        for i in range(0, len(slices), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(slices[i:i + batch_size], np.float32)).to(device)
            out[i:i + batch_size] = cnn.gan_features(x).cpu().numpy()
    return out


def _run_gan(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from genre_core.artifacts import load_cnn_bundle
    from genre_core.features import slice_mel
    from genre_core.inference import slice_probabilities
    from genre_core.models.cnn import pick_device
    from genre_core.models.gan import GANModelConfig
    from genre_core.models.gan_bundle import GANBundle, save_gan_bundle
    from genre_core.refine import gan_votes
    from genre_core.schema import read_catalog
    from genre_core.training.gan import GANTrainConfig, Pairs, choose_refine_params, refine_tuning_set, train_gan

    t_all = time.perf_counter()
    phases: dict[str, float] = {}
    torch.set_num_threads(max(1, args.threads))
    device = pick_device()
    cnn, cnn_meta = load_cnn_bundle(args.cnn, device=device)
    fc = cnn_meta.feature_config
    print(f"CNN bundle {cnn_meta.version} ({len(cnn_meta.classes)} classes, {cnn_meta.feature_version}); "
          f"device {device}", flush=True)

    t0 = time.perf_counter()
    catalog = read_catalog(args.catalog)
    hop = args.pair_hop or fc.slice_frames
    x, y, owners = training_pairs(catalog, fc, args.cache_dir, args.workers, hop, args.audio_root)
    n_pairs = len(x)
    pairs = Pairs(torch.from_numpy(gan_features(cnn, x)), torch.from_numpy(gan_features(cnn, y)))
    del x, y
    phases["pairs"] = time.perf_counter() - t0
    print(f"{n_pairs} training pairs from {len(set(owners))} songs (hop {hop} frames), GAN features "
          f"{list(pairs.inputs.shape[1:])}; {phases['pairs']:.1f} s", flush=True)

    model_cfg = GANModelConfig()
    train_cfg = dataclasses.replace(GANTrainConfig(), seed=args.seed, steps=args.steps, batch_size=args.batch_size,
                                    max_minutes=args.max_minutes)
    result = train_gan(pairs, cnn, model_cfg, train_cfg, log=lambda msg: print(msg, flush=True))
    del pairs
    phases["train"] = result.timings["train_s"]

    t0 = time.perf_counter()
    tune, tune_mels = load_catalog_mels(args.tune_catalog or args.catalog, fc, None if args.tune_catalog else ("val",),
                                        args.cache_dir, args.workers, args.audio_root)
    cls_index = {g: i for i, g in enumerate(cnn_meta.classes)}
    unknown = sorted(set(tune["genre"]) - set(cls_index))
    if unknown:
        raise ValueError(f"validation genres {unknown} are not classes of the CNN bundle {list(cnn_meta.classes)}")
    tune = tune[[np.asarray(tune_mels[t]).shape[1] >= fc.slice_frames for t in tune["track_id"]]]
    if tune.empty:
        raise ValueError("no validation songs to choose the refine parameters on")
    slices = [slice_mel(np.asarray(tune_mels[t]), fc) for t in tune["track_id"]]
    probs = slice_probabilities(cnn, slices, device=device)
    chosen = refine_tuning_set(probs, cnn_meta.voting, min_songs=args.refine_min_songs)
    votes = [probs[i].mean(axis=0) for i in chosen]
    g_votes = gan_votes([slices[i] for i in chosen], result.generator, cnn)
    labels = [cls_index[tune["genre"].iloc[i]] for i in chosen]
    refine, selection = choose_refine_params(votes, g_votes, labels, wrong_penalty=args.wrong_penalty)
    selection.update(tuning_song_ids=[tune["track_id"].iloc[i] for i in chosen], n_validation_songs=len(tune),
                     tune_catalog=args.tune_catalog or f"{args.catalog} (split val)")
    phases["select_refine"] = time.perf_counter() - t0
    print(f"refine parameters (validation): {refine}; {selection['summary']}", flush=True)

    meta = GANBundle(
        classes=tuple(cnn_meta.classes), model_config=model_cfg, train_config=train_cfg,
        cnn_version=cnn_meta.version, feature_version=cnn_meta.feature_version, feature_config=fc,
        n_features=cnn.n_gan_features, n_frames=fc.slice_frames, refine=refine,
        metrics={"history": result.history, "timings": result.timings, "steps_done": result.steps_done,
                 "selection": selection, "n_pairs": n_pairs, "n_train_songs": len(set(owners)), "phases_s": phases,
                 "torch_threads": torch.get_num_threads(), "device": str(device)},
    )
    saved = save_gan_bundle(args.out, result.generator.cpu(), result.discriminator.cpu(), meta)
    print(f"wrote GAN bundle {saved.url} version {saved.version} (for CNN {saved.cnn_version}); "
          f"training {phases['train']:.1f} s; total {time.perf_counter() - t_all:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
