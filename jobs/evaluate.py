"""Evaluate genre labels against ground truth (song level), optionally labelling the catalog first.

Reports accuracy (forced argmax over each song's vote shares; error rows count as wrong), coverage
(share of songs given a genre), accuracy on the classified songs, the confusion matrix (rows = truth,
columns = forced prediction) and per-genre precision/recall, as JSON on stdout and in --out.

examples:
  # evaluate an existing labels file against the catalog's genres (test split only)
  python -m jobs.evaluate --labels out/labels.parquet --truth /work/corpus/default/catalog.parquet \\
      --split test --out out/eval.json
  # label the test split sequentially with a bundle (reference labeller), then evaluate
  python -m jobs.evaluate --catalog /work/corpus/default/catalog.parquet --models /work/models/cnn-default \\
      --split test --out out/eval.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from genre_core.config import ConfigError
from genre_core.metrics import summarize
from genre_core.schema import DECIDED_STATUSES, STATUSES, classes_of, read_parquet


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", help="labels Parquet (file or folder, local or s3://)")
    parser.add_argument("--truth", help="catalog Parquet with track_id and genre (ground truth)")
    parser.add_argument("--catalog", help="label this catalog first (needs --models); it is also the truth")
    parser.add_argument("--models", help="CNN bundle to label --catalog with")
    parser.add_argument("--split", default=None, help="evaluate only truth rows of this split (e.g. test)")
    parser.add_argument("--labels-out", default=None, help="with --catalog: also write the labels here")
    parser.add_argument("--audio-root", default=None, help="with --catalog: audio URIs must lie inside it")
    parser.add_argument("--out", default=None, help="write the JSON report to this file")


def forced_predictions(probabilities: pd.Series, classes: list[str]) -> list[str | None]:
    """Argmax genre per row over the vote shares (None where a row has none, e.g. an error row)."""
    out: list[str | None] = []
    for p in probabilities:
        arr = None if p is None else np.asarray(p, dtype=np.float64)
        out.append(None if arr is None or arr.size == 0 else classes[int(arr.argmax())])
    return out


def evaluate_labels(labels: pd.DataFrame, truth: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """Song-level report of ``labels`` against ``truth`` (track_id, genre); truth rows without a label
    row count as missing (and wrong)."""
    truth = truth[truth["genre"].notna()][["track_id", "genre"]].astype({"track_id": str})
    labels = labels.astype({"track_id": str})
    if labels["track_id"].duplicated().any():
        raise ValueError("labels hold more than one row for some track_id")
    merged = truth.merge(labels.drop(columns=["genre"]).assign(pred_genre=labels["genre"]),
                         on="track_id", how="left")
    status = merged["status"].where(merged["status"].notna(), "missing")
    decided = [g if s in DECIDED_STATUSES else None
               for g, s in zip(merged["pred_genre"], status, strict=True)]
    probs = merged["probabilities"].where(merged["probabilities"].notna(), None)
    report = summarize(merged["genre"].tolist(), forced_predictions(probs, classes), decided, classes)
    report["status_counts"] = {s: int((status == s).sum()) for s in (*STATUSES, "missing")}
    return report


def _clean(obj: Any) -> Any:
    """NaN -> None, numpy scalars -> Python, so that the report is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _label_first(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, list[str], dict[str, Any]]:
    from genre_core.labelling import CNNVoter, label_catalog
    from genre_core.schema import labels_table, write_parquet

    catalog = read_parquet(args.catalog).to_pandas()
    if args.split is not None:
        catalog = catalog[catalog["split"] == args.split]
    voter = CNNVoter(args.models)
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


def run(args: argparse.Namespace) -> int:
    try:
        if args.catalog:
            if not args.models:
                raise ConfigError("--catalog needs --models (the bundle to label with)")
            labels, truth, classes, info = _label_first(args)
        elif args.labels and args.truth:
            table = read_parquet(args.labels)
            classes = classes_of(table.schema)
            if classes is None:
                raise ConfigError(f"{args.labels} has no class list in its metadata (genre_tagger.classes)")
            labels = table.to_pandas()
            truth = read_parquet(args.truth).to_pandas()
            if args.split is not None:
                truth = truth[truth["split"] == args.split]
            info = {}
        else:
            raise ConfigError("give --labels and --truth, or --catalog and --models")
        report = _clean({**evaluate_labels(labels, truth, classes), **info})
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc!s}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
