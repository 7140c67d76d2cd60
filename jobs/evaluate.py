"""Evaluate genre labels against the true genres: an HTML report with plots, and the figures as JSON.

--out DIR writes DIR/report.html (one self-contained page: headline metrics, status breakdown, confusion
matrix, per-genre precision/recall, coverage-accuracy curve over the vote threshold, the reliability diagram of
the calibrated confidence, the truth's songs outside the taxonomy, what the GAN stage changed, the GAN ablation
table, unclassified songs before/after translation, per-slice genre timelines) and DIR/evaluation.json.
--out FILE.json writes the JSON only; without --out the JSON goes to stdout.
Accuracy is that of the forced vote (argmax of each song's votes; error rows count as wrong); coverage is
the share of songs given a genre. The per-song pictures decode a few songs' audio (audio_uri of the truth
catalog) with the models of --models.

Examples:
  # the labels table written by `genre-job label`, against the catalog's genres
  genre-job evaluate --labels data/demo/labels --truth data/demo/catalog.parquet --out data/demo/report
  # with the GAN ablation table (from benchmarks/gan_ablation.py --out-json, or benchmarks/RESULTS.md)
  genre-job evaluate --labels s3://bucket/labels --truth s3://bucket/catalog/ --out report \\
      --ablation ablation.json --models models/v2
  # label the test split first with the CNN alone (reference labeller, no Ray), then evaluate
  genre-job evaluate --catalog data/corpus/catalog.parquet --models models/default --split test --out eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import pandas as pd

from genre_core import label_table, storage
from genre_core.artifacts import BundleError
from genre_core.config import ConfigError
from genre_core.label_table import CATALOG_FILE
from genre_core.report import ReportRequest, build_report, clean, evaluate
from genre_core.schema import classes_of, read_parquet
from jobs.models import resolve_models


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", help="labels table written by `genre-job label` (its --output: the current label "
                                         "of every track), or a labels Parquet file/folder; local or s3://")
    parser.add_argument("--table-catalog", default=None, metavar="URI",
                        help="SQL catalog of the labels table, as for `genre-job label` (default: the SQLite "
                             "catalog beside a local --labels)")
    parser.add_argument("--truth", help="catalog Parquet with track_id and genre (and audio_uri for the pictures)")
    parser.add_argument("--catalog", help="label this catalog first with the CNN (no Ray); it is also the truth")
    parser.add_argument("--models", default=None,
                        help="models folder (cnn/ and optional gan/) or a CNN bundle, for --catalog and the "
                             "per-song pictures (default: $GENRE_TAGGER_MODELS, else models/default)")
    parser.add_argument("--split", default=None, help="evaluate only truth rows of this split (e.g. test)")
    parser.add_argument("--out", default=None,
                        help="DIR: write DIR/report.html and DIR/evaluation.json; FILE.json: the JSON only")
    parser.add_argument("--ablation", default=None, metavar="FILE",
                        help="GAN ablation results for the report: JSON of benchmarks/gan_ablation.py --out-json, "
                             "or markdown with its tables (benchmarks/RESULTS.md)")
    parser.add_argument("--gallery", type=int, default=4, metavar="N",
                        help="unclassified songs shown before/after translation (default 4; 0: none)")
    parser.add_argument("--timeline", type=int, default=3, metavar="N",
                        help="songs shown as a per-slice genre timeline (default 3; 0: none)")
    parser.add_argument("--labels-out", default=None, help="with --catalog: also write the labels here")
    parser.add_argument("--audio-root", default=None, help="with --catalog: audio URIs must lie inside it")


def read_labels(url: str, table_catalog: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Labels and their class list: the current label of every track in the labels table written by the job
    (``url`` its warehouse; a local one holds its SQLite catalog), else the Parquet file(s) at ``url`` as they are."""
    fs, path = storage.filesystem(url)
    if table_catalog or (not storage.is_remote(url) and fs.exists(storage.join(path, CATALOG_FILE))):
        df = label_table.read_labels(label_table.locate(url, catalog_uri=table_catalog))
        if df.empty:
            raise FileNotFoundError(f"the labels table at {url} has no committed labels yet")
        return df, list(df.attrs["classes"])
    if not fs.exists(path):
        raise FileNotFoundError(f"no labels at {url}: label a catalog first with "
                                f"`genre-job label --catalog CATALOG --output {url}`")
    table = read_parquet(url)
    classes = classes_of(table.schema)
    if classes is None:
        raise ConfigError(f"{url} has no class list in its metadata (genre_tagger.classes): is it a labels file "
                          "written by `genre-job label`?")
    return table.to_pandas(), classes


