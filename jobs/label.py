"""Label a catalog on Ray: decode/slice -> CNN voting actors -> GAN actors (unclassified only) -> the labels table.

Reads a catalog Parquet (one file or a folder/prefix; local or s3://) with track_id and audio_uri (and, when
present, curated_genre: a genre set by a person), and upserts one label row per catalog track into the labels
table, an Apache Iceberg table (see genre_core/label_table.py) whose warehouse is --output. The workers write
the table's data files; the driver commits them every --commit-every songs, so a long backfill is durable in
steps, and readers see a commit's rows once it is made. Runs may overlap: a commit that meets another is
planned again and retried.

Modes:
  nightly   skip tracks that already have a label from the same model versions (errors are retried; default)
  backfill  relabel every track (e.g. with a new model); a backfill that was killed continues where it stopped
            when run again (only tracks lacking a label of its model versions made since it began)

Curated genres: a catalog column (labels.curated_column, default curated_genre) gives the genre a person set;
such tracks get status curated with that genre, the model's votes beside it, in every mode.

Examples:
  genre-job label --catalog data/demo/catalog.parquet --output data/demo/labels
  genre-job label --catalog s3://bucket/catalog/ --output s3://bucket/labels --mode backfill \\
      --table-catalog postgresql://user@db/labels --models s3://bucket/models/v2 --config configs/label-cluster.yaml
  ray job submit --working-dir . -- python -m jobs.label --catalog s3://bucket/catalog/ --output s3://bucket/labels

S3 endpoint and credentials come from the standard AWS environment variables (AWS_ENDPOINT_URL included).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import datetime, timezone

from genre_core import storage
from genre_core.catalog_files import catalog_files
from genre_core.config import ConfigError, read_yaml
from genre_core.label_commit import CommitError, RunCommitter, RunManifest
from genre_core.label_runs import resumable_backfill
from genre_core.label_selection import Selection
from genre_core.label_table import LabelsNotFound, LabelTable, TableSettings, locate, open_table
from genre_core.schema import CatalogError
from jobs.models import resolve_models
from jobs.resources import load_resources

MODES = ("nightly", "backfill")


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", required=True, help="catalog Parquet file or folder/prefix (local or s3://)")
    parser.add_argument("--output", required=True,
                        help="labels table warehouse (local folder or s3:// prefix); a local one holds the "
                             "embedded catalog too (LABELS/catalog.db)")
    parser.add_argument("--table-catalog", default=None, metavar="URI",
                        help="SQL catalog of the labels table (sqlite:////path/labels.db, postgresql://...); "
                             "default: labels.catalog of --config, else LABELS/catalog.db beside a local warehouse")
    parser.add_argument("--models", default=None,
                        help="folder with cnn/ and (optional) gan/ bundles (default: $GENRE_TAGGER_MODELS, "
                             "else models/default shipped in the repo)")
    parser.add_argument("--config", default=None,
                        help="YAML with a resources: section and optional labels: section (configs/label-*.yaml)")
    parser.add_argument("--mode", choices=MODES, default="nightly", help="nightly (default) or backfill")
    parser.add_argument("--commit-every", type=int, default=None, metavar="N",
                        help="songs per commit of the labels table (default: labels.commit_every, 50000)")
    parser.add_argument("--limit", type=int, default=None, help="label at most N tracks (after skipping)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be labelled, start nothing")
    parser.add_argument("--no-gan", action="store_true", help="skip the GAN stage even if a GAN bundle exists")
    parser.add_argument("--audio-root", default=None, help="if set, every audio_uri must lie inside it")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster address (default: RAY_ADDRESS, as set by `ray job submit`, else local)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray started by this job")


def table_from_args(args: argparse.Namespace, settings: TableSettings | None = None) -> LabelTable:
    """The labels table named by --output, --table-catalog and the config's labels: section."""
    settings = settings or _settings(getattr(args, "config", None))
    return locate(args.output, settings, getattr(args, "table_catalog", None))


