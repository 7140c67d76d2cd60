"""Songs/s of the Ray labelling job (local Ray, this machine's cores) on a catalog.

  python benchmarks/label_throughput.py --catalog data/corpus/catalog.parquet --limit 1000 [--no-gan]

Reports the pipeline rate (first song in to last label staged, from the run's manifest) and the wall time of
the whole job (Ray start-up, reading, publishing included).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import record  # noqa: E402

from genre_core.label_store import manifests  # noqa: E402
from jobs import label  # noqa: E402
from jobs.cli import run_job  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--models", default=None)
    parser.add_argument("--config", default="configs/label-local.yaml")
    parser.add_argument("--no-gan", action="store_true", help="CNN path only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-label-") as out:
        job = ["--catalog", args.catalog, "--output", out, "--config", args.config, "--mode", "backfill",
               "--limit", str(args.limit)] + (["--models", args.models] if args.models else []) \
            + (["--no-gan"] if args.no_gan else [])
        started = time.perf_counter()
        if run_job(label, job) != 0:
            return 1
        wall = time.perf_counter() - started
        m = manifests(out)[-1]
    rate = m.n_rows / m.stats["pipeline_s"]
    path = "CNN path only (--no-gan)" if args.no_gan else "CNN + GAN stage"
    print(f"{m.n_rows} songs: {rate:.2f} songs/s in the pipeline, {m.n_rows / wall:.2f} songs/s over the whole "
          f"job ({wall:.1f} s); statuses {m.status_counts}; GAN processed {m.stats['gan_songs']} songs")
    record(f"Labelling job throughput, {path}", [
        f"- {m.n_rows} songs of {args.catalog}, local Ray on {os.cpu_count()} CPUs, {args.config}",
        f"- **{rate:.2f} songs/s** in the pipeline ({m.stats['pipeline_s']:.1f} s); whole job "
        f"{m.n_rows / wall:.2f} songs/s ({wall:.1f} s, Ray start-up and publishing included)",
        f"- statuses {m.status_counts}; GAN stage processed {m.stats['gan_songs']} songs",
    ], argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
