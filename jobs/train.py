"""Train a model from a labelled catalog and write a model bundle.

The catalog is Parquet (a file or a folder of files, local or s3://) with the columns track_id,
audio_uri, genre and split ('train' / 'val' / 'test'; without a split column every song trains).
Songs of split 'train' train the CNN; 'val' songs choose the epoch (early stopping) and the voting
thresholds tau/margin (highest coverage with accuracy on classified songs >= --target-accuracy); when the
catalog has no 'val' songs, a genre-stratified share of the train songs (train.val_fraction) is held out,
by song (by whole groups of --split-by COLUMN, e.g. artist, when given). 'test' songs are only evaluated, and
their figures go into the bundle's metrics.

Runs on Ray (RAY_ADDRESS, as `ray job submit` sets, or a new local Ray): the slice CNN on Ray Train, its songs
decoded by Ray Data and streamed to --resources' DDP workers, checkpointed every epoch under --checkpoints (a
rerun of the same training resumes from its last checkpoint); the musicnn head on backbone outputs that Ray Data
computes once and stores as Parquet beside the checkpoints. `train gan` runs on Ray Train too (its own --help).

Examples:
  genre-job train cnn --catalog data/corpus/catalog.parquet --out models/default/cnn --config configs/default.yaml
  genre-job train gan --cnn models/default/cnn --catalog data/corpus/catalog.parquet --out models/gan-dev
  python -m jobs.train cnn --catalog s3://bucket/catalog/ --out s3://bucket/models/v2/cnn \\
      --resources configs/train-cluster.yaml --checkpoints s3://bucket/checkpoints --split-by artist
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from genre_core.config import Config, ConfigError, load_config
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
    cnn.add_argument("--resources", default=None,
                     help="YAML whose resources: section sizes the Ray Train workers and the decode pool "
                          "(configs/train-local.yaml, configs/train-cluster.yaml; default: 2 CPU workers)")
    cnn.add_argument("--checkpoints", default=os.path.expanduser("~/ray_results"),
                     help="where every epoch's checkpoint goes, local or s3:// (shared storage on a multi-node "
                          "cluster); a rerun of the same training resumes there (default ~/ray_results)")
    cnn.add_argument("--split-by", default=None, metavar="COLUMN",
                     help="catalog column (artist, album) whose values never straddle two splits: the catalog's "
                          "splits are checked, and validation songs are held out by whole groups")
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


@dataclass
class Plan:
    """The labelled songs of each split (columns track_id, audio_uri, genre, genre_index, ...), the classes, the
    catalog's fingerprint and the config (the --from bundle's features and cnn replace --config's)."""

    cfg: Config
    splits: dict[str, pd.DataFrame]
    classes: list[str]
    fingerprint: str
    catalog: pd.DataFrame
    start_bundle: Any = None


