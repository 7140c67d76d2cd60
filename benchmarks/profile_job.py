"""Where the labelling job spends its CPU: py-spy samples the job and every process it starts.

  python benchmarks/profile_job.py --catalog /work/final/corpus/catalog.parquet --limit 1000 [--models DIR]

Runs ``py-spy record --subprocesses`` over ``python -m jobs.label`` (local Ray, configs/label-local.yaml) and
summarises the samples: the share of each part of the job (module imports, decoding and log-mel, the CNN, the
GAN stage, Ray itself) and the functions that are most often on top of a stack (self time). The raw samples
are kept with ``--keep FILE`` (py-spy's collapsed-stack format, for a flame graph).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import record  # noqa: E402

# A sample is charged to the first part whose marker appears in its stack (order matters).
PARTS = (
    ("module imports (worker start-up)", ("_find_and_load",)),
    ("GAN stage", ("GANStage", "refine (refine.py")),
    ("CNN + vote", ("slice_probabilities", "CNNActor")),
    ("decode + log-mel", ("DecodeStage", "load_audio", "song_slices")),
    ("writing labels (driver)", ("write_part", "label_table")),
)
FRAME_FILE = re.compile(r" \((?:[^()]*/)?([^/()]+?)(?::\d+)?\)$")


def short(frame: str) -> str:
    """``fn (/long/path/module.py:12)`` -> ``fn (module.py)``."""
    return FRAME_FILE.sub(r" (\1)", frame)


def summarise(raw: str, top: int) -> list[str]:
    parts: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            n = int(count)
            total += n
            part = next((name for name, marks in PARTS if any(m in stack for m in marks)), "Ray and other")
            parts[part] += n
            frames = [f for f in stack.split(";") if not f.startswith("process ")]
            if frames:
                leaves[short(frames[-1])] += n
    lines = [f"- {total} samples (all processes of the job)", "", "| part of the job | share of samples |",
             "|---|---|"]
    lines += [f"| {name} | {n / total:.1%} |" for name, n in parts.most_common()]
    lines += ["", "| top functions (self) | share |", "|---|---|"]
    lines += [f"| `{name[:100]}` | {n / total:.1%} |" for name, n in leaves.most_common(top)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--models", default=None)
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--keep", default=None, help="also keep the raw samples in this file")
    args = parser.parse_args(argv)
    pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(pyspy):
        raise SystemExit("py-spy not found: pip install py-spy==0.4.1 (make bench does)")
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        raw = args.keep or os.path.join(tmp, "samples.txt")
        job = [sys.executable, "-m", "jobs.label", "--catalog", args.catalog, "--output", os.path.join(tmp, "out"),
               "--mode", "backfill", "--config", "configs/label-local.yaml", "--limit", str(args.limit)]
        job += ["--models", args.models] if args.models else []
        subprocess.run([pyspy, "record", "--subprocesses", "--rate", str(args.rate), "--format", "raw", "-o", raw,
                        "--", *job], check=True, stdout=subprocess.DEVNULL)
        lines = [f"- py-spy {args.rate} Hz over `python -m jobs.label` on {args.limit} songs of {args.catalog}"]
        lines += summarise(raw, args.top)
    print("\n".join(lines))
    record("Profile of the labelling job", lines, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
