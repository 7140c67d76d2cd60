"""Label a catalog on Ray: decode/slice tasks -> CNN voting actors -> GAN actors (unclassified only) -> publish.

Reads a catalog Parquet (one file or a folder/prefix; local or s3://) with track_id and audio_uri, and
publishes one label row per catalog track under --output (see genre_core/label_store.py for the layout).
Readers see a run only once it is published.

Modes:
  nightly   skip tracks that already have a published label from the same model versions (default)
  backfill  relabel every track (e.g. with a new model)

Examples:
  genre-job label --catalog data/demo/catalog.parquet --output data/demo/labels
  genre-job label --catalog s3://bucket/catalog/ --output s3://bucket/labels --mode backfill \\
      --models s3://bucket/models/v2 --config configs/label-cluster.yaml
  ray job submit --working-dir . -- python -m jobs.label --catalog s3://bucket/catalog/ --output s3://bucket/labels

S3 endpoint and credentials come from the standard AWS environment variables (AWS_ENDPOINT_URL included).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import datetime, timezone

import pandas as pd

from genre_core import storage
from genre_core.config import ConfigError
from genre_core.label_store import Manifest, PublishError, RunWriter, latest_labels, remove_unpublished
from genre_core.schema import read_catalog
from jobs.models import ModelSet, resolve_models
from jobs.resources import load_resources

MODES = ("nightly", "backfill")


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", required=True, help="catalog Parquet file or folder/prefix (local or s3://)")
    parser.add_argument("--output", required=True, help="labels root (local folder or s3:// prefix)")
    parser.add_argument("--models", default=None,
                        help="folder with cnn/ and (optional) gan/ bundles (default: $GENRE_TAGGER_MODELS, "
                             "else models/default shipped in the repo)")
    parser.add_argument("--config", default=None, help="YAML with a resources: section (configs/label-*.yaml)")
    parser.add_argument("--mode", choices=MODES, default="nightly", help="nightly (default) or backfill")
    parser.add_argument("--limit", type=int, default=None, help="label at most N tracks (after skipping)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be labelled, start nothing")
    parser.add_argument("--no-gan", action="store_true", help="skip the GAN stage even if a GAN bundle exists")
    parser.add_argument("--audio-root", default=None, help="if set, every audio_uri must lie inside it")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster address (default: RAY_ADDRESS, as set by `ray job submit`, else local)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray started by this job")


def tracks_to_label(catalog: pd.DataFrame, output: str, models: ModelSet, mode: str) -> tuple[pd.DataFrame, int]:
    """(catalog rows to label, number skipped). Nightly skips tracks whose latest published label comes from
    the same model, GAN and feature versions and is not an error (errors are retried)."""
    if mode == "backfill":
        return catalog, 0
    done = latest_labels(output)
    if done.empty:
        return catalog, 0
    same = (
        (done["model_version"] == models.cnn_version)
        & (done["gan_version"].fillna("") == (models.gan_version or ""))
        & (done["feature_version"] == models.feature_version)
        & (done["status"] != "error")
    )
    skip = set(done.loc[same, "track_id"])
    todo = catalog[~catalog["track_id"].isin(skip)]
    return todo, len(catalog) - len(todo)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        resources = load_resources(args.config)
        models = resolve_models(args.models, use_gan=not args.no_gan)
        catalog = read_catalog(args.catalog)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output = storage.absolute(args.output)
    todo, skipped = tracks_to_label(catalog, output, models, args.mode)
    if args.limit is not None:
        todo = todo.head(args.limit)
    print(f"catalog {args.catalog}: {len(catalog)} tracks; {args.mode}: {len(todo)} to label, {skipped} already "
          f"labelled with these models\nmodels: cnn {models.cnn_version}, gan {models.gan_version or '-'}, "
          f"features {models.feature_version}\noutput: {output}", flush=True)
    if args.dry_run:
        print(f"dry run: nothing started; resources {resources}")
        return 0
    if todo.empty:
        print("nothing to label")
        return 0

    from jobs import label_pipeline  # imports Ray only when there is work

    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    removed = remove_unpublished(output)
    if removed:
        print(f"removed {len(removed)} folder(s) of unpublished earlier runs")
    writer = RunWriter(output, Manifest(
        run_id=run_id, mode=args.mode, catalog=args.catalog, model_version=models.cnn_version,
        gan_version=models.gan_version, feature_version=models.feature_version, classes=models.classes,
        started_at=datetime.now(timezone.utc).isoformat(),
    ))
    label_pipeline.init_ray(args.ray_address, args.num_cpus)
    stats = label_pipeline.label_tracks(todo, models, resources, writer, run_id, audio_root=args.audio_root)
    writer.manifest.stats = stats
    try:
        manifest = writer.publish(set(todo["track_id"]))
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - started
    counts = ", ".join(f"{k} {v}" for k, v in manifest.status_counts.items())
    print(f"published run {run_id}: {manifest.n_rows} tracks ({counts}); GAN stage processed "
          f"{stats['gan_songs']} unclassified songs\n{manifest.n_rows / stats['pipeline_s']:.2f} songs/s in the "
          f"pipeline, wall time {wall:.1f} s\nlabels: {output}/labels (read the latest per track with "
          f"`genre-job labels show --output {output}`)")
    return 0


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
