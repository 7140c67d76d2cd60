"""Planning a nightly run at catalog scale: the labels table (Iceberg) against the old label store.

  python benchmarks/scale.py --tracks 10000000 [--new 1000] [--backfills 3] [--design table|store] [--keep DIR]

Builds a synthetic catalog of ``--tracks`` tracks (Parquet files of 1M rows, no audio: this measures planning and
commits), writes ``--backfills`` backfills of labels for all of them through the project's own writer, adds
``--new`` tracks to the catalog, and times planning the nightly run that must find exactly those new tracks, in
a fresh process whose peak RSS (VmHWM) is the driver's peak memory:

- ``--design table``: the labels table (genre_core/label_table.py); each backfill a run committed every
  ``--commit-every`` tracks by RunCommitter (upserts on track_id); planning is jobs/label_plan.py on a local Ray
  (``--num-cpus``), the driver holding only metadata.
- ``--design store``: the design this replaced (genre_core/label_store.py at commit 4ed09bb, read from git):
  published runs under _published/, planning reads the catalog and every published run into pandas.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from _results import record  # noqa: E402

from genre_core.schema import LABELS_SCHEMA  # noqa: E402

OLD_COMMIT = "4ed09bb"
FILE_ROWS = 1_000_000
CLASSES = [f"g{i}" for i in range(10)]
FEATURES = "fv-bench"


def ids(start: int, stop: int, prefix: str = "t") -> pa.Array:
    return pa.array([f"{prefix}{i:09d}" for i in range(start, stop)], pa.string())


def write_catalog(root: str, n: int, n_new: int) -> str:
    """``n`` tracks in files of FILE_ROWS rows, plus a file of ``n_new`` tracks the labels have never seen."""
    os.makedirs(root, exist_ok=True)
    for k, start in enumerate(range(0, n, FILE_ROWS)):
        tid = ids(start, min(n, start + FILE_ROWS))
        uri = pa.compute.binary_join_element_wise("s3://catalog/audio/", tid, ".flac", "")
        pq.write_table(pa.table({"track_id": tid, "audio_uri": uri}), f"{root}/part-{k:04d}.parquet",
                       row_group_size=500_000)
    tid = ids(0, n_new, prefix="new")
    pq.write_table(pa.table({"track_id": tid, "audio_uri": pa.compute.binary_join_element_wise(
        "s3://catalog/audio/", tid, ".flac", "")}), f"{root}/part-new.parquet")
    return root


def label_chunk(start: int, stop: int, model: str, run_id: str) -> pa.Table:
    n = stop - start
    rng = np.random.default_rng(start)
    p = rng.dirichlet(np.ones(len(CLASSES)), n).astype(np.float32)
    top = p.argmax(1)
    when = pa.array(np.full(n, int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp() * 1e6)),
                    pa.timestamp("us", tz="UTC"))
    cols = {
        "track_id": ids(start, stop), "genre": pa.array(np.array(CLASSES)[top]),
        "status": pa.array(np.full(n, "classified")), "confidence": pa.array(p.max(1)),
        "margin": pa.array(np.sort(p, 1)[:, -1] - np.sort(p, 1)[:, -2]),
        "probabilities": pa.FixedSizeListArray.from_arrays(p.ravel(), len(CLASSES)).cast(pa.list_(pa.float32())),
        "n_slices": pa.array(np.full(n, 30, np.int32)), "duration_s": pa.array(np.full(n, 30.0, np.float32)),
        "error": pa.nulls(n, pa.string()), "model_version": pa.array(np.full(n, model)),
        "gan_version": pa.nulls(n, pa.string()), "feature_version": pa.array(np.full(n, FEATURES)),
        "run_id": pa.array(np.full(n, run_id)), "labelled_at": when,
    }
    return pa.table(cols, schema=LABELS_SCHEMA.remove_metadata())


def backfills_table(out: str, n: int, k: int, commit_every: int, chunk: int) -> list[str]:
    from genre_core.label_commit import RunCommitter, RunManifest, write_part
    from genre_core.label_table import locate

    table, lines = locate(out), []
    for b in range(1, k + 1):
        t0 = time.perf_counter()
        run_id, model = f"backfill-{b}", f"cnn-bench-{b}"
        c = RunCommitter(table, RunManifest(run_id, "backfill", "synthetic", model, None, FEATURES, CLASSES,
                                            n_todo=n), commit_every, log=lambda _: None)
        for start in range(0, n, chunk):
            c.add(write_part(*c.target, label_chunk(start, min(n, start + chunk), model, run_id), run_id))
        c.commit()
        lines.append(f"backfill {b}: {n} rows written and committed in {c.manifest.commit} commits, "
                     f"{time.perf_counter() - t0:.1f} s")
        print(lines[-1], flush=True)
    return lines


def old_store():
    """genre_core/label_store.py as it was before the labels table (from git)."""
    src = subprocess.run(["git", "-C", REPO, "show", f"{OLD_COMMIT}:genre_core/label_store.py"], check=True,
                         capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(prefix="old-store-"), "old_label_store.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(src)
    spec = importlib.util.spec_from_file_location("old_label_store", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_label_store"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def backfills_store(out: str, n: int, k: int, chunk: int) -> list[str]:
    store, lines = old_store(), []
    for b in range(1, k + 1):
        t0 = time.perf_counter()
        run_id, model = f"backfill-{b}", f"cnn-bench-{b}"
        w = store.RunWriter(out, store.Manifest(run_id=run_id, mode="backfill", catalog="synthetic",
                                                model_version=model, gan_version=None, feature_version=FEATURES,
                                                classes=CLASSES))
        for start in range(0, n, chunk):
            w.write_part(label_chunk(start, min(n, start + chunk), model, run_id))
        w.publish({f"t{i:09d}" for i in range(n)})
        lines.append(f"backfill {b}: {n} rows staged and published, {time.perf_counter() - t0:.1f} s")
        print(lines[-1], flush=True)
    return lines


def plan_table(catalog: str, out: str, model: str, num_cpus: int) -> dict:
    import ray

    from genre_core.catalog_files import catalog_files
    from genre_core.label_selection import Selection
    from genre_core.label_table import locate
    from jobs.label_plan import plan_run

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    t0 = time.perf_counter()
    plan = plan_run(catalog_files(catalog), locate(out), Selection("nightly", model, None, FEATURES), "curated_genre")
    seconds = time.perf_counter() - t0
    ray.shutdown()
    return {"seconds": seconds, "n_todo": plan.n_todo, "n_catalog": plan.n_catalog}


def plan_store(catalog: str, out: str, model: str) -> dict:
    from genre_core.schema import read_catalog

    store = old_store()
    t0 = time.perf_counter()
    cat = read_catalog(catalog)  # the old job's planning: tracks_to_label() of jobs/label.py at 4ed09bb
    done = store.latest_labels(out)
    same = ((done["model_version"] == model) & (done["gan_version"].fillna("") == "")
            & (done["feature_version"] == FEATURES) & (done["status"] != "error"))
    todo = cat[~cat["track_id"].isin(set(done.loc[same, "track_id"]))]
    return {"seconds": time.perf_counter() - t0, "n_todo": len(todo), "n_catalog": len(cat)}


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: of this program alone; getrusage's ru_maxrss would carry the forking
    parent's RSS across exec)."""
    with open("/proc/self/status", encoding="utf-8") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    return kb / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=10_000_000)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--backfills", type=int, default=3)
    parser.add_argument("--design", choices=["table", "store"], default="table")
    parser.add_argument("--commit-every", type=int, default=2_000_000)
    parser.add_argument("--chunk", type=int, default=500_000, help="rows per written part (data file)")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--keep", default=None, help="build in this folder and keep it (default: a temp folder)")
    parser.add_argument("--plan-only", nargs=2, metavar=("CATALOG", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = f"cnn-bench-{args.backfills}"
    if args.plan_only:  # the child: plan once, report time and this process's peak RSS
        got = (plan_table(*args.plan_only, model, args.num_cpus) if args.design == "table"
               else plan_store(*args.plan_only, model))
        got["peak_rss_mb"] = peak_rss_mb()
        print("RESULT " + json.dumps(got), flush=True)
        return 0

    root = args.keep or tempfile.mkdtemp(prefix="bench-scale-")
    try:
        t0 = time.perf_counter()
        catalog = write_catalog(os.path.join(root, "catalog"), args.tracks, args.new)
        lines = [f"- {args.design}: catalog of {args.tracks} tracks + {args.new} new written in "
                 f"{time.perf_counter() - t0:.1f} s"]
        out = os.path.join(root, "labels")
        if args.design == "table":
            lines += ["- " + x for x in backfills_table(out, args.tracks, args.backfills, args.commit_every,
                                                         args.chunk)]
        else:
            lines += ["- " + x for x in backfills_store(out, args.tracks, args.backfills, args.chunk)]
        child = subprocess.run([sys.executable, os.path.abspath(__file__), "--design", args.design, "--backfills",
                                str(args.backfills), "--num-cpus", str(args.num_cpus), "--plan-only", catalog, out],
                               capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
        result = next((json.loads(x[7:]) for x in child.stdout.splitlines() if x.startswith("RESULT ")), None)
        if result is None:
            print(child.stdout[-3000:], child.stderr[-3000:], file=sys.stderr)
            return 1
        ok = result["n_todo"] == args.new
        load = os.getloadavg()[0]
        lines.append(f"- **{args.design}, {args.tracks} tracks, {args.backfills} backfills of history: planning the "
                     f"nightly run took {result['seconds']:.1f} s, driver peak RSS {result['peak_rss_mb']:.0f} MB**; "
                     f"found {result['n_todo']} new of {result['n_catalog']} tracks ({'right' if ok else 'WRONG'}); "
                     f"load average {load:.1f} when it ended (the 2 cores are shared)")
        print("\n".join(lines))
        record(f"Planning a nightly run at scale ({args.design}, {args.tracks} tracks)", lines)
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
