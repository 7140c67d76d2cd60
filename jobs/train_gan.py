"""Train the GAN stage's generator on paired renders, on Ray Train, and write a GAN bundle.

The generator is tied to one CNN bundle (--cnn): it works on that bundle's features and learns with that
CNN frozen (genre_core.training.gan). Its training pairs come from the catalog's split 'train': each song's
audio (input) and the same composition rendered through a reference soundfont without effects (target,
column reference_uri: `genre-job make-catalog --reference-soundfont fluidr3`).

A bundle may hold generators toward several references, whose readings the GAN stage averages: --with BUNDLE
trains one more toward this catalog's reference and writes a bundle holding BUNDLE's generators and the new one
(BUNDLE is left as it is). On songs of a soundfont no model had heard, G's toward FluidR3 and TimGM6mb together
gained more than either alone (README, "The GAN stage").

Runs on Ray (RAY_ADDRESS, as `ray job submit` sets, or a new local Ray), as `genre-job train cnn` does:

    train songs with a reference_uri --> decode actor pool (PairSlices: both renders decoded, log-mel, aligned
      slices every --pair-hop frames) --> CNN actor pool (PairFeatures: the frozen CNN's GAN features of input and
      target, float16) --> Parquet under CHECKPOINTS/gan-pairs-KEY/ (written once: a rerun, or another training on
      the same pairs, reads them back)
    the Parquet files --> split over --resources' workers --> each worker: iter_torch_batches (a local shuffle
      buffer of resources.gan_shuffle_buffer pairs) --> GANTrainLoop, G and D under DDP (gloo on CPUs, NCCL on
      GPUs), the frozen CNN loaded in each worker (never trained nor wrapped)
    every --checkpoint-every steps: rank 0 writes G, D, their optimisers and the step as a Ray Train checkpoint
      under --checkpoints (local or s3://); a worker that dies restarts the group from it, and a rerun of the same
      training resumes from its last one

A worker holds its shuffle buffer and a few blocks in flight, never the training pairs: its memory does not grow
with the catalog. --batch-size is per worker (a step takes workers x batch-size pairs).

The refine parameters (gan_weight, threshold; genre_core.refine) are then chosen by the driver on validation
songs: the split 'val' of the catalog, or every song of --tune-catalog (songs like the ones the stage will meet,
e.g. of another soundfont); 'test' songs are never used. Their log-mels are decoded by --workers processes and
cached under --cache-dir. The bundle names the CNN bundle's version and the feature_version, and loading it with
another CNN refuses.

Examples:
  genre-job make-catalog --per-genre 100 --reference-soundfont fluidr3 --out data/paired
  genre-job train gan --cnn models/default/cnn --catalog data/paired/catalog.parquet --out data/gan-fluidr3
  genre-job make-catalog --per-genre 100 --reference-soundfont timgm6mb --revoiced 2 --out data/paired-timgm
  genre-job train gan --cnn models/default/cnn --catalog data/paired-timgm/catalog.parquet --with data/gan-fluidr3 \\
      --out models/default/gan
  python -m jobs.train gan --cnn s3://bucket/models/v2/cnn --catalog s3://bucket/paired/ \\
      --out s3://bucket/models/v2/gan --resources configs/train-cluster.yaml --checkpoints s3://bucket/checkpoints
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from genre_core.config import ConfigError, FeatureConfig
from jobs.mel_cache import DEFAULT_CACHE_DIR, load_catalog_mels

PAIRS_FOLDER = "gan-pairs"
PAIRS_PER_CALL = 64           # pairs per call of the CNN actors (PairFeatures)


def build_parser(parser: argparse.ArgumentParser) -> None:
    from genre_core.training.gan import GANTrainConfig

    d = GANTrainConfig()
    parser.add_argument("--cnn", required=True, help="CNN bundle directory the GAN serves (local or s3://)")
    parser.add_argument("--catalog", required=True,
                        help="catalog Parquet with track_id, audio_uri, genre, split and reference_uri (the clean "
                             "target render of each train song)")
    parser.add_argument("--out", required=True, help="GAN bundle directory to write (local or s3://)")
    parser.add_argument("--with", dest="with_bundle", default=None, metavar="GAN_BUNDLE",
                        help="a GAN bundle of the same CNN whose generators the new bundle also holds (toward other "
                             "reference soundfonts); the refine parameters are chosen for all of them together")
    parser.add_argument("--tune-catalog", default=None,
                        help="validation songs for the refine parameters (every song with a genre); default: the "
                             "split 'val' of --catalog")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--steps", type=int, default=d.steps, help=f"training steps ({d.steps})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help=f"pairs per step on each worker ({d.batch_size})")
    parser.add_argument("--max-minutes", type=float, default=d.max_minutes,
                        help="stop training after this many minutes of it (summed over the runs that resumed it) "
                             "even if steps remain")
    parser.add_argument("--pair-hop", type=int, default=None,
                        help="frames between the starts of training pairs (default: a slice, no overlap)")
    parser.add_argument("--checkpoint-every", type=int, default=250,
                        help="steps between checkpoints (G, D, their optimisers and the step; 250)")
    parser.add_argument("--resources", default=None,
                        help="YAML whose resources: section sizes the Ray Train workers and the actor pools that "
                             "compute the pairs (configs/train-local.yaml, configs/train-cluster.yaml; default: 2 "
                             "CPU workers)")
    parser.add_argument("--checkpoints", default=os.path.expanduser("~/ray_results"),
                        help="where the training pairs (Parquet) and the checkpoints go, local or s3:// (shared "
                             "storage on a multi-node cluster); a rerun of the same training resumes there "
                             "(default ~/ray_results)")
    parser.add_argument("--refine-min-songs", type=int, default=40,
                        help="validation songs used to choose the refine parameters: the unclassified ones, "
                             "topped up with the most ambiguous classified ones to this many (40)")
    parser.add_argument("--wrong-penalty", type=float, default=1.0,
                        help="the refine threshold maximises right - penalty * wrong on validation (1.0)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes that decode the validation songs (in the driver)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR,
                        help="where the validation songs' decoded log-mels are cached")
    parser.add_argument("--audio-root", default=None, help="if set, every audio_uri must lie inside it")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads of the driver, which scores the validation songs (use 1 on a machine "
                             "shared with other jobs; the workers' come from --resources)")


# ---- training pairs: Ray Data -> Parquet -------------------------------------------------------------------

def reference_name(catalog: pd.DataFrame, catalog_url: str) -> str:
    """The soundfont the catalog's clean targets were rendered through (column reference_soundfont, as
    make-catalog writes it), or a name made of the catalog's URL where it has no such column."""
    if "reference_soundfont" not in catalog.columns:
        return f"the references of {catalog_url}"
    names = sorted(set(catalog["reference_soundfont"].dropna().astype(str)))
    if len(names) != 1:
        raise ValueError(f"the catalog's pairs must have one reference soundfont, found {names or 'none'}")
    return names[0]


