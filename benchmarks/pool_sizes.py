"""Pool sizes of the labelling job: the same catalog labelled under variants of one config, side by side.

  python benchmarks/pool_sizes.py --catalog /work/final/corpus/catalog.parquet --limit 3000 --no-gan \\
      --variant "" --variant "cnn.concurrency=1" --variant "decode.concurrency=1 cnn.concurrency=1" \\
      --variant "decode.songs_per_block=4"

Each ``--variant`` is a space-separated list of ``key=value`` overrides of the ``resources`` section of
``--config`` (``""``: the config as it is). Every variant runs ``python -m jobs.label`` in a fresh process (local
Ray on this machine's CPUs); the table gives its wall time, the pools' start-up (until the first labels), the
steady rate after it, and the CPU time of the whole process tree per song, from /proc.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _catalogs import first_rows  # noqa: E402
from _results import record  # noqa: E402
from profile_job import CPUAccount  # noqa: E402

from genre_core.label_runs import runs  # noqa: E402
from genre_core.label_table import locate, open_table  # noqa: E402


def with_overrides(config: dict, variant: str) -> dict:
    """``config`` with each ``a.b=value`` of ``variant`` set under ``resources`` (values parsed as YAML)."""
    out = copy.deepcopy(config)
    for item in variant.split():
        key, _, value = item.partition("=")
        node = out.setdefault("resources", {})
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--config", default="configs/label-local.yaml")
    parser.add_argument("--variant", action="append", default=None, help='overrides, e.g. "cnn.concurrency=1"')
    parser.add_argument("--no-gan", action="store_true")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as fh:
        base = yaml.safe_load(fh)

    lines = [f"- {args.limit} songs of {args.catalog}, variants of {args.config}, {os.cpu_count()} CPUs", "",
             "| variant | wall s | pools' start-up s | steady songs/s | whole run songs/s | CPU ms per song |",
             "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="bench-pools-") as tmp:
        catalog = os.path.join(tmp, "catalog.parquet")
        first_rows(args.catalog, args.limit).to_parquet(catalog)
        for k, variant in enumerate(args.variant or [""]):
            config, out = os.path.join(tmp, f"config-{k}.yaml"), os.path.join(tmp, f"labels-{k}")
            with open(config, "w", encoding="utf-8") as fh:
                yaml.safe_dump(with_overrides(base, variant), fh)
            job = [sys.executable, "-m", "jobs.label", "--catalog", catalog, "--output", out, "--config", config,
                   "--mode", "backfill"] + (["--no-gan"] if args.no_gan else [])
            started = time.perf_counter()
            proc = subprocess.Popen(job, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            account = CPUAccount(proc.pid)
            account.start()
            if proc.wait() != 0:
                raise SystemExit(f"variant {variant!r} failed (exit {proc.returncode})")
            wall = time.perf_counter() - started
            account.stop.set()
            account.join()
            stats = runs(open_table(locate(out)))[-1].stats
            rest = args.limit - stats["first_labels_rows"]  # 0 when every label came in one data file
            steady = (rest / (stats["pipeline_s"] - stats["first_labels_s"]) if rest
                      else args.limit / stats["pipeline_s"])
            cpu = sum(user + system for _, user, system, _ in account.seen.values())
            lines.append(f"| {variant or '(as configured)'} | {wall:.1f} | {stats['first_labels_s']:.1f} | "
                         f"{steady:.1f} | {args.limit / wall:.1f} | {1000 * cpu / args.limit:.1f} |")
            print(lines[-1], flush=True)
    print("\n".join(lines))
    record("Pool sizes of the labelling job", lines, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
