"""Front-end throughput: our decode + resample + log-mel + slicing vs the naive librosa loop, on one core.

    python benchmarks/frontend.py [--files DIR_OR_GLOB] [--n N] [--rounds R] [--sample-rate SR]

Without ``--files`` it writes N (default 24) 30 s WAVs (noise + tones, 16-bit, 22,050 Hz unless
``--sample-rate``) to a temporary folder. The process is pinned to one CPU and BLAS/OpenMP to one thread, both
pipelines are warmed up, then each round times every file through both (interleaved). It prints x-real-time
(audio seconds per CPU second of the pinned single-threaded process, median over rounds; wall-clock figures
and the cpu/wall ratio are printed too, a ratio well below 1 meaning other processes shared the core) and
appends an entry to benchmarks/RESULTS.md.
"""

# ruff: noqa: E402  (thread limits must be set before numpy/scipy are imported)
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import argparse
import glob
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record

from genre_core.audio import load_audio
from genre_core.config import AudioConfig, FeatureConfig
from genre_core.features import song_slices, warm_up

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


def ours(path: str, audio_cfg: AudioConfig, cfg: FeatureConfig) -> np.ndarray:
    return song_slices(load_audio(path, audio_cfg), cfg)


def naive(path: str, audio_cfg: AudioConfig, cfg: FeatureConfig) -> np.ndarray:
    """What a user would write with librosa (same settings, same per-slice standardisation)."""
    import librosa

    y, sr = librosa.load(path, sr=cfg.sample_rate, duration=audio_cfg.max_duration_s)
    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax
    )
    db = librosa.power_to_db(mel)
    n, hop = cfg.slice_frames, cfg.slice_hop_frames
    slices = [db[:, i:i + n] for i in range(0, db.shape[1] - n + 1, hop)]
    return np.stack([(s - s.mean()) / (s.std() + 1e-5) for s in slices])


def make_files(folder: Path, n: int, sr: int, seconds: float = 30.0) -> list[str]:
    """Write ``n`` noise-plus-tones WAVs (16-bit mono) of ``seconds`` each."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    paths = []
    for i in range(n):
        tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in rng.uniform(80, 4000, size=4))
        x = 0.05 * rng.standard_normal(t.shape[0]) + 0.1 * tones * (1 + 0.5 * np.sin(2 * np.pi * t / 2))
        path = folder / f"bench_{i:03d}.wav"
        sf.write(str(path), (x / np.abs(x).max() * 0.8).astype(np.float32), sr, subtype="PCM_16")
        paths.append(str(path))
    return paths


def find_files(spec: str) -> list[str]:
    if os.path.isdir(spec):
        found = [str(p) for p in sorted(Path(spec).rglob("*")) if p.suffix.lower() in AUDIO_EXTS]
    else:
        found = sorted(glob.glob(spec, recursive=True))
    if not found:
        raise SystemExit(f"no audio files found at {spec!r}")
    return found


def pin_to_one_cpu() -> str:
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity)"


def time_round(fn: Callable[[str], np.ndarray], files: list[str]) -> tuple[float, float]:
    """(wall seconds, cpu seconds) to run ``fn`` over ``files`` once."""
    wall, cpu = time.perf_counter(), time.process_time()
    for path in files:
        fn(path)
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", help="folder (searched recursively) or glob of audio files")
    ap.add_argument("--n", type=int, default=None, help="use the first N files (default: all, or 24 generated)")
    ap.add_argument("--rounds", type=int, default=5, help="timed passes over the files per pipeline")
    ap.add_argument("--sample-rate", type=int, default=22050, help="rate of generated files")
    ap.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)

    pinning = pin_to_one_cpu()
    audio_cfg, cfg = AudioConfig(), FeatureConfig()
    with tempfile.TemporaryDirectory(prefix="frontend-bench-") as tmp:
        if args.files:
            files = find_files(args.files)[: args.n]
            source = args.files
        else:
            files = make_files(Path(tmp), args.n or 24, args.sample_rate)
            source = f"{len(files)} generated 30 s {args.sample_rate} Hz 16-bit mono WAVs"
        audio_s = 0.0
        for path in files:
            with sf.SoundFile(path) as snd:
                audio_s += min(snd.frames / snd.samplerate, audio_cfg.max_duration_s)

        pipelines = {
            "ours": lambda p: ours(p, audio_cfg, cfg),
            "naive": lambda p: naive(p, audio_cfg, cfg),
        }
        warm_up(cfg)
        for fn in pipelines.values():  # imports, JIT, FFT plans, page cache
            fn(files[0])
        walls: dict[str, list[float]] = {k: [] for k in pipelines}
        cpus: dict[str, list[float]] = {k: [] for k in pipelines}
        for _ in range(args.rounds):
            for name, fn in pipelines.items():
                wall, cpu = time_round(fn, files)
                walls[name].append(wall)
                cpus[name].append(cpu)

    # Per-core throughput from CPU time (robust to other processes sharing the core); wall time alongside.
    xrt = {k: audio_s / statistics.median(v) for k, v in cpus.items()}
    xrt_wall = {k: audio_s / statistics.median(v) for k, v in walls.items()}
    ms_per_song = {k: 1000 * statistics.median(v) / len(files) for k, v in cpus.items()}
    cpu_wall = {k: sum(cpus[k]) / sum(walls[k]) for k in walls}
    ratio = xrt["ours"] / xrt["naive"]
    labels = {"ours": "ours  (load_audio + song_slices)",
              "naive": "naive (librosa.load + melspectrogram + power_to_db + slicing)"}
    lines = [f"files: {source} ({len(files)} files, {audio_s:.0f} s of audio), {args.rounds} rounds, {pinning}"]
    lines += [
        f"{labels[k]}: {xrt[k]:.0f} x real time per core by CPU time ({ms_per_song[k]:.2f} ms CPU/file); "
        f"{xrt_wall[k]:.0f} x by wall time (cpu/wall {cpu_wall[k]:.2f})"
        for k in pipelines
    ]
    lines.append(
        f"ratio ours/naive: {ratio:.2f}x (wall: {xrt_wall['ours'] / xrt_wall['naive']:.2f}x)   targets: "
        f"ours >= 1000x real time [{'met' if xrt['ours'] >= 1000 else 'MISSED'}], "
        f">= 2x naive [{'met' if ratio >= 2 else 'MISSED'}]"
    )
    print("\n".join(lines))
    if not args.no_record:
        import librosa
        import scipy

        versions = (f"- python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
                    f"librosa {librosa.__version__}, soundfile {sf.__version__}")
        record("Front end: decode + resample + log-mel + slicing vs naive librosa", [versions]
               + [f"- {line}" for line in lines], argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
