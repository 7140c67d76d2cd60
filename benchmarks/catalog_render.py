"""Throughput of the demo catalog generator: songs/s rendering N songs per genre on all cores.

  python benchmarks/catalog_render.py --per-genre 100
  python benchmarks/catalog_render.py --per-genre 20 --soundfonts timgm6mb   # one soundfont, as before
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import record  # noqa: E402

from jobs import make_catalog  # noqa: E402
from jobs.cli import run_job  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-genre", type=int, default=100)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--soundfonts", default="all", help="make-catalog --soundfonts (default: all installed)")
    parser.add_argument("--out", default=None, help="keep the catalog here (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        out = args.out or tmp
        job_args = ["--per-genre", str(args.per_genre), "--preset", args.preset, "--soundfonts", args.soundfonts,
                    "--out", out]
        started = time.perf_counter()
        if run_job(make_catalog, job_args) != 0:
            return 1
        elapsed = time.perf_counter() - started
    songs = args.per_genre * 10
    print(f"{songs} songs in {elapsed:.1f} s: {songs / elapsed:.2f} songs/s ({os.cpu_count()} workers)")
    record("Catalog rendering throughput", [
        f"- {songs} songs x 30 s, preset {args.preset}, soundfonts {args.soundfonts}, {os.cpu_count()} worker "
        f"processes, job wall time "
        f"(planning, FluidSynth, effects, FLAC encoding, catalog write)",
        f"- **{songs / elapsed:.2f} songs/s** ({elapsed:.1f} s)",
    ], argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
