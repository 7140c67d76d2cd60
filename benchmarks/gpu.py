"""The labelling job's GPU stages on one GPU (``num_gpus=1``), fp32 and bf16, and the card's name; under 5 minutes.

  python benchmarks/gpu.py [--out FILE.md]        # on a machine with a CUDA GPU
  python benchmarks/gpu.py --smoke               # the same code on the CPU with tiny sizes (CI: tests/unit)

1. **CNN slices/s**: the stage of pool 1 (``genre_core.labelling.CNNVoter``: pinned host memory, non-blocking
   copies, batched slices, voting) for the shipped musicnn genre model (models/default/cnn) and a slice CNN of
   configs/default.yaml's shape (random weights: the cost does not depend on them), at several ``forward_slices``.
2. **GAN slices/s**: the stage of pool 2 (``genre_core.stages.GANStage``: the generator and the CNN's reading of its
   output, batched across songs) on songs that are all unclassified, with a GAN bundle made for the musicnn bundle
   (untrained: the same cost).
3. **End to end songs/s**: generated 30 s songs decoded, sliced and log-mel'd by a pool of this machine's CPU cores
   (``DecodeStage``), voted on by one CNNVoter and refined by one GANStage on the GPU, in this process: what one GPU
   actor of the job gets through when decoding keeps up (the Ray pipeline itself is measured on CPUs by
   benchmarks/end_to_end.py). With the decode rate per core, this says how many CPU cores one GPU needs.

fp32 / bf16 is the CNN bundle's ``cnn.precision`` (the GAN's generator computes as its CNN does). Random audio and
slices: throughput, not labels. Peak GPU memory per stage (``torch.cuda.max_memory_allocated``) sizes ``num_gpus``
fractions.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genre_core.artifacts import load_cnn_bundle, save_cnn_bundle  # noqa: E402
from genre_core.config import FeatureConfig, VotingConfig, load_config  # noqa: E402
from genre_core.features import feature_version  # noqa: E402
from genre_core.labelling import CNNVoter  # noqa: E402
from genre_core.models.cnn import SliceCNN  # noqa: E402
from genre_core.models.gan_bundle import save_untrained_bundle  # noqa: E402
from genre_core.schema import REASON_AMBIGUOUS  # noqa: E402
from genre_core.stages import GANStage  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO, "models", "default", "cnn")
SLICES_PER_SONG = 10


def with_precision(src: str, dst: str, precision: str) -> str:
    """A copy of the CNN bundle at ``src`` whose cnn.precision is ``precision``."""
    model, meta = load_cnn_bundle(src)
    save_cnn_bundle(dst, model, dataclasses.replace(meta, cnn_config=dataclasses.replace(meta.cnn_config,
                                                                                         precision=precision)))
    return dst


def slice_cnn_bundle(dst: str, precision: str) -> str:
    """A slice CNN of configs/default.yaml's shape with random weights."""
    cfg = load_config(os.path.join(REPO, "configs", "default.yaml"))
    fc, cnn = cfg.features, dataclasses.replace(cfg.cnn, precision=precision)
    from genre_core.artifacts import CNNBundle
    from genre_core.config import GENRES

    model = SliceCNN(len(GENRES), cnn, n_mels=fc.n_mels, n_frames=fc.slice_frames)
    save_cnn_bundle(dst, model, CNNBundle(classes=GENRES, feature_config=fc, cnn_config=cnn, voting=VotingConfig(),
                                          feature_version=feature_version(fc), n_mels=fc.n_mels,
                                          n_frames=fc.slice_frames))
    return dst


def timed(step: Callable[[], int], seconds: float, device: torch.device) -> float:
    """Units per second of ``step`` (which returns the units it did) over ``seconds``, after one warm-up call."""
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def songs_batch(meta: Any, n_songs: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal((SLICES_PER_SONG, meta.n_mels, meta.n_frames)).astype(np.float32)
            for _ in range(n_songs)]


def peak_mb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def cnn_rate(bundle: str, forward: int, n_songs: int, seconds: float, device: torch.device) -> tuple[float, float]:
    reset_peak(device)
    voter = CNNVoter(bundle, device=device, batch_slices=forward)
    batch = {"slices": songs_batch(voter.bundle, n_songs, np.random.default_rng(0))}
    rate = timed(lambda: len(voter(batch)["status"]) * SLICES_PER_SONG, seconds, device)
    return rate, peak_mb(device)


def gan_rate(gan: str, cnn: str, forward: int, n_songs: int, seconds: float,
             device: torch.device) -> tuple[float, float]:
    reset_peak(device)
    stage = GANStage(gan, cnn, device=device, batch_slices=forward)
    _, meta = load_cnn_bundle(cnn)
    k = len(meta.classes)
    batch = {"slices": songs_batch(meta, n_songs, np.random.default_rng(1)),
             "status": np.array(["unclassified"] * n_songs, object), "genre": np.array([None] * n_songs, object),
             "reason": np.array([REASON_AMBIGUOUS] * n_songs, object), "confidence": np.array([None] * n_songs, object),
             "probabilities": np.full((n_songs, k), 1.0 / k, np.float32)}
    rate = timed(lambda: int(stage(batch)["gan_input_slices"].sum()), seconds, device)
    return rate, peak_mb(device)


