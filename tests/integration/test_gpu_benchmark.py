"""benchmarks/gpu.py --smoke: the GPU benchmark's code path (the CNN and GAN stages in fp32 and bf16, training through
CNNTrainLoop, decode -> CNN -> GAN end to end) runs on a CPU, as CI has no GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_smoke_runs_every_stage_in_both_precisions(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "card: **cpu (smoke)**" in text
    for stage in ("CNN musicnn", "CNN slice_cnn", "GAN stage", "training, slice_cnn", "songs of 4 s"):
        for precision in ("fp32", "bf16"):
            (row,) = [r for r in text.splitlines() if stage in r and f"| {precision} |" in r]
            rate = row.split("|")[4 if "songs of" not in stage else 3]
            assert float(rate.replace(",", "")) > 0, row
