"""Memory of a Ray Train worker as the training set grows: `genre-job train cnn` (slice CNN, 2 DDP workers,
configs/train-local.yaml) on the catalog's train split repeated ``k`` times under new track_ids, for each ``k`` of
``--repeats`` (default 1 and 4), with the same val and test songs and a fixed number of epochs (no early stop).

  python benchmarks/train_scale.py --catalog /work/data17/corpus50/catalog.parquet [--repeats 1,4] [--epochs 3]

Each run is a fresh `python -m jobs.train cnn` (local Ray); after every epoch the workers record (the maximum over
the workers; the bundle's metrics keep them in ``history``) their peak **private** memory (``RssAnon``, sampled every
8 batches: heap, tensors, the shuffle buffer) and their peak RSS (``getrusage``), which also counts the pages of the
node's shared object store that the worker has read blocks from (zero-copy): those are the object store's, which its
configured size bounds, shared by every process of the node. The repeated songs are the same audio decoded again:
per-song work and memory are those of distinct songs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import pandas as pd
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import record  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scaled_catalog(catalog: str, repeats: int) -> pd.DataFrame:
    """The catalog with its train split ``repeats`` times (``-r<k>`` appended to the copies' track_ids)."""
    from genre_core.schema import read_catalog

    df = read_catalog(catalog)
    train = df[df["split"] == "train"]
    copies = [train.assign(track_id=train["track_id"] + f"-r{k}") for k in range(1, repeats)]
    return pd.concat([df, *copies], ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--repeats", default="1,4")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--config", default=os.path.join(REPO, "configs", "default.yaml"))
    ap.add_argument("--resources", default=os.path.join(REPO, "configs", "train-local.yaml"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = yaml.safe_load(open(args.config, encoding="utf-8"))
        cfg.setdefault("train", {}).update(epochs=args.epochs, patience=args.epochs)
        config = os.path.join(tmp, "config.yaml")
        with open(config, "w", encoding="utf-8") as fh:
            yaml.safe_dump(cfg, fh)
        for k in (int(r) for r in args.repeats.split(",")):
            catalog = os.path.join(tmp, f"catalog-{k}.parquet")
            df = scaled_catalog(args.catalog, k)
            df.to_parquet(catalog)
            out = os.path.join(tmp, f"cnn-{k}")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "jobs.train", "cnn", "--catalog", catalog, "--out", out, "--config",
                            config, "--resources", args.resources, "--checkpoints", os.path.join(tmp, "ckpt")],
                           cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            with open(os.path.join(out, "bundle.json"), encoding="utf-8") as fh:
                metrics = json.load(fh)["metrics"]
            private = [h["worker_peak_private_mb"] for h in metrics["history"]]
            rss = [h["worker_peak_rss_mb"] for h in metrics["history"]]
            rows.append((k, metrics["n_songs"]["train"], private, rss, wall, metrics["val"].get("song_accuracy")))
            print(f"x{k}: {metrics['n_songs']['train']} train songs, worker peak private memory by epoch "
                  f"{[round(p) for p in private]} MB, peak RSS {[round(p) for p in rss]} MB, {wall:.0f} s", flush=True)
    base, base_rss = rows[0][2][-1], rows[0][3][-1]
    lines = ["", "| train songs | worker peak private memory after each epoch (MB, max over the 2 workers) | growth "
             "vs the smallest | worker peak RSS, object-store pages included (MB) | growth | wall | val forced "
             "accuracy |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {n} (x{k}) | {', '.join(str(round(p)) for p in private)} | {100 * (private[-1] / base - 1):+.1f}% | "
              f"{', '.join(str(round(p)) for p in rss)} | {100 * (rss[-1] / base_rss - 1):+.1f}% | {wall:.0f} s | "
              f"{acc:.3f} |" for k, n, private, rss, wall, acc in rows]
    print("\n".join(lines))
    record("Ray Train worker memory as the training set grows", lines)


if __name__ == "__main__":
    main()