def train_rate(precision: str, batch: int, seconds: float, device: torch.device) -> float:
    """Training slices/s of the slice CNN (configs/default.yaml) through CNNTrainLoop, the loop of the Ray Train
    workers, on random batches already in host memory."""
    from genre_core.training.cnn import CNNTrainLoop

    cfg = load_config(os.path.join(REPO, "configs", "default.yaml"))
    fc = cfg.features
    loop = CNNTrainLoop(10, dataclasses.replace(cfg.cnn, precision=precision), cfg.train, fc.n_mels, fc.slice_frames,
                        device, log=lambda _: None)
    x = torch.randn(batch, fc.n_mels, fc.slice_frames).pin_memory() if device.type == "cuda" else \
        torch.randn(batch, fc.n_mels, fc.slice_frames)
    y = torch.randint(0, 10, (batch,))
    return timed(lambda: (loop.train_epoch([(x, y)] * 8), 8 * batch)[1], seconds, device)


# ---- end to end ----------------------------------------------------------------------------------------------

_DECODE: dict[str, Any] = {}


def _init_decoder(fc: FeatureConfig) -> None:
    from genre_core.decoding import DecodeStage

    torch.set_num_threads(1)
    _DECODE["stage"] = DecodeStage(fc)


def _decode(uris: list[str]) -> dict[str, Any]:
    return _DECODE["stage"]({"track_id": np.array(uris, object), "audio_uri": np.array(uris, object)})


def write_songs(folder: str, n: int, seconds: float, sample_rate: int = 22050) -> list[str]:
    """``n`` WAV files of noise and tones (decoding, resampling and log-mel cost what real songs cost)."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    uris = []
    for i in range(n):
        tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(80, 2000, 4))
        audio = (0.1 * tones + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
        uris.append(os.path.join(folder, f"song{i:04d}.wav"))
        sf.write(uris[-1], audio / np.abs(audio).max() * 0.8, sample_rate, subtype="PCM_16")
    return uris


def end_to_end(cnn: str, gan: str, uris: list[str], processes: int, songs_per_block: int,
               forward: int, device: torch.device) -> tuple[float, float]:
    """(songs/s through decode -> CNN -> GAN, decode songs/s per process alone)."""
    _, meta = load_cnn_bundle(cnn)
    voter = CNNVoter(cnn, device=device, batch_slices=forward, drop_classified_slices=True)
    stage = GANStage(gan, cnn, device=device, batch_slices=forward)
    blocks = [uris[i:i + songs_per_block] for i in range(0, len(uris), songs_per_block)]
    with mp.get_context("spawn").Pool(processes, initializer=_init_decoder, initargs=(meta.feature_config,)) as pool:
        pool.map(_decode, blocks[:processes])  # warm-up: imports, filterbanks
        t0 = time.perf_counter()
        decoded = pool.map(_decode, blocks)
        decode_rate = len(uris) / (time.perf_counter() - t0) / processes
        stage(voter(decoded[0]))  # warm-up of the GPU stages
        t0 = time.perf_counter()
        done = 0
        for batch in pool.imap_unordered(_decode, blocks):
            done += len(stage(voter(batch))["status"])
        if device.type == "cuda":
            torch.cuda.synchronize()
        return done / (time.perf_counter() - t0), decode_rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (CI)")
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    ap.add_argument("--songs", type=int, default=600, help="songs of the end-to-end run")
    ap.add_argument("--out", default=None, help="also write the tables to this markdown file")
    args = ap.parse_args(argv)
    if args.smoke:
        device, forwards, n_songs, seconds, songs, song_s, procs = torch.device("cpu"), [16], 2, 0.2, 4, 4.0, 1
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            print("no CUDA GPU here: run with --smoke for the CPU check", file=sys.stderr)
            return 2
        device, forwards, n_songs, seconds = torch.device("cuda"), [64, 256, 1024], 128, args.seconds
        songs, song_s, procs = args.songs, 30.0, max(1, (os.cpu_count() or 2) - 1)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke)"
    lines = [f"- card: **{card}**; torch {torch.__version__}; {os.cpu_count()} CPU cores; "
             f"{SLICES_PER_SONG} slices per song in the stage measurements, {n_songs} songs per call"]
    print(lines[0], flush=True)
    rows = ["", "| stage | precision | forward_slices | slices/s | peak GPU MB |", "|---|---|---|---|---|"]
    e2e = ["", "| end to end (musicnn + GAN) | precision | songs/s | decode songs/s per core |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        uris = write_songs(tmp, songs, song_s)
        for precision in ("fp32", "bf16"):
            musicnn = with_precision(SHIPPED, os.path.join(tmp, f"musicnn-{precision}"), precision)
            scratch = slice_cnn_bundle(os.path.join(tmp, f"scratch-{precision}"), precision)
            gan = save_untrained_bundle(musicnn, os.path.join(tmp, f"gan-{precision}"))
            for name, bundle in (("CNN musicnn", musicnn), ("CNN slice_cnn", scratch)):
                for f in forwards:
                    rate, mb = cnn_rate(bundle, f, n_songs, seconds, device)
                    rows.append(f"| {name} | {precision} | {f} | {rate:,.0f} | {mb:,.0f} |")
                    print(rows[-1], flush=True)
            for f in forwards:
                rate, mb = gan_rate(gan, musicnn, f, n_songs, seconds, device)
                rows.append(f"| GAN stage (generator + musicnn reading) | {precision} | {f} | {rate:,.0f} | "
                            f"{mb:,.0f} |")
                print(rows[-1], flush=True)
            for f in forwards:
                rate = train_rate(precision, f, seconds, device)
                rows.append(f"| training, slice_cnn (CNNTrainLoop) | {precision} | batch {f} | {rate:,.0f} | |")
                print(rows[-1], flush=True)
            rate, decode = end_to_end(musicnn, gan, uris, procs, 8, forwards[-1], device)
            e2e.append(f"| {songs} songs of {song_s:.0f} s, {procs} decode processes | {precision} | {rate:,.1f} | "
                       f"{decode:,.1f} |")
            print(e2e[-1], flush=True)
    text = "\n".join(lines + rows + e2e)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
