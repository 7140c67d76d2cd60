"""Ray wiring of `genre-job train cnn` for the musicnn genre head (``cnn.arch: musicnn``).

    every labelled song --> decode actor pool (DecodeStage; train songs at train.train_slice_hop_frames)
      --> backbone actor pool (BackboneRows: the frozen backbone's outputs per slice; GPU when resources.num_gpus)
      --> Parquet under CHECKPOINTS/RUN_NAME/backbone-outputs-WIDTH/ (written once: a rerun reads them back)
    the driver: the Parquet files -> the head (full-batch L-BFGS, l2 and tau/m chosen on validation songs,
    genre_core/training/head.py) -> the bundle

The backbone's outputs are 1,756 floats (~7 KB) per slice (tag logits, penultimate and pooled features; a tenth of
the slice itself). The driver holds the train and val songs' outputs, at most ``resources.head_songs_in_memory``
of them: a catalog with more has l2 and tau/m chosen on a sample of that many (stratified by split, group and
genre), the head fitted on it, then refitted by minibatch passes streamed from the Parquet files over every train
song (:func:`genre_core.training.head.refit_streamed`). Test songs are always scored as they stream by. WIDTH is
the number of outputs, so that outputs written for a head of other inputs are never read back.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import ray
from ray.data.expressions import col

from genre_core import storage
from jobs.ray_train import arrow_path, write_parquet
from jobs.resources import TrainResources
from jobs.train import Plan

OUTPUTS_FOLDER = "backbone-outputs"


def _outputs_url(checkpoints: str, name: str, width: int) -> str:
    return f"{checkpoints.rstrip('/')}/{name}/{OUTPUTS_FOLDER}-{width}"


def write_backbone_outputs(p: Plan, res: TrainResources, url: str, bundle_url: str | None,
                           audio_root: str | None) -> None:
    """Ray Data: decode every labelled song, run the frozen backbone, write ``track_id, outputs`` as Parquet."""
    import dataclasses

    from genre_core.config import AudioConfig
    from genre_core.decoding import DecodeStage
    from genre_core.training.head import BackboneRows
    from jobs.models import backbone_dir
    from jobs.train_cnn import decode_pool, song_blocks

    cfg = p.cfg
    use_gpu = res.num_gpus > 0
    parts = []
    for splits, hop in ((("train",), cfg.train.train_slice_hop_frames), (("val", "test"), None)):
        df = pd.concat([p.splits[s] for s in splits])
        if df.empty:
            continue
        fc = dataclasses.replace(cfg.features, slice_hop_frames=hop or cfg.features.slice_hop_frames)
        parts.append(song_blocks(df, res.decode.songs_per_block, cfg.train.seed).map_batches(
            DecodeStage, fn_constructor_kwargs={"feature_cfg": fc, "root": audio_root,
                                                "audio_cfg": AudioConfig(sample_rate=fc.sample_rate)},
            **decode_pool(res)))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    ds = ds.map_batches(
        BackboneRows, fn_constructor_kwargs={
            "backbone_dir": None if bundle_url else backbone_dir(cfg.cnn.backbone), "bundle_url": bundle_url,
            "classes": p.classes, "precision": cfg.cnn.precision, "gpu_reserved": use_gpu,
            "torch_threads": res.torch_threads},
        compute=ray.data.ActorPoolStrategy(size=res.workers), num_cpus=res.num_cpus,
        num_gpus=res.num_gpus if use_gpu else 0, batch_size=8, batch_format="numpy")
    ds = ds.filter(expr=col("status") != "error").select_columns(["track_id", "outputs"])  # Arrow, not per row
    write_parquet(ds, url, "backbone outputs")


def stream_backbone_outputs(url: str, ids: set[str] | None = None, seed: int | None = None,
                            batch_songs: int = 256, seen: set[str] | None = None
                            ) -> Iterator[list[tuple[str, np.ndarray]]]:
    """Batches of ``(track_id, outputs)`` from the Parquet files of :func:`write_backbone_outputs` (read by Ray
    Data, which decodes its tensor columns), only the tracks in ``ids`` if given; with ``seed``, in a shuffled order
    (blocks, then songs within a buffer). Every track id read is added to ``seen`` if given."""
    path, kw = arrow_path(url)
    ds = ray.data.read_parquet(path, **kw)
    if seed is not None:
        ds = ds.randomize_block_order(seed=seed)
    for b in ds.iter_batches(batch_size=batch_songs, batch_format="numpy",
                             local_shuffle_buffer_size=4 * batch_songs if seed is not None else None,
                             local_shuffle_seed=seed):
        if seen is not None:
            seen.update(str(t) for t in b["track_id"])
        yield [(str(t), np.asarray(o, np.float32)) for t, o in zip(b["track_id"], b["outputs"], strict=True)
               if ids is None or str(t) in ids]


def read_backbone_outputs(url: str, ids: set[str] | None = None,
                          seen: set[str] | None = None) -> dict[str, np.ndarray]:
    """Backbone outputs per track id (only the tracks in ``ids`` if given: what the driver holds)."""
    return {t: o for batch in stream_backbone_outputs(url, ids, seen=seen) for t, o in batch}


def memory_sample(splits: dict[str, pd.DataFrame], group_by: str, cap: int, seed: int) -> set[str]:
    """``cap`` track ids of the train and val splits (all if fewer), every (split, group, genre) cell in proportion
    to its size: the songs whose outputs the driver holds to choose l2 and tau/m. In a random order, each song is
    ranked by its place within its cell as a fraction of the cell's size and the ``cap`` lowest are kept: every
    cell's first song comes before any cell's second, and a cell twice as large gives twice as many."""
    df = pd.concat([d.assign(_split=name) for name, d in splits.items() if name in ("train", "val")])
    cells = ["_split", "genre_index"] + ([group_by] if group_by in df.columns else [])
    df = df.sample(frac=1.0, random_state=seed)
    cell = df.groupby(cells, dropna=False)["track_id"]
    df = df.assign(_place=cell.cumcount() / cell.transform("size")).sort_values("_place", kind="stable")
    return set(df["track_id"].head(cap).astype(str))


def run(args: argparse.Namespace, p: Plan, res: TrainResources, name: str, t_all: float) -> int:
    """The musicnn genre model: backbone outputs computed once per song (Ray Data, Parquet), then the head."""
    from genre_core.artifacts import CNNBundle, load_cnn_bundle, save_cnn_bundle
    from genre_core.features import feature_version
    from genre_core.models.genre_head import new_genre_model
    from genre_core.training.head import (
        BEST,
        ONE_STANDARD_ERROR,
        HeadSong,
        refit_streamed,
        train_head,
    )
    from jobs.models import backbone_dir

    cfg, classes = p.cfg, p.classes
    phases: dict[str, float] = {}
    if p.start_bundle is not None:
        model, start = load_cnn_bundle(args.from_bundle)
        if list(start.classes) != classes:
            raise ValueError(f"--from bundle's classes {list(start.classes)} differ from the catalog's {classes}")
        backbone = start.backbone
    else:
        model, backbone = new_genre_model(backbone_dir(cfg.cnn.backbone), classes, cfg.cnn.precision)
    t0 = time.perf_counter()
    url = _outputs_url(args.checkpoints, name, model.head.n_inputs)
    fs, path = storage.filesystem(url)
    if fs.exists(path):
        print(f"backbone outputs: reading {url} (written by an earlier run of this training)", flush=True)
    else:
        write_backbone_outputs(p, res, url, args.from_bundle, args.audio_root)
    listed = {str(t): int(g) for df in p.splits.values() for t, g in zip(df["track_id"], df["genre_index"],
                                                                          strict=True)}
    fit_ids = {str(t) for split in ("train", "val") for t in p.splits[split]["track_id"]}
    cap = res.head_songs_in_memory
    sample = memory_sample(p.splits, args.group_by, cap, cfg.train.seed) if len(fit_ids) > cap else None
    present: set[str] = set()  # every song with outputs (the others failed to decode), test songs included
    outputs = read_backbone_outputs(url, fit_ids if sample is None else sample, seen=present)
    phases["backbone"] = time.perf_counter() - t0
    groups = p.catalog.set_index("track_id")[args.group_by].astype(str).to_dict() \
        if args.group_by in p.catalog.columns else {}
    songs = {split: [HeadSong(t, int(g), outputs[t], groups.get(t, "")) for t, g in
                     zip(p.splits[split]["track_id"], p.splits[split]["genre_index"], strict=True) if t in outputs]
             for split in ("train", "val")}
    n_errors = len(set(listed) - present)
    print(f"phase backbone: {phases['backbone']:.1f} s ({n_errors} songs skipped); outputs in {url}", flush=True)
    if sample is not None:
        print(f"{len(fit_ids)} train and val songs > resources.head_songs_in_memory {cap}: l2 and tau/m are chosen "
              f"on a sample of {len(outputs)} held in memory, then the head is refitted on every train song, "
              "streamed", flush=True)
    t0 = time.perf_counter()
    # fine-tuning (--from) on the catalog's own songs takes the best l2; a new model the stiffest (training/head.py)
    result = train_head(model.head, songs["train"], songs["val"], target_accuracy=args.target_accuracy,
                        l2_rule=BEST if p.start_bundle is not None else ONE_STANDARD_ERROR)
    split_ids = {name: set(df["track_id"].astype(str)) & present for name, df in p.splits.items()}
    if sample is not None:
        def passes(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for batch in stream_backbone_outputs(url, split_ids["train"], seed=cfg.train.seed + epoch):
                if batch:
                    yield (np.concatenate([o for _, o in batch]),
                           np.concatenate([np.full(len(o), listed[t], np.int64) for t, o in batch]))

        result.head = refit_streamed(result.head, model.head, passes, result.l2)
    model.head = result.head
    phases["train"] = time.perf_counter() - t0
    print(f"phase train: {phases['train']:.1f} s -> l2 {result.l2:g}, tau {result.voting.tau} margin "
          f"{result.voting.margin} ({result.selection['scheme']})", flush=True)
    test_batches = ([HeadSong(t, listed[t], o) for t, o in batch]
                    for batch in stream_backbone_outputs(url, split_ids["test"]))
    test_report = _test_report(model.head, test_batches, result.voting, classes)
    if test_report["n_songs"]:
        print(f"test: forced accuracy {test_report['song_accuracy']:.3f} (prior alone "
              f"{test_report['prior_song_accuracy']:.3f}), coverage {test_report['coverage']:.3f}", flush=True)
    n_songs = {k: len(v) for k, v in split_ids.items()}
    if sample is not None:
        n_songs["in_memory"] = len(outputs)
    metrics = {"test": test_report, "val": result.val_report, "selection": result.selection, "l2_grid": result.grid,
               "n_songs": n_songs, "n_feature_errors": n_errors, "phases_s": phases,
               "fine_tuned_from": p.start_bundle.version if p.start_bundle is not None else None,
               "backbone_outputs": url}
    meta = CNNBundle(classes=tuple(classes), feature_config=cfg.features, cnn_config=cfg.cnn, voting=result.voting,
                     feature_version=feature_version(cfg.features), catalog_fingerprint=p.fingerprint, metrics=metrics,
                     n_mels=cfg.features.n_mels, n_frames=cfg.features.slice_frames, backbone=backbone)
    saved = save_cnn_bundle(args.out, model.cpu(), meta)
    print(f"wrote bundle {saved.url} version {saved.version}; total wall time {time.perf_counter() - t_all:.1f} s",
          flush=True)
    return 0


def _test_report(head: Any, batches: Iterable[list[Any]], voting: Any, classes: list[str]) -> dict[str, Any]:
    """Forced accuracy, coverage (the model's own tau/m) and confusion of the head on the test songs, which come
    in batches of HeadSong as they stream from the outputs' Parquet files, and the tag prior's forced accuracy."""
    from genre_core.metrics import confusion_matrix
    from genre_core.training.cnn import evaluate_songs
    from genre_core.training.head import head_probabilities, prior_probabilities

    probs, prior, labels = [], [], []
    for batch in batches:
        probs += head_probabilities(head, batch)  # [n_slices, n_classes] a song: ~400 bytes, not its outputs' 70 KB
        prior += prior_probabilities(head, batch)
        labels += [s.genre_index for s in batch]
    if not labels:
        return {"n_songs": 0}
    report = evaluate_songs(probs, labels, voting)
    report["prior_song_accuracy"] = evaluate_songs(prior, labels, voting)["song_accuracy"]
    forced = [classes[int(q.sum(0).argmax())] for q in probs]
    report["confusion"] = confusion_matrix([classes[i] for i in labels], forced, classes)
    return report
