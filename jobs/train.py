"""Train a model from a labelled catalog and write a model bundle.

The catalog is Parquet (a file or a folder of files, local or s3://) with the columns track_id,
audio_uri, genre and split ('train' / 'val' / 'test'; without a split column every song trains).
Songs of split 'train' train the CNN; 'val' songs choose the epoch (early stopping) and the voting
thresholds tau/margin (highest coverage with accuracy on classified songs >= --target-accuracy); when the
catalog has no 'val' songs, a genre-stratified share of the train songs (train.val_fraction) is held out,
by song. 'test' songs are only evaluated, and their figures go into the bundle's metrics.
Features are computed in a process pool of --workers processes.

Examples:
  genre-job train cnn --catalog data/corpus/catalog.parquet --out models/default/cnn --config configs/default.yaml
  genre-job train gan --cnn models/default/cnn --catalog data/corpus/catalog.parquet --out models/gan-dev
  python -m jobs.train cnn --catalog s3://bucket/catalog/ --out s3://bucket/models/v2/cnn --workers 2
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from genre_core.config import AudioConfig, Config, ConfigError, FeatureConfig, load_config
from genre_core.errors import TrackError
from genre_core.schema import check_catalog_columns, read_catalog
from jobs import train_gan


def build_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    cnn = sub.add_parser("cnn", help="the slice CNN and its voting thresholds", description=__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    gan = sub.add_parser("gan", help="the GAN of the refinement stage, for a trained CNN bundle",
                         description=train_gan.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    train_gan.build_parser(gan)
    cnn.add_argument("--catalog", required=True, help="catalog Parquet file or folder (local or s3://)")
    cnn.add_argument("--out", required=True, help="bundle directory to write (local or s3://)")
    cnn.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    cnn.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                     help="feature worker processes (default: os.cpu_count(); 1 = in-process)")
    cnn.add_argument("--target-accuracy", type=float, default=0.97,
                     help="accuracy on classified validation songs that tau/margin must reach (0.97)")
    cnn.add_argument("--audio-root", default=None,
                     help="if set, every audio_uri must lie inside it (relative URIs resolve against it)")
    cnn.add_argument("--limit", type=int, default=None, help="use at most N songs per genre and split (quick runs)")
    cnn.add_argument("--from", dest="from_bundle", default=None, metavar="BUNDLE",
                     help="fine-tune this musicnn bundle (e.g. models/default/cnn) on the catalog's labels: its "
                          "backbone, features and head are kept, and the head moves from where it is only as far "
                          "as the labelled songs pay for (its config replaces --config's features and cnn)")
    cnn.add_argument("--group-by", default="soundfont",
                     help="catalog column whose values group songs (soundfont, artist): the head's l2 is chosen "
                          "leave-one-group-out on validation songs (default: soundfont, when the column exists)")




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
    """Slices per track id (and errors per track id), computed by ``workers`` processes."""
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


# ---- job --------------------------------------------------------------------------------------------

def catalog_fingerprint(df: pd.DataFrame) -> str:
    """A short hash of the catalog rows that matter for training (order-independent)."""
    cols = [c for c in ("track_id", "audio_uri", "genre", "split") if c in df.columns]
    rows = sorted("\t".join(str(v) for v in r) for r in df[cols].itertuples(index=False))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def class_list(genres: pd.Series) -> list[str]:
    """Classes in the canonical GENRES order when all are known, else sorted."""
    from genre_core.config import GENRES

    present = set(genres.dropna().astype(str))
    if present <= set(GENRES):
        return [g for g in GENRES if g in present]
    return sorted(present)


def refuse_reserved_soundfonts(df: pd.DataFrame, catalog: str) -> None:
    """Raise ValueError if the catalog's ``soundfont`` column names a reserved MuseScore General soundfont
    (held out for evaluation outside this project: never trained or tuned on)."""
    from genre_core.synth.render import RESERVED_MESSAGE, is_reserved_soundfont

    if "soundfont" not in df.columns:
        return
    names = sorted({str(v) for v in df["soundfont"].dropna().unique() if is_reserved_soundfont(str(v))})
    if names:
        n = int(df["soundfont"].astype(str).isin(names).sum())
        raise ValueError(f"catalog {catalog}: {n} song(s) rendered with {', '.join(names)}, which {RESERVED_MESSAGE}; "
                         "training refuses this catalog")


def run(args: argparse.Namespace) -> int:
    if args.kind == "gan":
        try:
            refuse_reserved_soundfonts(read_catalog(args.catalog), args.catalog)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return train_gan.run(args)
    try:
        return _run_cnn(args)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_cnn(args: argparse.Namespace) -> int:
    import torch

    from genre_core.artifacts import CNNBundle, save_cnn_bundle
    from genre_core.features import feature_version
    from genre_core.inference import slice_probabilities
    from genre_core.metrics import confusion_matrix
    from genre_core.models.cnn import pick_device
    from genre_core.training.cnn import Song, evaluate_songs, split_by_song, train_cnn

    t_all = time.perf_counter()
    phases: dict[str, float] = {}
    cfg = load_config(args.config)
    start_bundle = None
    if args.from_bundle:
        import dataclasses

        from genre_core.artifacts import read_bundle_meta

        start_bundle = CNNBundle.from_json(read_bundle_meta(args.from_bundle), url=args.from_bundle)
        if start_bundle.cnn_config.arch != "musicnn":
            raise ValueError(f"--from {args.from_bundle}: only a musicnn bundle can be fine-tuned "
                             f"(this one is {start_bundle.cnn_config.arch!r})")
        cfg = dataclasses.replace(cfg, features=start_bundle.feature_config, cnn=start_bundle.cnn_config,
                                  audio=dataclasses.replace(cfg.audio,
                                                            sample_rate=start_bundle.feature_config.sample_rate))
    t0 = time.perf_counter()
    df = read_catalog(args.catalog)  # validated: readable, track_id unique and never null
    check_catalog_columns(list(df.columns), extra=("genre",))
    refuse_reserved_soundfonts(df, args.catalog)
    if "split" not in df.columns:
        df["split"] = "train"
    df = df[df["genre"].notna()].copy()
    if args.limit:
        df = df.groupby(["split", "genre"], group_keys=False).head(args.limit)
    classes = class_list(df["genre"])
    cls_index = {g: i for i, g in enumerate(classes)}
    fp = catalog_fingerprint(df)
    split_ids = {s: df.loc[df["split"] == s, "track_id"].tolist() for s in ("train", "val", "test")}
    if not split_ids["train"]:
        raise ValueError("catalog has no 'train' songs")
    genre_of = dict(zip(df["track_id"], df["genre"].map(cls_index), strict=True))
    if not split_ids["val"]:
        placeholders = [Song(t, int(genre_of[t]), np.empty(0)) for t in split_ids["train"]]
        tr, va = split_by_song(placeholders, cfg.train.val_fraction, cfg.train.seed)
        split_ids["train"], split_ids["val"] = [s.song_id for s in tr], [s.song_id for s in va]
        print(f"no 'val' split in the catalog: held out {len(va)} train songs (stratified by genre)")
    phases["read_catalog"] = time.perf_counter() - t0
    print(f"catalog {args.catalog}: {len(df)} songs, {len(classes)} classes; "
          + ", ".join(f"{k} {len(v)}" for k, v in split_ids.items()) + f"; fingerprint {fp}", flush=True)

    t0 = time.perf_counter()
    uri_of = dict(zip(df["track_id"], df["audio_uri"].astype(str), strict=True))
    hop = {"train": cfg.train.train_slice_hop_frames, "val": None, "test": None}
    tasks = [(t, uri_of[t], hop[s] or cfg.features.slice_hop_frames) for s, ids in split_ids.items() for t in ids]
    slices, errors = compute_features(tasks, cfg, args.workers, args.audio_root)
    songs = {s: [Song(t, int(genre_of[t]), slices[t]) for t in ids if t in slices] for s, ids in split_ids.items()}
    phases["features"] = time.perf_counter() - t0
    print(f"phase features: {phases['features']:.1f} s ({len(errors)} songs skipped)", flush=True)

    torch.set_num_threads(os.cpu_count() or 1)
    fc = cfg.features
    if cfg.cnn.arch == "musicnn":
        groups = dict(zip(df["track_id"], df[args.group_by].astype(str), strict=True)) \
            if args.group_by in df.columns else {}
        return _train_musicnn_head(args, cfg, classes, songs, groups, start_bundle, fp, phases, len(errors), t_all)
    t0 = time.perf_counter()
    result = train_cnn(songs["train"], songs["val"], len(classes), cfg.cnn, cfg.train, fc.n_mels,
                       fc.slice_frames, default_voting=cfg.voting, target_accuracy=args.target_accuracy)
    phases["train"] = result.timings["train_s"]
    phases["select_voting"] = result.timings["selection_s"]
    print(f"phase train: {phases['train']:.1f} s (best epoch {result.best_epoch}); phase select_voting: "
          f"{phases['select_voting']:.1f} s -> tau {result.voting.tau} margin {result.voting.margin} "
          f"(val coverage {result.selection.get('val_coverage')}, "
          f"acc on classified {result.selection.get('val_accuracy_on_classified')})", flush=True)

    t0 = time.perf_counter()
    test_report: dict[str, Any] = {"n_songs": 0}
    if songs["test"]:
        labels = [s.genre_index for s in songs["test"]]
        probs = slice_probabilities(result.model, [s.slices for s in songs["test"]], device=pick_device())
        test_report = evaluate_songs(probs, labels, result.voting)
        forced = [classes[int(p.sum(0).argmax())] for p in probs]
        test_report["confusion"] = confusion_matrix([classes[i] for i in labels], forced, classes)
    phases["test_eval"] = time.perf_counter() - t0
    print("phase test_eval: {:.1f} s; test: ".format(phases["test_eval"]) + ", ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in test_report.items() if k != "confusion"), flush=True)

    t0 = time.perf_counter()
    metrics = {
        "test": test_report, "val": result.val_report, "selection": result.selection,
        "best_epoch": result.best_epoch, "history": result.history,
        "n_songs": {k: len(v) for k, v in songs.items()}, "n_feature_errors": len(errors),
        "phases_s": phases,
    }
    meta = CNNBundle(
        classes=tuple(classes), feature_config=fc, cnn_config=cfg.cnn, voting=result.voting,
        feature_version=feature_version(fc), catalog_fingerprint=fp, metrics=metrics,
        n_mels=fc.n_mels, n_frames=fc.slice_frames,
    )
    saved = save_cnn_bundle(args.out, result.model.cpu(), meta)
    phases["save"] = time.perf_counter() - t0
    print(f"phase save: {phases['save']:.1f} s; wrote bundle {saved.url} version {saved.version}")
    print(f"total wall time: {time.perf_counter() - t_all:.1f} s", flush=True)
    return 0


def _train_musicnn_head(args: argparse.Namespace, cfg: Config, classes: list[str], songs: dict[str, list[Any]],
                        groups: dict[str, str], start_bundle: Any, fp: str, phases: dict[str, float],
                        n_errors: int, t_all: float) -> int:
    """The musicnn genre model: backbone outputs computed once per song, then the head trained on them."""
    from genre_core.artifacts import CNNBundle, load_cnn_bundle, save_cnn_bundle
    from genre_core.features import feature_version
    from genre_core.metrics import confusion_matrix
    from genre_core.models.genre_head import new_genre_model
    from genre_core.training.cnn import evaluate_songs
    from genre_core.training.head import (
        HeadSong,
        backbone_outputs,
        head_probabilities,
        prior_probabilities,
        train_head,
    )
    from jobs.models import backbone_dir

    if start_bundle is not None:
        model, start = load_cnn_bundle(args.from_bundle)
        if list(start.classes) != classes:
            raise ValueError(f"--from bundle's classes {list(start.classes)} differ from the catalog's {classes}")
        backbone = start.backbone
    else:
        model, backbone = new_genre_model(backbone_dir(cfg.cnn.backbone), classes, cfg.cnn.precision)
    t0 = time.perf_counter()
    every = [s for split in ("train", "val", "test") for s in songs[split]]
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter() - t0
        if done == total or now - last[0] >= 10.0:
            last[0] = now
            print(f"backbone: {done}/{total} slices, {now:.1f} s ({done / max(now, 1e-9):.1f} slices/s)", flush=True)

    outputs = backbone_outputs(model, [s.slices for s in every], progress=progress)
    head_songs: dict[str, list[HeadSong]] = {split: [] for split in songs}
    it = iter(outputs)
    for split in ("train", "val", "test"):
        for s in songs[split]:
            head_songs[split].append(HeadSong(s.song_id, s.genre_index, next(it), groups.get(s.song_id, "")))
    phases["backbone"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = train_head(model.head, head_songs["train"], head_songs["val"],
                        target_accuracy=args.target_accuracy)
    model.head = result.head
    phases["train"] = time.perf_counter() - t0
    print(f"phase train: {phases['train']:.1f} s -> l2 {result.l2:g}, tau {result.voting.tau} margin "
          f"{result.voting.margin} ({result.selection['scheme']})", flush=True)
    test_report: dict[str, Any] = {"n_songs": 0}
    if head_songs["test"]:
        labels = [s.genre_index for s in head_songs["test"]]
        probs = head_probabilities(model.head, head_songs["test"])
        prior = prior_probabilities(model.head, head_songs["test"])
        test_report = evaluate_songs(probs, labels, result.voting)
        test_report["prior_song_accuracy"] = evaluate_songs(prior, labels, result.voting)["song_accuracy"]
        forced = [classes[int(p.sum(0).argmax())] for p in probs]
        test_report["confusion"] = confusion_matrix([classes[i] for i in labels], forced, classes)
        print(f"test: forced accuracy {test_report['song_accuracy']:.3f} (prior alone "
              f"{test_report['prior_song_accuracy']:.3f}), coverage {test_report['coverage']:.3f}", flush=True)
    metrics = {"test": test_report, "val": result.val_report, "selection": result.selection, "l2_grid": result.grid,
               "n_songs": {k: len(v) for k, v in songs.items()}, "n_feature_errors": n_errors, "phases_s": phases,
               "fine_tuned_from": start_bundle.version if start_bundle is not None else None}
    meta = CNNBundle(classes=tuple(classes), feature_config=cfg.features, cnn_config=cfg.cnn, voting=result.voting,
                     feature_version=feature_version(cfg.features), catalog_fingerprint=fp, metrics=metrics,
                     n_mels=cfg.features.n_mels, n_frames=cfg.features.slice_frames, backbone=backbone)
    saved = save_cnn_bundle(args.out, model.cpu(), meta)
    print(f"wrote bundle {saved.url} version {saved.version}; total wall time {time.perf_counter() - t_all:.1f} s",
          flush=True)
    return 0


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
