"""End to end: the Ray labelling job against a plain single-process loop over the same genre_core stages.

  python benchmarks/end_to_end.py --catalog data/corpus/catalog.parquet --limit 1000 [--models DIR] [--compare DIR]

Both label the same first ``--limit`` rows with the same model bundles (beyond the catalog's length its rows
come again under new track_ids):

  single process  genre_core.stages.label_song_by_song: DecodeStage -> CNNVoter -> GANStage (with a GAN bundle),
                  i.e. the loop a user would write around genre_core, run twice: sequentially (torch on one
                  thread: the baseline of the target) and with torch's default threads (its intra-op threads
                  then spin on every core: 1.6-2x the CPU time here, for -4% to +19% speed);
  Ray job         ``python -m jobs.label`` (--config) run in-process on a local Ray (all of this machine's CPUs)
                  that was started just before, as `ray job submit` finds its cluster running; Ray's own
                  start-up is timed and reported apart (``make demo`` pays it). The job's time is split into
                  the pools' start-up (until the first labels arrive) and the steady rate after it, which is
                  what a catalog much larger than ``--limit`` would see.

With ``--compare MODELS`` the whole measurement runs again with those models (e.g. the previous default), on
the same songs in the same run, and the ratio of the two Ray jobs' songs/s is printed.

The audio files are read once beforehand so that every run starts with a warm page cache. The labels of the
runs are compared (status, genre, vote shares) before any figure is recorded: a faster run that labels
differently would not count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _catalogs import first_rows  # noqa: E402
from _results import record  # noqa: E402

from genre_core.artifacts import load_cnn_bundle  # noqa: E402
from genre_core.label_runs import runs  # noqa: E402
from genre_core.label_table import locate, open_table, read_labels  # noqa: E402
from genre_core.stages import label_song_by_song  # noqa: E402
from jobs import label  # noqa: E402
from jobs.cli import run_job  # noqa: E402
from jobs.label_pipeline import init_ray  # noqa: E402
from jobs.models import DEFAULT_MODELS, resolve_models  # noqa: E402

DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice in a fresh process: the number of cores


def compare(ours: pd.DataFrame, ray_labels: pd.DataFrame) -> str:
    """Raise unless both runs gave every song the same status, genre and (to float tolerance) vote shares."""
    ray_labels = ray_labels.set_index("track_id").loc[ours.index]
    same_status = (ours["status"] == ray_labels["status"]).all()
    same_genre = (ours["genre"].fillna("") == ray_labels["genre"].fillna("")).all()
    diff = max(float(np.abs(a - np.asarray(b, np.float64)).max())
               for a, b in zip(ours["probabilities"], ray_labels["probabilities"], strict=True))
    if not (same_status and same_genre and diff < 1e-4):
        raise SystemExit(f"outputs differ: status equal {same_status}, genre equal {same_genre}, "
                         f"max vote-share difference {diff:.2g}")
    return f"identical labels (status and genre for every song; vote shares within {diff:.1g})"


def measure(df: pd.DataFrame, models_dir: str, args: argparse.Namespace) -> tuple[list[str], float]:
    """Label ``df`` with the models in ``models_dir``: single process (1 thread, default threads), then the Ray
    job; returns the result lines and the Ray job's songs/s."""
    models = resolve_models(models_dir, use_gan=not args.no_gan)
    single_s, single_cpu_s = {}, {}
    for threads in (1, DEFAULT_THREADS):
        torch.set_num_threads(threads)
        started, cpu = time.perf_counter(), time.process_time()
        ours = label_song_by_song(df, models.feature_config, models.cnn_url, models.gan_url)
        single_s[threads], single_cpu_s[threads] = time.perf_counter() - started, time.process_time() - cpu
    torch.set_num_threads(DEFAULT_THREADS)

    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        catalog = os.path.join(tmp, "catalog.parquet")
        df.to_parquet(catalog)
        job = ["--catalog", catalog, "--output", os.path.join(tmp, "labels"), "--config", args.config,
               "--models", models_dir, "--mode", "backfill"] + (["--no-gan"] if args.no_gan else [])
        started = time.perf_counter()
        init_ray()
        ray_start_s = time.perf_counter() - started
        started = time.perf_counter()
        if run_job(label, job) != 0:
            raise SystemExit(f"the labelling job failed with {models_dir}")
        ray_s = time.perf_counter() - started
        table = locate(os.path.join(tmp, "labels"))
        verdict = compare(ours, read_labels(table))
        stats = runs(open_table(table))[-1].stats

    n = len(df)
    sequential, threaded = n / single_s[1], n / single_s[DEFAULT_THREADS]
    ray_rate = n / ray_s
    pipeline_s, first_s = stats["pipeline_s"], stats["first_labels_s"]
    # labels arrive a data file (resources.rows_per_file rows) at a time: with one file, no steady state is seen
    rest = n - stats["first_labels_rows"]
    steady = rest / (pipeline_s - first_s) if rest else n / pipeline_s
    ratio = ray_rate / sequential
    with_ray_start = n / (ray_start_s + ray_s)  # the same job where the Ray it runs on starts with it
    gan = "CNN + GAN" if models.gan_url else "CNN only"
    stages = "DecodeStage -> CNNVoter" + (" -> GANStage" if models.gan_url else "")
    arch = load_cnn_bundle(models.cnn_url)[1].cnn_config.arch
    lines = [
        f"- models {models_dir} (cnn.arch {arch}): {n} songs of {args.catalog} ({gan}; "
        f"{ours['status'].value_counts().to_dict()}); {verdict}",
        f"- single process, sequential ({stages}, song by song, torch on 1 thread): {single_s[1]:.1f} s, "
        f"**{sequential:.2f} songs/s** ({1000 * single_cpu_s[1] / n:.1f} ms CPU per song)",
        f"- single process, torch's default {DEFAULT_THREADS} threads: {single_s[DEFAULT_THREADS]:.1f} s, "
        f"{threaded:.2f} songs/s ({1000 * single_cpu_s[DEFAULT_THREADS] / n:.1f} ms CPU per song)",
        f"- Ray job on {os.cpu_count()} CPUs ({args.config}) on a running local Ray (started before it in "
        f"{ray_start_s:.1f} s): {ray_s:.1f} s, **{ray_rate:.2f} songs/s**; of which reading the catalog and "
        f"publishing {ray_s - pipeline_s:.1f} s, pools' start-up until the first labels {first_s:.1f} s, then "
        f"**{steady:.1f} songs/s** steady; with Ray's start-up: {with_ray_start:.2f} songs/s",
        f"- **Ray job / sequential single process: {ratio:.2f}x** (target >= 1.6x: "
        f"{'met' if ratio >= 1.6 else 'NOT met'}); with Ray's start-up: "
        f"{with_ray_start / sequential:.2f}x; steady rate / sequential: {steady / sequential:.2f}x; "
        f"Ray job / default-threads single process: {ray_rate / threaded:.2f}x",
    ]
    print("\n".join(lines), flush=True)
    return lines, ray_rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--compare", default=None, metavar="MODELS",
                        help="also measure these models (e.g. the previous default) in the same run, and print "
                             "the Ray job's songs/s of --models as a fraction of theirs")
    parser.add_argument("--config", default="configs/label-local.yaml")
    parser.add_argument("--no-gan", action="store_true", help="CNN path only, in both runs")
    args = parser.parse_args(argv)

    df = first_rows(args.catalog, args.limit)
    for uri in df["audio_uri"]:  # warm page cache for both runs
        with open(uri, "rb") as fh:
            fh.read()
    lines, rate = measure(df, args.models, args)
    if args.compare:
        other_lines, other_rate = measure(df, args.compare, args)
        lines += other_lines + [f"- **Ray job songs/s of {args.models} / {args.compare}: {rate / other_rate:.2f}**"]
        print(lines[-1])
    record("End to end: Ray job vs single process", lines, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
