"""Training of the conditional spectrogram GAN, and the choice of the refine parameters on validation songs.

The GAN learns from slices of the CNN's TRAINING songs only. Each step draws a batch of slices (a random
time crop of ``crop_frames`` each, since both networks are fully convolutional), a random target genre
different from the true one, and takes one Adam step on the generator then one on the discriminator
(hinge loss, spectral norm; see :mod:`genre_core.models.gan`). Learning rates decay linearly to zero over
the last ``1 - decay_from`` of the steps. Before the GAN steps, the discriminator's trunk and genre head are
warmed up alone on real crops (``d_warmup_steps`` cross-entropy steps, ~20x cheaper than a GAN step), so
that the genre loss guides the generator from its first step: with a CPU budget of ~1,000 GAN steps, a
genre head learnt from scratch alongside the generator stays near chance for most of the run.
Deterministic on CPU for a given seed.

The refine parameters (``top_k``, ``vote_weight``, ``cost_weight``, ``threshold``, see
:mod:`genre_core.refine`) are chosen on VALIDATION songs with :func:`choose_refine_params`; test songs are
never seen here.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from genre_core.artifacts import load_cnn_bundle
from genre_core.config import VotingConfig
from genre_core.models.cnn import pick_device
from genre_core.models.gan import (
    Discriminator,
    GANBundle,
    GANLossWeights,
    GANModelConfig,
    Generator,
    discriminator_losses,
    generator_losses,
    save_gan_bundle,
)
from genre_core.refine import CandidateEvidence, candidate_evidence, refine_scores
from genre_core.training.cnn import Song
from genre_core.training.recording_chain import degrade
from genre_core.voting import decide

DEFAULT_TOP_KS: tuple[int, ...] = (2, 3)
DEFAULT_COST_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
DEFAULT_VOTE_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.0,) + tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0, .5-.95


@dataclass(frozen=True)
class GANTrainConfig:
    """GAN optimisation settings; the defaults train in under 30 min on 2 (shared) CPU cores."""

    seed: int = 0
    steps: int = 1500
    batch_size: int = 16
    crop_frames: int = 64          # time crop of each training slice; 0 = the whole slice
    lr_g: float = 4e-4
    lr_d: float = 4e-4
    d_warmup_steps: int = 300      # genre-head-only steps of the discriminator before the GAN steps
    d_warmup_lr: float = 1e-3
    augment: float = 0.0           # recording-chain degradation of G's input crops, 1 = shifted preset (0 = off;
                                   # the training job's default is 1, see jobs.train_gan)
    beta1: float = 0.5
    beta2: float = 0.999
    decay_from: float = 0.5        # fraction of the steps after which the learning rates decay linearly to 0
    max_minutes: float | None = None  # stop early after this wall time (the steps done are recorded)
    log_every: int = 100
    loss_weights: GANLossWeights = field(default_factory=GANLossWeights)


@dataclass
class GANTrainResult:
    generator: Generator
    discriminator: Discriminator
    history: list[dict[str, float]]
    timings: dict[str, float]
    steps_done: int


def _lr_factor(step: int, cfg: GANTrainConfig) -> float:
    start = int(cfg.decay_from * cfg.steps)
    if step < start or cfg.steps <= start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / (cfg.steps - start))


def train_gan(
    train_songs: Sequence[Song],
    n_classes: int,
    model_cfg: GANModelConfig,
    train_cfg: GANTrainConfig,
    n_mels: int,
    *,
    mel_hz: np.ndarray | None = None,
    device: torch.device | None = None,
    log: Callable[[str], None] = print,
) -> GANTrainResult:
    """Train ``G`` and ``D`` on the slices of ``train_songs`` (standardised ``[n, n_mels, n_frames]`` each).

    ``mel_hz`` (centre frequency of each mel band, :func:`recording_chain.mel_band_hz`) is needed when
    ``train_cfg.augment > 0``: G's input crops are then degraded by :func:`recording_chain.degrade` and its
    restoration and cycle targets are the clean crops (the discriminator only ever sees clean real crops).
    """
    if not train_songs:
        raise ValueError("no training songs")
    if train_cfg.augment > 0 and (mel_hz is None or len(mel_hz) != n_mels):
        raise ValueError("augment > 0 needs mel_hz, the centre frequency of each of the n_mels bands")
    device = device or pick_device()
    x_all = torch.from_numpy(np.concatenate([np.asarray(s.slices, np.float32) for s in train_songs]))
    y_all = torch.from_numpy(np.concatenate([np.full(len(s.slices), s.genre_index, np.int64) for s in train_songs]))
    if x_all.shape[1] != n_mels:
        raise ValueError(f"slices have {x_all.shape[1]} mel bands, expected {n_mels}")
    if int(y_all.max()) >= n_classes or int(y_all.min()) < 0:
        raise ValueError("genre index out of range")
    n_frames = x_all.shape[2]
    crop = train_cfg.crop_frames or n_frames
    step_size = 2 ** model_cfg.g_downsamples
    if crop > n_frames or crop % step_size:
        raise ValueError(f"crop_frames={crop} must be <= {n_frames} and divisible by {step_size}")
    torch.manual_seed(train_cfg.seed)
    gen = torch.Generator().manual_seed(train_cfg.seed)
    g = Generator(n_classes, model_cfg, n_mels=n_mels).to(device)
    d = Discriminator(n_classes, model_cfg, n_mels=n_mels).to(device)
    betas = (train_cfg.beta1, train_cfg.beta2)
    opt_g = torch.optim.Adam(g.parameters(), lr=train_cfg.lr_g, betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=train_cfg.lr_d, betas=betas)
    w = train_cfg.loss_weights

    def batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(x_all), (size,), generator=gen)
        offsets = torch.randint(n_frames - crop + 1, (size,), generator=gen)
        x = torch.stack([x_all[i, :, o:o + crop] for i, o in zip(idx.tolist(), offsets.tolist(), strict=True)])
        return x.unsqueeze(1).to(device), y_all[idx].to(device)

    t_warm, cpu0 = time.perf_counter(), time.process_time()
    warm = {"loss": 0.0, "acc": 0.0}
    if train_cfg.d_warmup_steps > 0:
        opt_w = torch.optim.Adam(d.parameters(), lr=train_cfg.d_warmup_lr, betas=(0.9, 0.999))
        d.train()
        tail = max(1, min(50, train_cfg.d_warmup_steps))
        for wstep in range(train_cfg.d_warmup_steps):
            x, y = batch(2 * train_cfg.batch_size)
            logits = d(x)[1]
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt_w.zero_grad(set_to_none=True)
            loss.backward()
            opt_w.step()
            if wstep >= train_cfg.d_warmup_steps - tail:
                warm["loss"] += float(loss.detach()) / tail
                warm["acc"] += float((logits.argmax(1) == y).float().mean()) / tail
        log(f"discriminator warm-up: {train_cfg.d_warmup_steps} steps, genre loss {warm['loss']:.3f} "
            f"acc {warm['acc']:.2f} (last {tail} steps), {time.perf_counter() - t_warm:.0f} s")
    warmup_s = time.perf_counter() - t_warm
    log(f"GAN: {len(train_songs)} songs / {len(x_all)} slices, crops of {crop} frames, batch {train_cfg.batch_size}, "
        f"{train_cfg.steps} steps; G {sum(p.numel() for p in g.parameters())} params, "
        f"D {sum(p.numel() for p in d.parameters())} params; device {device}")
    history: list[dict[str, float]] = []
    sums: dict[str, float] = defaultdict(float)
    n_sum = 0
    t0 = time.perf_counter()
    t_last = t0
    step = 0
    for step in range(1, train_cfg.steps + 1):
        factor = _lr_factor(step - 1, train_cfg)
        for opt, lr in ((opt_g, train_cfg.lr_g), (opt_d, train_cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * factor
        x, y = batch(train_cfg.batch_size)
        target = ((y + torch.randint(1, n_classes, y.shape, generator=gen).to(device)) % n_classes)
        x_in = degrade(x, mel_hz, train_cfg.augment, gen) if train_cfg.augment > 0 else x

        g.train()
        d.train()
        g_loss, fake = generator_losses(g, d, x_in, y, target, w, clean=x)
        opt_g.zero_grad(set_to_none=True)
        g_loss["total"].backward()
        opt_g.step()
        d_loss = discriminator_losses(d, x, y, fake, w)
        opt_d.zero_grad(set_to_none=True)
        d_loss["total"].backward()
        opt_d.step()

        for k, v in g_loss.items():
            sums["g_" + k] += float(v.detach())
        for k, v in d_loss.items():
            sums["d_" + k] += float(v.detach())
        n_sum += 1
        elapsed = time.perf_counter() - t0
        over_time = train_cfg.max_minutes is not None and elapsed > 60.0 * train_cfg.max_minutes
        if step % train_cfg.log_every == 0 or step == train_cfg.steps or over_time:
            row = {"step": step, "seconds": elapsed, **{k: v / n_sum for k, v in sums.items()}}
            history.append(row)
            log(f"step {step}/{train_cfg.steps} ({elapsed:.0f} s, {(time.perf_counter() - t_last) / n_sum:.2f} s/step)"
                f": G adv {row['g_adv']:.3f} cls {row['g_cls']:.3f} (acc {row['g_cls_acc']:.2f}) "
                f"cyc {row['g_cycle']:.3f} id {row['g_identity']:.3f} cost {row['g_cost']:.3f} | "
                f"D adv {row['d_adv']:.3f} cls {row['d_cls']:.3f} (acc {row['d_cls_acc']:.2f})")
            sums.clear()
            n_sum = 0
            t_last = time.perf_counter()
        if over_time:
            log(f"stopping after {step} steps: max_minutes={train_cfg.max_minutes} reached")
            break
    g.eval()
    d.eval()
    timings = {"train_s": time.perf_counter() - t_warm, "train_cpu_s": time.process_time() - cpu0,
               "d_warmup_s": warmup_s, "gan_s": time.perf_counter() - t0,
               "steps": step, "s_per_step": (time.perf_counter() - t0) / max(step, 1),
               "d_warmup_loss": warm["loss"], "d_warmup_acc": warm["acc"]}
    return GANTrainResult(generator=g, discriminator=d, history=history, timings=timings, steps_done=step)


def save_untrained_bundle(cnn_url: str, out: str, seed: int = 0) -> str:
    """Write to ``out`` a GAN bundle for the CNN bundle at ``cnn_url`` whose generator is seeded but untrained.

    For what does not depend on the weights: where the GAN stage runs and what it receives (tests) and what it
    costs (benchmarks/gan_cost.py). Returns ``out``.
    """
    _, cnn = load_cnn_bundle(cnn_url)
    torch.manual_seed(seed)
    cfg = GANModelConfig()
    generator = Generator(len(cnn.classes), cfg, n_mels=cnn.n_mels).eval()
    save_gan_bundle(out, generator, None, GANBundle(
        classes=cnn.classes, model_config=cfg, cnn_version=cnn.version, feature_version=cnn.feature_version,
        feature_config=cnn.feature_config, n_mels=cnn.n_mels, n_frames=cnn.n_frames,
        refine={"top_k": 2, "threshold": 0.0, "cost_weight": 1.0},
    ))
    return out


def refine_tuning_set(probs: Sequence[np.ndarray], voting: VotingConfig, min_songs: int = 40) -> list[int]:
    """Indices of the validation songs used to choose the refine parameters.

    All songs the CNN leaves unclassified at ``voting``; when they are fewer than ``min_songs``, the most
    ambiguous classified songs (smallest vote margin first) are added until there are ``min_songs`` (there
    are usually too few unclassified validation songs to choose three parameters from).
    """
    decisions = [decide(p, voting.tau, voting.margin) for p in probs]
    unclassified = [i for i, d in enumerate(decisions) if not d.classified]
    others = sorted((i for i, d in enumerate(decisions) if d.classified), key=lambda i: (decisions[i].margin, i))
    need = max(0, min_songs - len(unclassified))
    return sorted(unclassified + others[:need])


def _grid_scores(
    evidence: Sequence[CandidateEvidence], top_k: int, cost_weight: float, vote_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """(q shares ``[n, top_k]``, candidates ``[n, top_k]``) of every song for one grid point."""
    reading = np.stack([e.reading[:top_k] for e in evidence])
    cost = np.stack([e.cost[:top_k] for e in evidence])
    votes = np.stack([e.vote_shares[:top_k] for e in evidence])
    cand = np.stack([e.candidates[:top_k] for e in evidence])
    return refine_scores(reading, cost, cost_weight, votes, vote_weight), cand


def choose_refine_params(
    slices: Sequence[np.ndarray],
    vote_shares: Sequence[np.ndarray],
    labels: Sequence[int],
    generator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    cnn: Callable[[torch.Tensor], torch.Tensor],
    *,
    top_ks: Sequence[int] = DEFAULT_TOP_KS,
    cost_weights: Sequence[float] = DEFAULT_COST_WEIGHTS,
    vote_weights: Sequence[float] = DEFAULT_VOTE_WEIGHTS,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    wrong_penalty: float = 1.0,
    standardize: bool = True,
    evidence: Sequence[CandidateEvidence] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Choose ``top_k``, ``vote_weight``, ``cost_weight`` and ``threshold`` on VALIDATION songs.

    1. ``(top_k, vote_weight, cost_weight)``: the highest accuracy of the refined genre when every song is
       decided; ties go to the higher mean ``log q`` of the true genre (floored at 1e-6; a smooth tie-breaker
       that small validation sets need), then to the smaller ``top_k``, the larger ``vote_weight`` (closer
       to the votes) and the smaller ``cost_weight``.
    2. ``threshold``: the one maximising ``right - wrong_penalty * wrong`` over the decided songs (an
       unclassified song counts 0); ties go to the lower threshold (more songs decided).

    Translations are computed once, for the largest ``top_k``. Returns ``(params, selection report)``.
    """
    if not len(labels):
        raise ValueError("choose_refine_params needs at least one validation song")
    y = np.asarray(labels, dtype=np.int64)
    k_max = max(top_ks)
    if evidence is None:
        evidence = [candidate_evidence(s, v, generator, cnn, k_max, standardize=standardize)
                    for s, v in zip(slices, vote_shares, strict=True)]
    rows_n = np.arange(len(y))
    grid = []
    for k in sorted(top_ks):
        for vw in sorted(vote_weights):
            for wgt in sorted(cost_weights):
                q, cand = _grid_scores(evidence, k, wgt, vw)
                pred = cand[rows_n, q.argmax(axis=1)]
                q_true = np.where(cand == y[:, None], q, 0.0).sum(axis=1)
                grid.append({"top_k": int(k), "vote_weight": float(vw), "cost_weight": float(wgt),
                             "accuracy": float((pred == y).mean()),
                             "mean_log_q_true": float(np.log(np.maximum(q_true, 1e-6)).mean())})
    best = max(grid, key=lambda r: (r["accuracy"], round(r["mean_log_q_true"], 9), -r["top_k"], r["vote_weight"],
                                    -r["cost_weight"]))
    q, cand = _grid_scores(evidence, best["top_k"], best["cost_weight"], best["vote_weight"])
    q_best, pred = q.max(axis=1), cand[rows_n, q.argmax(axis=1)]
    right = pred == y
    rows = []
    for th in sorted(thresholds):
        decided = q_best >= th - 1e-9
        n_right, n_wrong = int((decided & right).sum()), int((decided & ~right).sum())
        rows.append({"threshold": float(th), "coverage": float(decided.mean()), "right": n_right, "wrong": n_wrong,
                     "net": n_right - wrong_penalty * n_wrong})
    th_best = max(rows, key=lambda r: (r["net"], -r["threshold"]))
    params = {"top_k": best["top_k"], "vote_weight": best["vote_weight"], "cost_weight": best["cost_weight"],
              "threshold": th_best["threshold"]}
    forced = np.array([e.candidates[0] for e in evidence])
    selection = {
        "n_tuning_songs": int(len(y)),
        "val_forced_argmax_accuracy": float((forced == y).mean()),
        "val_refine_accuracy_all_decided": best["accuracy"],
        "val_threshold_coverage": th_best["coverage"],
        "val_threshold_right": th_best["right"], "val_threshold_wrong": th_best["wrong"],
        "wrong_penalty": wrong_penalty, "grid": grid, "thresholds": rows,
        "summary": (f"{len(y)} validation songs: forced argmax {float((forced == y).mean()):.3f}, "
                    f"refine (all decided) {best['accuracy']:.3f}; threshold {th_best['threshold']} decides "
                    f"{th_best['right']} right / {th_best['wrong']} wrong"),
    }
    return params, selection
