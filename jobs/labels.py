"""The labels table: a summary or one track's label (show), its commits (history), rollback, orphan cleanup.

  show      the current label of every track (a summary, with the unclassified songs counted by reason), or with
            --track why one track got its label: the votes per genre, the calibrated confidence, the status and its
            reason (thresholds and GAN refine parameters are read from the bundles under --models when their
            versions match the label's), the model versions and the run; with --unclassified one line per
            unclassified track: its reason (ambiguous_vote or outside_taxonomy) and the figures behind it
  history   the commits of the table's current state, oldest first, each with its run (mode, counts, models)
  rollback  make an earlier snapshot (from history) the current state again; later runs' rows go out of view
  clean     delete data files no snapshot refers to (what killed runs left), older than --older-than hours;
            runs still writing are never touched (their files are young). --dry-run lists them only

Only committed rows are visible. --output and --table-catalog/--config name the table as for `genre-job label`.

Examples:
  genre-job labels show --output data/demo/labels
  genre-job labels show --output data/demo/labels --unclassified
  genre-job labels show --output s3://bucket/labels --table-catalog sqlite:////srv/labels.db --track rock-00012
  genre-job labels history --output data/demo/labels
  genre-job labels rollback 5832710912345678901 --output data/demo/labels
  genre-job labels clean --output data/demo/labels --older-than 24
"""

from __future__ import annotations

import argparse
import difflib
import sys

import pandas as pd

from genre_core import storage
from genre_core.artifacts import BundleError, CNNBundle, read_bundle_meta
from genre_core.config import ConfigError
from genre_core.explain import explain, unclassified_line
from genre_core.label_runs import history, orphan_files, remove_orphan_files, rollback, runs
from genre_core.label_table import LabelsNotFound, open_table, read_labels
from genre_core.models.gan_bundle import GANBundle
from genre_core.schema import STATUS_UNCLASSIFIED
from jobs.label import table_from_args
from jobs.models import bundle_urls

ACTIONS = ("show", "history", "rollback", "clean")


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="show | history | rollback SNAPSHOT | clean")
    parser.add_argument("snapshot", nargs="?", type=int, default=None, help="rollback: the snapshot id to go back to")
    parser.add_argument("--output", required=True, help="labels table warehouse written by `genre-job label`")
    parser.add_argument("--table-catalog", default=None, metavar="URI", help="SQL catalog of the table (see label)")
    parser.add_argument("--config", default=None, help="YAML with a labels: section (catalog of the table)")
    parser.add_argument("--track", default=None, help="show: explain the label of this track_id")
    parser.add_argument("--unclassified", action="store_true",
                        help="show: one line per unclassified track with the reason it is unclassified")
    parser.add_argument("--models", default=None,
                        help="models folder the labels were made with, for the thresholds in the explanation "
                             "(default: $GENRE_TAGGER_MODELS, else models/default)")
    parser.add_argument("--older-than", type=float, default=1.0, metavar="HOURS",
                        help="clean: only files older than this (default 1 hour)")
    parser.add_argument("--dry-run", action="store_true", help="clean: list the orphan files, delete nothing")


def bundle_metadata(models: str | None) -> tuple[CNNBundle | None, GANBundle | None]:
    """The CNN and GAN bundles' metadata under ``models`` (bundle.json only; None where there is none)."""
    root, cnn_url = bundle_urls(models)
    found: list[CNNBundle | GANBundle | None] = []
    for url, cls in ((cnn_url, CNNBundle), (storage.join(root, "gan"), GANBundle)):
        try:
            found.append(cls.from_json(read_bundle_meta(url)))
        except BundleError:
            found.append(None)
    return found[0], found[1]  # type: ignore[return-value]


def _show(args: argparse.Namespace, table, ice) -> int:
    df = read_labels(table)
    if args.track is not None:
        hit = df[df["track_id"] == args.track]
        if hit.empty:
            near = difflib.get_close_matches(args.track, df["track_id"].tolist(), n=3)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            print(f"error: no label for track {args.track!r} in {table.describe()}.{hint} List the labels with "
                  f"`genre-job labels show --output {args.output}`.", file=sys.stderr)
            return 1
        cnn, gan = bundle_metadata(args.models)
        print(explain(hit.iloc[0].to_dict(), df.attrs["classes"], cnn, gan))
        return 0
    if args.unclassified:
        for row in df[df["status"] == STATUS_UNCLASSIFIED].to_dict("records"):
            print(unclassified_line(row, df.attrs["classes"]))
        return 0
    done = runs(ice)
    print(f"{table.describe()}: labels of {len(df)} tracks, from {len(done)} run(s)")
    if not df.empty:
        print("status: " + ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().sort_index().items()))
        unclassified = df[df["status"] == STATUS_UNCLASSIFIED]
        if not unclassified.empty:
            reasons = unclassified["reason"].fillna("not recorded (labelled before reasons were)") \
                if "reason" in unclassified else pd.Series(["not recorded"] * len(unclassified))
            print("unclassified by reason: " + ", ".join(f"{k} {v}" for k, v in reasons.value_counts().items())
                  + f" (one line each: genre-job labels show --output {args.output} --unclassified)")
        print("genre:  " + ", ".join(f"{k} {v}" for k, v in df["genre"].value_counts().sort_index().items()))
        for m in done[-5:]:
            state = "complete" if m.complete else f"incomplete, {m.n_rows}/{m.n_todo}"
            print(f"  run {m.run_id} ({m.mode}, {m.n_rows} tracks in {m.commit} commit(s), {state}, last commit "
                  f"{m.committed_at}, model {m.model_version})")
        print(f"explain one label: genre-job labels show --output {args.output} --track {df['track_id'].iloc[0]}")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        table = table_from_args(args)
        ice = open_table(table)
    except (ConfigError, LabelsNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, LabelsNotFound) else 2
    if ice.current_snapshot() is None and args.action != "clean":
        print(f"error: the labels table {table.describe()} has no commit yet. Label a catalog first: "
              f"`genre-job label --catalog CATALOG --output {args.output}` (rows become visible when committed)",
              file=sys.stderr)
        return 1
    if args.action == "show":
        return _show(args, table, ice)
    if args.action == "history":
        for c in history(ice):
            print(c.describe())
        return 0
    if args.action == "rollback":
        if args.snapshot is None:
            print("error: rollback needs the snapshot id to go back to (see `genre-job labels history`)",
                  file=sys.stderr)
            return 2
        try:
            c = rollback(table, args.snapshot)
        except ValueError as exc:
            print(f"error: {exc} (see `genre-job labels history --output {args.output}`)", file=sys.stderr)
            return 2
        print(f"rolled back to {c.describe()}")
        return 0
    found = (orphan_files if args.dry_run else remove_orphan_files)(table, args.older_than * 3600)
    verb = "orphan file(s) found" if args.dry_run else "orphan file(s) removed"
    print(f"{len(found)} {verb} in {table.describe()}")
    for path in found:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