def pair_songs(catalog: pd.DataFrame) -> pd.DataFrame:
    """The train songs with a genre and a reference render (track_id, audio_uri, reference_uri)."""
    if "reference_uri" not in catalog.columns:
        raise ValueError("the catalog has no reference_uri column: render it with `genre-job make-catalog "
                         "--reference-soundfont NAME` (the clean targets of the GAN's training pairs)")
    split = catalog["split"] if "split" in catalog.columns else pd.Series("train", index=catalog.index)
    rows = catalog[(split == "train") & catalog["reference_uri"].notna() & catalog["genre"].notna()]
    if rows.empty:
        raise ValueError("the catalog has no 'train' songs with a reference_uri")
    return rows[["track_id", "audio_uri", "reference_uri"]].astype(str).reset_index(drop=True)


def read_pairs(url: str, columns: list[str]) -> Any:
    """The pairs' Parquet files as a Ray Dataset of ``columns``, its files in a new order every epoch."""
    import ray

    from jobs.ray_train import arrow_path

    path, kw = arrow_path(url)
    return ray.data.read_parquet(path, shuffle="files", **kw).select_columns(columns)


def training_pairs(songs: pd.DataFrame, cnn_url: str, cnn_version: str, fc: FeatureConfig, hop: int, res: Any,
                   checkpoints: str, audio_root: str | None) -> tuple[str, dict[str, Any]]:
    """The training pairs' Parquet folder (``track_id``; ``inputs``, ``targets`` ``[C, n_frames]`` float16) and what
    it holds (n_pairs, n_songs). Named after the CNN bundle, the hop and the songs, and written once: a rerun reads
    the folder back; a folder without its ``.json`` record (an earlier run stopped while writing it) is written
    again."""
    import ray

    from genre_core import storage
    from genre_core.training.data import PairFeatures, PairSlices
    from jobs.ray_train import write_parquet
    from jobs.train_cnn import decode_pool

    key = hashlib.sha256("\n".join([cnn_version, str(hop), str(audio_root), *(
        "\t".join(r) for r in songs.itertuples(index=False))]).encode()).hexdigest()[:12]
    url = storage.join(storage.absolute(checkpoints), f"{PAIRS_FOLDER}-{key}")
    fs, path = storage.filesystem(url)
    if fs.exists(path + ".json"):
        info = json.loads(storage.read_bytes(url + ".json"))
        print(f"training pairs: reading {url} (written by an earlier run)", flush=True)
        return url, info
    if fs.exists(path):
        fs.rm(path, recursive=True)
    use_gpu = res.num_gpus > 0
    n = res.decode.songs_per_block
    ds = ray.data.from_pandas([songs.iloc[i:i + n] for i in range(0, len(songs), n)]).map_batches(
        PairSlices, fn_constructor_kwargs={"feature_cfg": fc, "hop_frames": hop, "root": audio_root},
        **decode_pool(res))
    ds = ds.map_batches(
        PairFeatures, fn_constructor_kwargs={"cnn_url": cnn_url, "gpu_reserved": use_gpu,
                                             "torch_threads": res.torch_threads},
        compute=ray.data.ActorPoolStrategy(size=res.workers), num_cpus=res.num_cpus,
        num_gpus=res.num_gpus if use_gpu else 0, batch_size=PAIRS_PER_CALL, batch_format="numpy")
    write_parquet(ds, url, "training pairs")
    fs.invalidate_cache(path)  # written by other processes
    owners = read_pairs(url, ["track_id"]) if fs.exists(path) else None
    n_pairs = owners.count() if owners is not None else 0
    if n_pairs == 0:
        raise ValueError("no training pair could be built (every train song failed to decode or is too short)")
    info = {"n_pairs": n_pairs, "n_songs": len(owners.unique("track_id")), "hop": hop, "cnn_version": cnn_version}
    storage.write_bytes(url + ".json", json.dumps(info).encode())
    return url, info


