"""Memory of the labelling job as the catalog grows: peak RSS of the driver and of every Ray worker, and the
peak footprint of the whole process tree, for catalogs of (by default) 250 and 2,500 songs.

  python benchmarks/memory.py --catalog /work/final/corpus/catalog.parquet [--sizes 250,2500] [--models DIR]

Each size runs ``python -m jobs.label`` in a fresh process (local Ray on this machine's CPUs, configs/label-local.yaml)
and samples every process it starts (driver, Ray daemons, workers: the driver's whole process tree) every
``--interval`` seconds from /proc (Linux only): VmHWM (peak RSS) per process and the sum of PSS over the tree
(shared pages split between the processes that map them, so the sum is the tree's real footprint, the object
store's shared memory included). A catalog larger than the source is made by repeating its rows under new
track_ids (the same audio decoded again: per-song work and memory are those of distinct songs).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _catalogs import first_rows  # noqa: E402
from _results import record  # noqa: E402


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(pid: int) -> list[int]:
    kids, out, todo = children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def read_kb(path: str, key: str) -> int:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in args if a)
    for marker, name in (("jobs.label", "driver"), ("default_worker.py", "ray worker"), ("raylet", "raylet"),
                         ("gcs_server", "gcs"), ("dashboard", "dashboard"), ("runtime_env", "runtime env agent")):
        if marker in text:
            return name
    return os.path.basename(args[0].decode(errors="replace")) if args and args[0] else "?"


class TreeSampler(threading.Thread):
    """Samples the process tree of ``pid`` until it exits; keeps per-process peak RSS and the peak PSS sum."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss_kb: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.peak_pss_sum_kb = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pss_sum = 0
            for p in tree(self.pid):
                hwm = read_kb(f"/proc/{p}/status", "VmHWM:")
                if hwm:
                    self.peak_rss_kb[p] = max(hwm, self.peak_rss_kb.get(p, 0))
                    if p not in self.names:
                        self.names[p] = process_name(p)
                pss_sum += read_kb(f"/proc/{p}/smaps_rollup", "Pss:")
            self.peak_pss_sum_kb = max(self.peak_pss_sum_kb, pss_sum)
            self.stop.wait(self.interval)


def run_once(catalog: str, n: int, models: str | None, interval: float, tmp: str) -> dict:
    out = os.path.join(tmp, f"labels-{n}")
    cmd = [sys.executable, "-m", "jobs.label", "--catalog", catalog, "--output", out, "--mode", "backfill",
           "--config", "configs/label-local.yaml", "--limit", str(n)] + (["--models", models] if models else [])
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid, interval)
    sampler.start()
    _, err = proc.communicate()
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"labelling {n} songs failed ({proc.returncode}):\n{err[-3000:]}")
    by_name: dict[str, int] = {}
    for p, kb in sampler.peak_rss_kb.items():
        by_name[sampler.names[p]] = max(kb, by_name.get(sampler.names[p], 0))
    return {"n": n, "wall_s": time.perf_counter() - started, "pss_sum_mb": sampler.peak_pss_sum_kb / 1024,
            "driver_mb": by_name.get("driver", 0) / 1024, "worker_mb": by_name.get("ray worker", 0) / 1024,
            "processes": len(sampler.peak_rss_kb)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True, help="source catalog (rows are repeated to reach a size)")
    parser.add_argument("--sizes", default="250,2500")
    parser.add_argument("--models", default=None)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    big = first_rows(args.catalog, max(sizes))
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        catalog = os.path.join(tmp, "catalog.parquet")
        big.to_parquet(catalog)
        results = [run_once(catalog, n, args.models, args.interval, tmp) for n in sizes]

    lines = [f"- catalogs: the first N rows of {args.catalog}, repeated under new track_ids beyond its length; "
             f"local Ray on {os.cpu_count()} CPUs, configs/label-local.yaml; sampled every {args.interval} s", "",
             "| songs | wall s | peak PSS, whole tree (MB) | driver peak RSS (MB) | largest worker peak RSS (MB) "
             "| processes |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['n']} | {r['wall_s']:.0f} | {r['pss_sum_mb']:.0f} | {r['driver_mb']:.0f} | {r['worker_mb']:.0f} "
              f"| {r['processes']} |" for r in results]
    first, last = results[0], results[-1]
    growth = {k: last[k] / first[k] - 1 for k in ("pss_sum_mb", "driver_mb", "worker_mb")}
    ok = all(g <= 0.20 for g in growth.values())
    lines += ["", f"- growth {first['n']} -> {last['n']} songs: whole tree {growth['pss_sum_mb']:+.1%}, driver "
              f"{growth['driver_mb']:+.1%}, largest worker {growth['worker_mb']:+.1%} "
              f"(target <= +20%: {'met' if ok else 'NOT met'})"]
    print("\n".join(lines))
    record("Memory of the labelling job, by catalog size", lines, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