def _settings(config: str | None) -> TableSettings:
    """The config's labels: section (defaults without one)."""
    return TableSettings.from_yaml_section(read_yaml(config).get("labels") if config else None)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        resources = load_resources(args.config)
        settings = _settings(args.config)
        models = resolve_models(args.models, use_gan=not args.no_gan)
        table = table_from_args(args, settings)
        ice = open_table(table)
    except LabelsNotFound:
        ice = None  # the first run creates the table, once its plan is made
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        files = catalog_files(args.catalog)  # footers only: an unreadable catalog stops the job before Ray starts
    except CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from jobs import label_pipeline  # Ray: the catalog is read and the selection made on the cluster
    from jobs.label_plan import plan_run

    label_pipeline.init_ray(args.ray_address, args.num_cpus)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    now_us = int(time.time() * 1e6)
    resumed = None
    if args.mode == "backfill" and ice is not None:
        resumed = resumable_backfill(ice, models.cnn_version, models.gan_version, models.feature_version)
    since_us = int(datetime.fromisoformat(resumed.started_at).timestamp() * 1e6) if resumed else now_us
    selection = Selection(args.mode, models.cnn_version, models.gan_version, models.feature_version, since_us)
    try:
        plan = plan_run(files, table, selection, settings.curated_column, limit=args.limit)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    resume_note = f" (continues backfill {resumed.run_id}, killed at {resumed.n_rows}/{resumed.n_todo})" \
        if resumed else ""
    print(f"catalog {args.catalog}: {plan.n_catalog} tracks; {args.mode}{resume_note}: {plan.n_todo} to label, "
          f"{plan.n_catalog - plan.n_todo} already labelled with these models\nmodels: cnn {models.cnn_version}, "
          f"gan {models.gan_version or '-'}, features {models.feature_version}\nlabels table: {table.describe()}"
          f"\nplanned in {plan.seconds:.1f} s", flush=True)
    if args.dry_run:
        print(f"dry run: nothing started; resources {resources}")
        return 0
    if plan.n_todo == 0:
        print("nothing to label")
        return 0
    commit_every = args.commit_every or settings.commit_every
    open_table(table, create=True)
    manifest = RunManifest(
        run_id=run_id, mode=args.mode, catalog=args.catalog, model_version=models.cnn_version,
        gan_version=models.gan_version, feature_version=models.feature_version, classes=models.classes,
        n_todo=plan.n_todo, started_at=datetime.fromtimestamp(since_us / 1e6, timezone.utc).isoformat(),
        resumes=resumed.resumes or resumed.run_id if resumed else None)
    committer = RunCommitter(table, manifest, commit_every, rewrite_map=label_pipeline.ray_map,
                             log=lambda msg: print(msg, flush=True))
    try:
        stats = label_pipeline.label_tracks(plan, models, resources, committer, run_id,
                                            audio_root=args.audio_root, curated_column=settings.curated_column)
    except CommitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    m = committer.manifest
    if m.n_rows != plan.n_todo:
        print(f"error: run {run_id} committed {m.n_rows} of the {plan.n_todo} tracks it set out to label; rerun it "
              f"to label the rest", file=sys.stderr)
        return 1
    wall = time.perf_counter() - started
    counts = ", ".join(f"{k} {v}" for k, v in m.status_counts.items())
    print(f"committed run {run_id}: {m.n_rows} tracks in {m.commit} commit(s) ({counts}); {committer.conflicts} "
          f"commit conflict(s) retried; GAN stage processed {stats['gan_songs']} unclassified songs\n"
          f"{m.n_rows / stats['pipeline_s']:.2f} songs/s in the pipeline, wall time {wall:.1f} s\n"
          f"labels: {table.describe()} (`genre-job labels show --output {storage.absolute(args.output)}`)")
    return 0


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
