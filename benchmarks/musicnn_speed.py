"""musicnn on one CPU thread: patches/s of the torch port, fp32 and bf16 autocast, and the bf16 deviation.

  python benchmarks/musicnn_speed.py [--backbone models/backbones/musicnn-msd] [--batch 16] [--seconds 5]

One torch thread (``torch.set_num_threads(1)``), batch 16 by default, under ``torch.inference_mode``. Prints
patches/s (3 s patches of 187 frames x 96 mels) of the fast eval path in fp32 and under
``torch.autocast('cpu', dtype=torch.bfloat16)``, of the layer-by-layer reference path in fp32 for comparison,
and the max abs deviation of the bf16 logits from the fp32 ones on the backbone's reference input. Each figure
is the best of ``--repeats`` timed runs of ``--seconds`` each, so that a busy neighbour on a shared host costs
less. Inputs are uniform random values in musicnn's range (the cost does not depend on them).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from genre_core.models.musicnn import Musicnn, load_backbone  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def patches_per_second(fn: Callable[[torch.Tensor], object], x: torch.Tensor, seconds: float, repeats: int,
                       bf16: bool) -> float:
    """Best-of-``repeats`` throughput of ``fn(x)`` in patches/s."""
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    best = 0.0
    with torch.inference_mode(), ctx():
        fn(x)  # warm-up: derived tensors, allocator, oneDNN/MKL kernels
        for _ in range(repeats):
            n, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                fn(x)
                n += x.shape[0]
            best = max(best, n / (time.perf_counter() - started))
    return best


def reference_input(meta: dict) -> torch.Tensor:
    """The backbone's recorded reference input, in our [B, n_mels, n_frames] layout."""
    ref = meta["reference"]
    x = np.random.default_rng(ref["seed"]).uniform(0.0, 4.0, size=tuple(ref["shape"])).astype(np.float32)
    return torch.from_numpy(x).transpose(1, 2)


def bf16_deviation(model: Musicnn, x: torch.Tensor) -> float:
    """Max abs difference of the bf16-autocast logits from the fp32 logits."""
    with torch.inference_mode():
        fp32 = model(x)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(x)[0].float()
    return float((bf16 - fp32).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=os.path.join(REPO, "models", "backbones", "musicnn-msd"))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, meta = load_backbone(args.backbone)
    x = torch.rand(args.batch, model.n_mels, model.n_frames) * 4.0
    fast32 = patches_per_second(model, x, args.seconds, args.repeats, bf16=False)
    fast16 = patches_per_second(model, x, args.seconds, args.repeats, bf16=True)
    ref32 = patches_per_second(model.forward_reference, x, args.seconds, args.repeats, bf16=False)
    dev = bf16_deviation(model, reference_input(meta))
    print(f"musicnn ({meta['name']}), 1 thread, batch {args.batch}, torch {torch.__version__}")
    print(f"  fast path fp32        {fast32:7.1f} patches/s")
    print(f"  fast path bf16 autocast {fast16:5.1f} patches/s")
    print(f"  reference path fp32   {ref32:7.1f} patches/s")
    print(f"  bf16 vs fp32 max abs logit deviation on the reference input: {dev:.4f}")


if __name__ == "__main__":
    main()
