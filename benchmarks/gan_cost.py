"""Cost of the GAN stage per unclassified song, and its share of the labelling work at the measured rate.

  python benchmarks/gan_cost.py --catalog /work/final/shifted/catalog.parquet [--models DIR] [--limit 120]

On one pinned core with one torch thread, the first ``--limit`` songs of the catalog go through the stages of
the job one song at a time: DecodeStage, CNNVoter, then GANStage for the songs the CNN leaves unclassified.
CPU time is summed per stage; the GAN stage's share of the total is reported at the unclassified rate measured
on this catalog. Without a GAN bundle under ``--models`` a seeded, untrained generator of the default
architecture is used: the cost of a translation does not depend on the weights (``--untrained`` forces it).
Where CUDA is available the GAN stage is timed on the GPU as well.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import record  # noqa: E402

from genre_core.artifacts import load_cnn_bundle  # noqa: E402
from genre_core.decoding import DecodeStage
from genre_core.labelling import CNNVoter  # noqa: E402
from genre_core.models.gan_bundle import save_untrained_bundle  # noqa: E402
from genre_core.schema import STATUS_UNCLASSIFIED, read_catalog  # noqa: E402
from genre_core.stages import GANStage  # noqa: E402
from jobs.models import DEFAULT_MODELS  # noqa: E402


def timed(fn, *args):
    started = time.process_time()
    out = fn(*args)
    return out, time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--limit", type=int, default=120)
    parser.add_argument("--untrained", action="store_true", help="time an untrained generator even if a GAN "
                        "bundle exists")
    args = parser.parse_args(argv)

    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(1)
    cnn_url = os.path.join(args.models, "cnn")
    gan_url = os.path.join(args.models, "gan")
    df = read_catalog(args.catalog).iloc[: args.limit]
    with tempfile.TemporaryDirectory(prefix="bench-gan-") as tmp:
        trained = os.path.exists(os.path.join(gan_url, "bundle.json")) and not args.untrained
        if not trained:
            gan_url = save_untrained_bundle(cnn_url, os.path.join(tmp, "gan"))
        _, cnn = load_cnn_bundle(cnn_url)
        decode, voter = DecodeStage(cnn.feature_config), CNNVoter(cnn_url, device="cpu")
        stages = {"cpu": GANStage(gan_url, cnn_url, device="cpu")}
        if torch.cuda.is_available():
            stages["cuda"] = GANStage(gan_url, cnn_url, device="cuda")
        cpu_s = {"decode": 0.0, "cnn": 0.0}
        gan_s = {name: 0.0 for name in stages}
        n_unclassified = n_slices = 0
        for tid, uri in zip(df["track_id"], df["audio_uri"], strict=True):
            batch, t = timed(decode, {"track_id": np.array([tid], object), "audio_uri": np.array([uri], object)})
            cpu_s["decode"] += t
            batch, t = timed(voter, batch)
            cpu_s["cnn"] += t
            if batch["status"][0] != STATUS_UNCLASSIFIED:
                continue
            n_unclassified += 1
            n_slices += len(batch["slices"][0])
            for name, stage in stages.items():
                if name == "cuda":  # wall time, the GPU works asynchronously
                    torch.cuda.synchronize()
                    started = time.perf_counter()
                    stage(batch)
                    torch.cuda.synchronize()
                    gan_s[name] += time.perf_counter() - started
                else:
                    gan_s[name] += timed(stage, batch)[1]

    n = len(df)
    rate = n_unclassified / n
    per_song_cnn_path = (cpu_s["decode"] + cpu_s["cnn"]) / n
    per_gan = gan_s["cpu"] / max(n_unclassified, 1)
    share = rate * per_gan / (per_song_cnn_path + rate * per_gan)
    refine = stages["cpu"].meta.refine
    ratio = per_gan / per_song_cnn_path
    lines = [
        f"- {n} songs of {args.catalog}; GAN bundle: {'trained, ' + gan_url if trained else 'untrained (timing only)'};"
        f" gan_weight {refine.gan_weight}, threshold {refine.threshold}; one pinned core, 1 torch thread",
        f"- decode {1000 * cpu_s['decode'] / n:.1f} ms CPU/song, CNN + vote {1000 * cpu_s['cnn'] / n:.1f} ms CPU/song",
        f"- unclassified by the CNN: {n_unclassified}/{n} = {rate:.0%} ({n_slices / max(n_unclassified, 1):.1f} "
        f"slices/song)",
        f"- **GAN stage: {1000 * per_gan:.0f} ms CPU per unclassified song** "
        f"({1000 * per_gan / max(n_slices / max(n_unclassified, 1), 1):.1f} ms per slice: the CNN's front end, "
        "the generator and the rest of the CNN)",
        f"- **GAN stage per unclassified song / (decode + CNN) per song: {ratio:.2f}x** (criterion <= 3x: "
        f"{'met' if ratio <= 3 else 'NOT met'})",
        f"- **GAN share of the job's CPU work at {rate:.0%} unclassified: {share:.0%}**; at 30%: "
        f"{0.3 * per_gan / (per_song_cnn_path + 0.3 * per_gan):.0%}",
    ]
    if "cuda" in gan_s:
        lines.append(f"- on {torch.cuda.get_device_name()}: {1000 * gan_s['cuda'] / max(n_unclassified, 1):.1f} ms "
                     "wall per unclassified song")
    print("\n".join(lines))
    record("GAN stage cost", lines, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
