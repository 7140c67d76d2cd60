"""Where the labelling job spends its CPU: py-spy samples the job and every process it starts.

  python benchmarks/profile_job.py --catalog /work/final/corpus/catalog.parquet --limit 1000 [--models DIR]

Runs ``py-spy record --subprocesses`` over ``python -m jobs.label`` (local Ray, configs/label-local.yaml) and
summarises the samples: the share of each part of the job (module imports, decoding and log-mel, the CNN, the
GAN stage, Ray itself) and the functions that are most often on top of a stack (self time). The raw samples
are kept with ``--keep FILE`` (py-spy's collapsed-stack format, for a flame graph). Alongside, the CPU time
(user and system) and minor page faults of every process of the job are read from /proc, by role: what
py-spy cannot see (time in the kernel, such as page faults) shows up there.
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
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import record  # noqa: E402
from memory import tree  # noqa: E402

# A sample is charged to the first part whose marker appears in its stack (order matters).
PARTS = (
    ("module imports (worker start-up)", ("_find_and_load",)),
    ("GAN stage", ("GANStage", "refine (refine.py")),
    ("CNN + vote", ("slice_probabilities", "CNNActor")),
    ("decode + log-mel", ("DecodeStage", "load_audio", "song_slices")),
    ("writing labels (writer actor)", ("write_part", "label_rows")),
    ("committing labels (driver)", ("_commit_with_retry", "rewrite_without")),
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


ROLES = (("DecodeAndVoteActor", "decode + CNN actors"), ("DecodeStage", "decode actors"), ("CNNActor", "CNN actors"),
         ("GANActor", "GAN actor"), ("jobs.label", "driver"), ("raylet", "raylet"), ("gcs_server", "gcs"))
TICK = os.sysconf("SC_CLK_TCK")


class CPUAccount(threading.Thread):
    """The last-read (user s, system s, minor faults) of every process under ``pid``, by role, until it exits."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.stop, self.seen = pid, threading.Event(), {}

    def run(self) -> None:
        while not self.stop.is_set():
            for p in tree(self.pid):
                try:
                    with open(f"/proc/{p}/stat", encoding="utf-8") as fh:
                        fields = fh.read().rsplit(")", 1)[1].split()
                    with open(f"/proc/{p}/cmdline", "rb") as fh:
                        cmd = fh.read().decode(errors="replace")
                except OSError:
                    continue
                role = next((name for mark, name in ROLES if mark in cmd), "Ray's other processes")
                if "py-spy" not in cmd:
                    self.seen[p] = (role, int(fields[11]) / TICK, int(fields[12]) / TICK, int(fields[7]))
            self.stop.wait(0.3)

    def table(self, n_songs: int) -> list[str]:
        roles: dict[str, list[float]] = {}
        for role, user, system, faults in self.seen.values():
            acc = roles.setdefault(role, [0.0, 0.0, 0])
            acc[0], acc[1], acc[2] = acc[0] + user, acc[1] + system, acc[2] + faults
        lines = ["", "| processes | CPU s (of which system) | CPU ms per song | minor page faults per song |",
                 "|---|---|---|---|"]
        for role, (user, system, faults) in sorted(roles.items(), key=lambda kv: -(kv[1][0] + kv[1][1])):
            lines.append(f"| {role} | {user + system:.1f} ({system:.1f}) | {1000 * (user + system) / n_songs:.2f} | "
                         f"{faults / n_songs:.0f} |")
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
        proc = subprocess.Popen([pyspy, "record", "--subprocesses", "--rate", str(args.rate), "--format", "raw",
                                 "-o", raw, "--", *job], stdout=subprocess.DEVNULL)
        account = CPUAccount(proc.pid)
        account.start()
        if proc.wait() != 0:
            raise SystemExit(f"py-spy or the job failed (exit {proc.returncode})")
        account.stop.set()
        account.join()
        lines = [f"- py-spy {args.rate} Hz over `python -m jobs.label` on {args.limit} songs of {args.catalog}"]
        lines += summarise(raw, args.top) + account.table(args.limit)
    print("\n".join(lines))
    record("Profile of the labelling job", lines, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