def plan(args: argparse.Namespace) -> Plan:
    """Read and check the catalog and config; the songs of each split (validation songs held out of the train
    split when the catalog has none)."""
    from genre_core.training.splits import check_groups_within_splits, hold_out_validation

    cfg = load_config(args.config)
    start_bundle = None
    if args.from_bundle:
        import dataclasses

        from genre_core.artifacts import CNNBundle, read_bundle_meta

        start_bundle = CNNBundle.from_json(read_bundle_meta(args.from_bundle), url=args.from_bundle)
        if start_bundle.cnn_config.arch != "musicnn":
            raise ValueError(f"--from {args.from_bundle}: only a musicnn bundle can be fine-tuned "
                             f"(this one is {start_bundle.cnn_config.arch!r})")
        cfg = dataclasses.replace(cfg, features=start_bundle.feature_config, cnn=start_bundle.cnn_config,
                                  audio=dataclasses.replace(cfg.audio,
                                                            sample_rate=start_bundle.feature_config.sample_rate))
    df = read_catalog(args.catalog)  # validated: readable, track_id unique and never null
    check_catalog_columns(list(df.columns), extra=("genre",) + ((args.split_by,) if args.split_by else ()))
    refuse_reserved_soundfonts(df, args.catalog)
    if "split" not in df.columns:
        df["split"] = "train"
    df = df[df["genre"].notna()].copy()
    if args.limit:
        df = df.groupby(["split", "genre"], group_keys=False).head(args.limit)
    if args.split_by:
        check_groups_within_splits(df["split"].tolist(), df[args.split_by].astype(str).tolist(), args.split_by)
    classes = class_list(df["genre"])
    df["genre_index"] = df["genre"].map({g: i for i, g in enumerate(classes)}).astype("int64")
    df["audio_uri"] = df["audio_uri"].astype(str)
    if not (df["split"] == "train").any():
        raise ValueError("catalog has no 'train' songs")
    fingerprint = catalog_fingerprint(df)   # of the catalog's rows as they are (before any hold-out)
    if not (df["split"] == "val").any():
        train = df[df["split"] == "train"]
        val = hold_out_validation(train["track_id"].tolist(), train["genre_index"].tolist(),
                                  train[args.split_by].astype(str).tolist() if args.split_by else None,
                                  cfg.train.val_fraction, cfg.train.seed)
        df.loc[df["track_id"].isin(val), "split"] = "val"
        print(f"no 'val' split in the catalog: held out {len(val)} train songs "
              + (f"(whole {args.split_by} groups)" if args.split_by else "(stratified by genre)"))
    splits = {s: df[df["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")}
    return Plan(cfg, splits, classes, fingerprint, df, start_bundle)


def _run_cnn(args: argparse.Namespace) -> int:
    from genre_core.config import to_dict
    from jobs.label_pipeline import init_ray
    from jobs.resources import load_train_resources

    t_all = time.perf_counter()
    p = plan(args)
    res = load_train_resources(args.resources)
    print(f"catalog {args.catalog}: {len(p.catalog)} songs, {len(p.classes)} classes; "
          + ", ".join(f"{k} {len(v)}" for k, v in p.splits.items()) + f"; fingerprint {p.fingerprint}", flush=True)
    name = run_name_for(p, args)
    init_ray(include_dashboard=True)
    if p.cfg.cnn.arch == "musicnn":
        from jobs import train_head

        return train_head.run(args, p, res, name, t_all)
    from jobs import train_cnn

    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    fitted = train_cnn.fit(p.splits, len(p.classes), p.cfg, res, checkpoints=args.checkpoints, name=name,
                           audio_root=args.audio_root)
    state = fitted.state
    phases["train"] = time.perf_counter() - t0
    history = state["history"]
    best = state["best_model"] or state["model"]
    best_epoch = state["best_epoch"] if state["best_model"] else len(history)
    print(f"phase train: {phases['train']:.1f} s, {len(history)} epochs (best epoch {best_epoch}); last checkpoint "
          f"{fitted.checkpoint_path}" + (f"; resumed after epochs {state['resumed_after']}"
                                         if state["resumed_after"] else ""), flush=True)
    return _finish_slice_cnn(args, p, res, best, phases, t_all,
                             {"history": history, "best_epoch": best_epoch, "resumed_after": state["resumed_after"],
                              "workers": res.workers, "resources": to_dict(res), "run_name": name})


def run_name_for(p: Plan, args: argparse.Namespace) -> str:
    """The Ray Train run name: the same catalog, config, resources and output give the same name, so that a rerun
    resumes from the last checkpoint."""
    from genre_core.config import to_dict
    from jobs.ray_train import run_name

    return run_name("cnn", p.fingerprint, json.dumps(to_dict(p.cfg), sort_keys=True), str(args.resources), args.out,
                    str(args.from_bundle), str(args.split_by))


def _finish_slice_cnn(args: argparse.Namespace, p: Plan, res: Any, weights: dict[str, Any],
                      phases: dict[str, float], t_all: float, train_metrics: dict[str, Any]) -> int:
    """Score the validation and test songs with the trained weights, choose tau/m, write the bundle."""
    from genre_core.artifacts import CNNBundle, save_cnn_bundle
    from genre_core.features import feature_version
    from genre_core.metrics import confusion_matrix
    from genre_core.models.cnn import SliceCNN
    from genre_core.training.cnn import evaluate_songs, select_voting
    from jobs import train_cnn

    cfg, fc, classes = p.cfg, p.cfg.features, p.classes
    t0 = time.perf_counter()
    probs, labels = {}, {}
    for split in ("val", "test"):
        df = p.splits[split]
        scored = train_cnn.score(df, weights, len(classes), cfg, res, args.audio_root)
        ids = [t for t in df["track_id"] if t in scored]
        probs[split] = [scored[t] for t in ids]
        labels[split] = [int(g) for g in df.set_index("track_id").loc[ids, "genre_index"]] if ids else []
    n_errors = sum(len(p.splits[s]) - len(probs[s]) for s in ("val", "test"))
    voting, selection, val_report = select_voting(probs["val"], labels["val"], args.target_accuracy, cfg.voting)
    phases["select_voting"] = time.perf_counter() - t0
    print(f"phase select_voting: {phases['select_voting']:.1f} s -> tau {voting.tau} margin {voting.margin} "
          f"(val forced accuracy {val_report.get('song_accuracy')}, coverage {selection.get('val_coverage')}, "
          f"acc on classified {selection.get('val_accuracy_on_classified')})", flush=True)
    test_report: dict[str, Any] = {"n_songs": 0}
    if probs["test"]:
        test_report = evaluate_songs(probs["test"], labels["test"], voting)
        forced = [classes[int(q.sum(0).argmax())] for q in probs["test"]]
        test_report["confusion"] = confusion_matrix([classes[i] for i in labels["test"]], forced, classes)
    print("test: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in test_report.items() if k != "confusion"), flush=True)
    t0 = time.perf_counter()
    model = SliceCNN(len(classes), cfg.cnn, n_mels=fc.n_mels, n_frames=fc.slice_frames)
    model.load_state_dict(weights)
    metrics = {"test": test_report, "val": val_report, "selection": selection,
               "n_songs": {k: len(v) for k, v in p.splits.items()}, "n_scoring_errors": n_errors,
               "phases_s": phases, **train_metrics}
    meta = CNNBundle(classes=tuple(classes), feature_config=fc, cnn_config=cfg.cnn, voting=voting,
                     feature_version=feature_version(fc), catalog_fingerprint=p.fingerprint, metrics=metrics,
                     n_mels=fc.n_mels, n_frames=fc.slice_frames)
    saved = save_cnn_bundle(args.out, model.eval(), meta)
    phases["save"] = time.perf_counter() - t0
    print(f"wrote bundle {saved.url} version {saved.version}; total wall time {time.perf_counter() - t_all:.1f} s",
          flush=True)
    return 0


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