def read_truth(url: str, split: str | None) -> pd.DataFrame:
    try:
        truth = read_parquet(url).to_pandas()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"truth catalog not found: {url} (a catalog with track_id and genre, e.g. the "
                                "catalog.parquet written by `genre-job make-catalog`)") from exc
    if split is not None:
        if "split" not in truth.columns:
            raise ConfigError(f"--split {split}: the catalog {url} has no split column")
        truth = truth[truth["split"] == split]
    return truth


def _label_first(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, list[str], dict[str, Any]]:
    from genre_core.labelling import CNNVoter, label_catalog
    from genre_core.schema import labels_table, write_parquet

    catalog = read_truth(args.catalog, args.split)
    voter = CNNVoter(resolve_models(args.models, use_gan=False).cnn_url)
    t0 = time.perf_counter()

    def progress(k: int, n: int) -> None:
        if k % 50 == 0 or k == n:
            print(f"labelled {k}/{n} tracks ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

    labels = label_catalog(catalog, voter, root=args.audio_root, progress=progress)
    seconds = time.perf_counter() - t0
    if args.labels_out:
        write_parquet(labels_table(labels, voter.classes), args.labels_out)
    info = {"model_version": voter.bundle.version, "label_seconds": seconds,
            "tracks_per_s": len(labels) / seconds if seconds else None}
    return labels, catalog, voter.classes, info


def report_models(models: str | None) -> tuple[str | None, str | None, str]:
    """(CNN bundle, GAN bundle or None, note) for the per-song pictures; never raises."""
    try:
        try:
            m = resolve_models(models)
        except BundleError as exc:  # e.g. a GAN bundle made for another CNN: the pictures go without it
            m = resolve_models(models, use_gan=False)
            return m.cnn_url, None, f"GAN bundle not used: {exc}"
        return m.cnn_url, m.gan_url, ""
    except (FileNotFoundError, BundleError, ConfigError) as exc:
        return None, None, str(exc)


def run(args: argparse.Namespace) -> int:
    try:
        if args.catalog:
            labels, truth, classes, info = _label_first(args)
            labels_source = f"{args.catalog} (labelled now with the CNN alone)"
        elif args.labels and args.truth:
            labels, classes = read_labels(args.labels, args.table_catalog)
            truth, info, labels_source = read_truth(args.truth, args.split), {}, args.labels
        else:
            raise ConfigError("give --labels and --truth (labels from `genre-job label` and the catalog with the "
                              "true genres), or --catalog to label a catalog with the CNN first; see --help")
        as_json_only = args.out is None or args.out.endswith(".json")
        if as_json_only:
            report = clean({**evaluate(labels, truth, classes), **info})
        else:
            cnn_url, gan_url, models_note = report_models(args.models)
            built = build_report(ReportRequest(
                labels=labels, truth=truth, classes=classes, labels_source=labels_source,
                truth_source=args.catalog or args.truth, cnn_url=cnn_url, gan_url=gan_url, models_note=models_note,
                ablation_path=args.ablation, gallery=args.gallery, timeline=args.timeline,
            ), progress=lambda msg: print(msg, file=sys.stderr, flush=True))
            report = clean({**built.evaluation, **info, "report_notes": built.notes})
    except (ConfigError, ValueError, KeyError, FileNotFoundError, BundleError) as exc:
        print(f"error: {exc!s}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    if args.out is None:
        print(text)
        return 0
    if as_json_only:
        _write(args.out, text)
        print(f"evaluation: {args.out}")
        return 0
    for n in built.notes:
        print(f"note: {n}", file=sys.stderr)
    _write(storage.join(args.out, "evaluation.json"), text)
    page = storage.join(args.out, "report.html")
    _write(page, built.html)
    print(f"against the true genres: accuracy {_pct(report['accuracy'])} (forced vote), coverage "
          f"{_pct(report['coverage'])}, accuracy on decided songs {_pct(report['accuracy_on_classified'])}\n"
          f"report: {storage.absolute(page)}")
    return 0


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _write(url: str, text: str) -> None:
    storage.write_bytes(url, (text + ("" if text.endswith("\n") else "\n")).encode("utf-8"))


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
