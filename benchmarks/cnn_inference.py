"""CNN inference: slices/s per core over a batch-size sweep (the shipped slice CNN, one pinned core).

  python benchmarks/cnn_inference.py [--models DIR] [--batch-sizes 1,4,16,64,256] [--seconds 3]

The process is pinned to one CPU with one torch thread and keeps freed memory (genre_core.allocator, as the job's
CNN stage does); each batch size runs for ``--seconds`` after a warm-up, under ``torch.inference_mode`` as the
labelling job runs it. Inputs are random standardised slices (the cost of
a convolution does not depend on the values). Where CUDA is available the sweep is repeated on the GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import record  # noqa: E402

from genre_core.allocator import keep_freed_memory  # noqa: E402
from genre_core.artifacts import load_cnn_bundle  # noqa: E402
from jobs.models import DEFAULT_MODELS  # noqa: E402


def slices_per_second(model: torch.nn.Module, batch: int, seconds: float, device: torch.device) -> float:
    x = torch.randn(batch, 1, model.n_mels, model.n_frames, device=device)
    with torch.inference_mode():
        model(x)  # warm-up: kernels, allocator
        if device.type == "cuda":
            torch.cuda.synchronize()
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            model(x)
            n += batch
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--batch-sizes", default="1,4,16,64,256")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)

    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(1)
    keep_freed_memory()
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    model, bundle = load_cnn_bundle(os.path.join(args.models, "cnn"), device="cpu")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    n_params = sum(p.numel() for p in model.parameters())
    lines = [f"- model {bundle.version}, slices {model.n_mels}x{model.n_frames}, {n_params:,} parameters; "
             f"CPU: pinned to CPU {cpu}, 1 torch thread, torch {torch.__version__}",
             "", "| device | " + " | ".join(f"batch {b}" for b in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    best = []
    for device in devices:
        model = model.to(device).eval()
        rates = [slices_per_second(model, b, args.seconds, device) for b in sizes]
        name = "CPU, slices/s per core" if device.type == "cpu" else f"{torch.cuda.get_device_name()}, slices/s"
        lines.append(f"| {name} | " + " | ".join(f"{r:,.0f}" for r in rates) + " |")
        best.append(f"{device.type}: batch {sizes[max(range(len(sizes)), key=rates.__getitem__)]}")
    lines += ["", f"- fastest: {', '.join(best)}"]
    if not torch.cuda.is_available():
        lines.append("- no GPU on this machine: the GPU row is recorded where one is available")
    print("\n".join(lines))
    record("CNN inference, batch-size sweep", lines, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
