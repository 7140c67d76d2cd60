"""Front-end throughput: our decode + resample + log-mel + slicing vs the naive librosa loop, on one core.

    python benchmarks/frontend.py [--files DIR_OR_GLOB] [--n N] [--rounds R] [--sample-rate SR]

Without ``--files`` it writes N (default 24) 30 s WAVs (noise + tones, 16-bit, 22,050 Hz unless
``--sample-rate``) to a temporary folder. Each round times every file through each pipeline, in turn, in a fresh
process of its own pinned to one CPU, BLAS/OpenMP on one thread, warmed up first: ours set up as a decode actor
sets itself up (:class:`genre_core.decoding.DecodeStage`'s constructor: glibc keeps freed memory, filterbank and FFT
plans built), the naive loop in a plain process as a user's script would run. (Both in one process, as this
benchmark ran until 2026-11-29, the naive loop ran in a heap that ours had grown: 0 page faults per file instead
of ~2,000 on its own, 18 instead of 22 ms per file.) It prints x-real-time
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
import json
import platform
import resource
import statistics
import subprocess
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
from genre_core.decoding import DecodeStage
from genre_core.features import song_slices

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


def time_in_this_process(name: str, files: list[str]) -> None:
    """One timed pass of pipeline ``name`` over ``files`` in this (fresh) process; prints its wall and CPU seconds
    and minor page faults as JSON."""
    pin_to_one_cpu()
    audio_cfg, cfg = AudioConfig(), FeatureConfig()
    if name == "ours":
        DecodeStage(cfg, audio_cfg)  # what every decode actor does once: allocator settings, warm-up
        fn: Callable[[str], np.ndarray] = lambda p: ours(p, audio_cfg, cfg)  # noqa: E731
    else:
        fn = lambda p: naive(p, audio_cfg, cfg)  # noqa: E731
    fn(files[0])  # imports, FFT plans, page cache
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    wall, cpu = time_round(fn, files)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(json.dumps({"wall": wall, "cpu": cpu, "faults": faults}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", help="folder (searched recursively) or glob of audio files")
    ap.add_argument("--n", type=int, default=None, help="use the first N files (default: all, or 24 generated)")
    ap.add_argument("--rounds", type=int, default=5, help="timed passes over the files per pipeline")
    ap.add_argument("--sample-rate", type=int, default=22050, help="rate of generated files")
    ap.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    ap.add_argument("--time-pipeline", choices=("ours", "naive"), help=argparse.SUPPRESS)  # one timed pass (child)
    ap.add_argument("--file-list", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.time_pipeline:
        with open(args.file_list, encoding="utf-8") as fh:
            time_in_this_process(args.time_pipeline, json.load(fh))
        return 0

    pinning = pin_to_one_cpu()
    audio_cfg = AudioConfig()
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

        pipelines = ("ours", "naive")
        file_list = os.path.join(tmp, "files.json")
        with open(file_list, "w", encoding="utf-8") as fh:
            json.dump(files, fh)
        walls: dict[str, list[float]] = {k: [] for k in pipelines}
        cpus: dict[str, list[float]] = {k: [] for k in pipelines}
        faults: dict[str, list[int]] = {k: [] for k in pipelines}
        for _ in range(args.rounds):
            for name in pipelines:
                out = subprocess.run([sys.executable, __file__, "--time-pipeline", name, "--file-list", file_list],
                                     check=True, capture_output=True, text=True).stdout
                timed = json.loads(out.strip().splitlines()[-1])
                walls[name].append(timed["wall"])
                cpus[name].append(timed["cpu"])
                faults[name].append(timed["faults"])

    # Per-core throughput from CPU time (robust to other processes sharing the core); wall time alongside.
    xrt = {k: audio_s / statistics.median(v) for k, v in cpus.items()}
    xrt_wall = {k: audio_s / statistics.median(v) for k, v in walls.items()}
    ms_per_song = {k: 1000 * statistics.median(v) / len(files) for k, v in cpus.items()}
    cpu_wall = {k: sum(cpus[k]) / sum(walls[k]) for k in walls}
    ratio = xrt["ours"] / xrt["naive"]
    labels = {"ours": "ours  (load_audio + song_slices)",
              "naive": "naive (librosa.load + melspectrogram + power_to_db + slicing)"}
    lines = [f"files: {source} ({len(files)} files, {audio_s:.0f} s of audio), {args.rounds} rounds, each "
             f"pipeline in a fresh process per round, {pinning}"]
    lines += [
        f"{labels[k]}: {xrt[k]:.0f} x real time per core by CPU time ({ms_per_song[k]:.2f} ms CPU/file); "
        f"{xrt_wall[k]:.0f} x by wall time (cpu/wall {cpu_wall[k]:.2f}); "
        f"{statistics.median(faults[k]) / len(files):.0f} minor page faults per file"
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