# ---- training: Ray Train -------------------------------------------------------------------------------------

def _batches(shard: Any, batch_size: int, buffer: int, device: Any) -> Iterator[tuple[Any, Any]]:
    """(inputs, targets) batches of this worker's share of the pairs (float16), epoch after epoch: the workers get
    equal shares, so each takes as many batches (DDP)."""
    while True:
        n = 0
        for b in shard.iter_torch_batches(batch_size=batch_size, local_shuffle_buffer_size=max(buffer, batch_size),
                                          drop_last=True, pin_memory=device.type == "cuda"):
            n += 1
            yield b["inputs"], b["targets"]
        if n == 0:
            raise ValueError(f"a worker's share of the training pairs is less than one batch of {batch_size}: use "
                             "fewer workers or a smaller --batch-size")


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: :class:`GANTrainLoop` over this worker's share of the pairs, a checkpoint every
    ``checkpoint_every`` steps."""
    import ray.train
    import ray.train.torch

    from genre_core.artifacts import load_cnn_bundle
    from genre_core.training.gan import GANTrainLoop, frozen
    from jobs.ray_train import max_over_workers, peak_rss_mb, report, resume, worker

    res = config["resources"]
    me = worker(res)
    cnn, _ = load_cnn_bundle(config["cnn"], device=me.device)
    with frozen(cnn):
        loop = GANTrainLoop(cnn, config["n_features"], config["model_cfg"], config["train_cfg"], me.device,
                            wrap=ray.train.torch.prepare_model, log=me.log)
        if resume(loop, me.device):
            loop.resumed_at.append(loop.step)
            me.log(f"resumed from the checkpoint of step {loop.step}")
        me.log(f"{me.world_size} workers on {me.device}")
        batches = _batches(ray.train.get_dataset_shard("train"), loop.cfg.batch_size, res.gan_shuffle_buffer,
                           me.device)
        every = config["checkpoint_every"]
        while not loop.stopped:
            loop.run(batches, until=(loop.step // every + 1) * every)
            rss = max_over_workers(peak_rss_mb(), me.device)
            report({**loop.state_dict(), "worker_peak_rss_mb": rss},
                   {"step": loop.step, "train_s": loop.train_s, "worker_peak_rss_mb": rss}, me.rank)


def fit(pairs_url: str, cnn_url: str, n_features: int, model_cfg: Any, train_cfg: Any, res: Any, *,
        checkpoint_every: int, checkpoints: str, name: str) -> Any:
    """Train G and D on Ray Train; the loop state of the last checkpoint (``jobs.ray_train.Fitted``)."""
    from jobs import ray_train

    return ray_train.fit(_worker_loop, {"cnn": cnn_url, "n_features": n_features, "model_cfg": model_cfg,
                                        "train_cfg": train_cfg, "checkpoint_every": checkpoint_every}, res,
                         {"train": read_pairs(pairs_url, ["inputs", "targets"])}, name=name, checkpoints=checkpoints)


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

    from genre_core import storage
    from genre_core.artifacts import BundleError, load_cnn_bundle
    from genre_core.config import to_dict
    from genre_core.models.cnn import pick_device
    from genre_core.models.gan import GANModelConfig, Generator, PatchDiscriminator
    from genre_core.models.gan_bundle import GANBundle, load_gan_models, save_gan_bundle
    from genre_core.schema import read_catalog
    from genre_core.training.gan import GANTrainConfig
    from jobs.label_pipeline import init_ray
    from jobs.ray_train import run_name
    from jobs.resources import load_train_resources

    t_all = time.perf_counter()
    phases: dict[str, float] = {}
    if args.checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every must be at least 1, got {args.checkpoint_every}")
    torch.set_num_threads(max(1, args.threads))
    # the Ray workers and actors do not run in this directory: they get absolute paths
    cnn_url = storage.absolute(args.cnn)
    audio_root = storage.absolute(args.audio_root) if args.audio_root else None
    cnn, cnn_meta = load_cnn_bundle(cnn_url)
    fc = cnn_meta.feature_config
    res = load_train_resources(args.resources)
    print(f"CNN bundle {cnn_meta.version} ({len(cnn_meta.classes)} classes, {cnn_meta.feature_version})", flush=True)
    catalog = read_catalog(args.catalog)
    songs, reference = pair_songs(catalog), reference_name(catalog, args.catalog)
    carried, carried_d, carried_meta = [], [], None  # the generators of --with, toward other references
    if args.with_bundle:
        try:
            carried, carried_d, carried_meta = load_gan_models(args.with_bundle, cnn_version=cnn_meta.version,
                                                               feature_version=cnn_meta.feature_version)
        except BundleError as exc:
            raise ValueError(f"--with: {exc}") from exc
        if reference in carried_meta.references:
            raise ValueError(f"--with: {args.with_bundle} already holds a generator toward {reference}")
        print(f"with the generators of {carried_meta.version} (toward {', '.join(carried_meta.references)})",
              flush=True)
    print(f"pairs: {len(songs)} train songs, clean targets through {reference}", flush=True)
    hop = args.pair_hop or fc.slice_frames
    init_ray(include_dashboard=True)

    t0 = time.perf_counter()
    pairs_url, pairs = training_pairs(songs, cnn_url, cnn_meta.version, fc, hop, res, args.checkpoints, audio_root)
    phases["pairs"] = time.perf_counter() - t0
    print(f"{pairs['n_pairs']} training pairs from {pairs['n_songs']} songs (hop {hop} frames) in {pairs_url}; "
          f"{phases['pairs']:.1f} s", flush=True)

    if pairs["n_pairs"] // res.workers < args.batch_size:
        raise ValueError(f"{pairs['n_pairs']} training pairs give each of the {res.workers} workers less than one "
                         f"batch of {args.batch_size}: use fewer workers or a smaller --batch-size")
    model_cfg = GANModelConfig()
    train_cfg = dataclasses.replace(GANTrainConfig(), seed=args.seed, steps=args.steps, batch_size=args.batch_size,
                                    max_minutes=args.max_minutes)
    name = run_name("gan", pairs_url, json.dumps(to_dict(train_cfg), sort_keys=True),
                    json.dumps(to_dict(model_cfg), sort_keys=True), str(args.resources), args.out)
    t0 = time.perf_counter()
    fitted = fit(pairs_url, cnn_url, cnn.n_gan_features, model_cfg, train_cfg, res,
                 checkpoint_every=args.checkpoint_every, checkpoints=args.checkpoints, name=name)
    state = fitted.state
    phases["train"] = time.perf_counter() - t0
    print(f"phase train: {phases['train']:.1f} s, {state['step']} steps; last checkpoint {fitted.checkpoint_path}"
          + (f"; resumed at steps {state['resumed_at']}" if state["resumed_at"] else ""), flush=True)
    generator = Generator(model_cfg, n_features=cnn.n_gan_features)
    generator.load_state_dict(state["generator"])
    discriminator = PatchDiscriminator(model_cfg, n_features=cnn.n_gan_features)
    discriminator.load_state_dict(state["discriminator"])

    t0 = time.perf_counter()
    device = pick_device()
    generators = [g.to(device) for g in [*carried, generator.eval()]]
    refine, selection = _choose_refine(args, cnn.to(device), cnn_meta, generators)
    phases["select_refine"] = time.perf_counter() - t0
    print(f"refine parameters (validation): {refine}; {selection['summary']}", flush=True)

    trained = {"reference": reference, "seed": args.seed, "steps_done": state["step"], "history": state["history"],
               "n_pairs": pairs["n_pairs"], "n_train_songs": pairs["n_songs"], "pairs": pairs_url, "run_name": name}
    earlier = [] if carried_meta is None else carried_meta.metrics.get("generators") or [
        {"reference": r} for r in carried_meta.references]
    meta = GANBundle(
        classes=tuple(cnn_meta.classes), references=(*(carried_meta.references if carried_meta else ()), reference),
        model_config=model_cfg, train_config=train_cfg,
        cnn_version=cnn_meta.version, feature_version=cnn_meta.feature_version, feature_config=fc,
        n_features=cnn.n_gan_features, n_frames=fc.slice_frames, refine=refine,
        # this run's generator: its training record is the last of "generators" (steps, history, pairs, run name)
        metrics={"resumed_at": state["resumed_at"],
                 "timings": {"train_s": state["train_s"], "s_per_step": state["train_s"] / max(state["step"], 1)},
                 "selection": selection, "phases_s": phases, "workers": res.workers, "resources": to_dict(res),
                 "checkpoint_every": args.checkpoint_every,
                 "worker_peak_rss_mb": state["worker_peak_rss_mb"], "driver_device": str(device),
                 "generators": [*earlier, trained],
                 "with_bundle": carried_meta.version if carried_meta else None},
    )
    saved = save_gan_bundle(args.out, [g.cpu() for g in generators], [*carried_d, discriminator.eval()], meta)
    print(f"wrote GAN bundle {saved.url} version {saved.version} (for CNN {saved.cnn_version}; generators toward "
          f"{', '.join(saved.references)}); "
          f"training {phases['train']:.1f} s; total {time.perf_counter() - t_all:.1f} s", flush=True)
    return 0


def _choose_refine(args: argparse.Namespace, cnn: Any, cnn_meta: Any, generators: list[Any],
                   ) -> tuple[Any, dict[str, Any]]:
    """The refine parameters chosen on the validation songs (in the driver) for the generators' averaged votes, and
    the record of the choice."""
    from genre_core.features import slice_mel
    from genre_core.inference import slice_probabilities
    from genre_core.refine import gan_votes
    from genre_core.training.gan import choose_refine_params, refine_tuning_set

    fc = cnn_meta.feature_config
    device = next(cnn.parameters()).device
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
    g_votes = gan_votes([slices[i] for i in chosen], generators, cnn)
    labels = [cls_index[tune["genre"].iloc[i]] for i in chosen]
    refine, selection = choose_refine_params(votes, g_votes, labels, wrong_penalty=args.wrong_penalty)
    selection.update(tuning_song_ids=[tune["track_id"].iloc[i] for i in chosen], n_validation_songs=len(tune),
                     tune_catalog=args.tune_catalog or f"{args.catalog} (split val)")
    return refine, selection


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
