"""MFCC baseline on a catalog: mean/std of 20 MFCCs per song + logistic regression.

Trains on the train+val songs and tests on the test songs (80/20 songs per genre on the default corpus),
prints accuracy and the confusion matrix, and appends them to benchmarks/RESULTS.md.

  python benchmarks/mfcc_baseline.py --catalog data/demo/catalog.parquet
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import record  # noqa: E402

from genre_core.audio import load_audio  # noqa: E402
from genre_core.baseline import fit_and_score, mfcc_stats  # noqa: E402


def _features(uri: str) -> np.ndarray:
    return mfcc_stats(load_audio(uri))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--test-split", default="test", help="split to test on (default test; e.g. shifted)")
    parser.add_argument("--test-catalog", default=None, help="take the test songs from another catalog")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)

    df = pd.read_parquet(args.catalog)
    train = df[df["split"].isin(["train", "val"])]
    test_df = pd.read_parquet(args.test_catalog) if args.test_catalog else df
    test = test_df[test_df["split"] == args.test_split]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        x_train = np.stack(list(pool.map(_features, train["audio_uri"], chunksize=8)))
        x_test = np.stack(list(pool.map(_features, test["audio_uri"], chunksize=8)))
    result = fit_and_score(x_train, list(train["genre"]), x_test, list(test["genre"]))
    elapsed = time.perf_counter() - started
    width = max(len(c) for c in result.classes)
    lines = [f"{'':>{width}} " + " ".join(f"{c[:5]:>5}" for c in result.classes)]
    lines += [f"{c:>{width}} " + " ".join(f"{n:>5}" for n in row)
              for c, row in zip(result.classes, result.confusion, strict=True)]
    print(f"MFCC baseline: train {result.n_train} songs, test {result.n_test} songs ({args.test_split}), "
          f"accuracy {result.accuracy:.3f} ({elapsed:.0f} s)")
    print("\n".join(lines))
    if not args.no_record:
        record("MFCC baseline (mean/std of 20 MFCCs + logistic regression)", [
            f"- catalog {args.catalog}; train {result.n_train} songs (train+val), "
            f"test {result.n_test} songs (split {args.test_split})",
            f"- **accuracy {result.accuracy:.3f}**", "", "Confusion matrix (rows true, columns predicted):", "",
            "```", *lines, "```",
        ], argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
