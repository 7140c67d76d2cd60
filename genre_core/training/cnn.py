"""Training of the slice CNN from in-memory songs, and the choice of the voting thresholds.

Songs, not slices, are the unit of every split: a song's slices are all on one side. The model is chosen
by early stopping on the validation songs' voted accuracy (ties broken by validation loss), and the voting
thresholds (tau, margin) are then chosen on the same validation songs: the pair with the highest coverage
whose accuracy on the classified songs reaches a target. Test songs are never seen here.
Deterministic on CPU for a given seed.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genre_core.config import CNNConfig, TrainConfig, VotingConfig
from genre_core.inference import slice_probabilities
from genre_core.models.cnn import SliceCNN, pick_device
from genre_core.voting import decide

DEFAULT_TAUS: tuple[float, ...] = tuple(round(0.10 + 0.05 * i, 2) for i in range(18))     # 0.10 .. 0.95
DEFAULT_MARGINS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(17))         # 0.00 .. 0.80


@dataclass
class Song:
    """One song's training data: id, true class index, slices ``[n, n_mels, n_frames]`` (float32)."""

    song_id: str
    genre_index: int
    slices: np.ndarray


@dataclass
class TrainResult:
    model: SliceCNN
    history: list[dict[str, float]]
    best_epoch: int
    voting: VotingConfig
    selection: dict[str, Any]
    val_report: dict[str, Any]
    train_song_ids: list[str]
    val_song_ids: list[str]
    timings: dict[str, float] = field(default_factory=dict)


def split_by_song(songs: Sequence[Song], val_fraction: float, seed: int) -> tuple[list[Song], list[Song]]:
    """Split songs (never slices) into train/val, stratified by genre, deterministic for ``seed``.

    Each genre with >= 2 songs gives ``round(n * val_fraction)`` songs (at least 1, at most n - 1) to val.
    """
    ids = [s.song_id for s in songs]
    if len(set(ids)) != len(ids):
        raise ValueError("song ids must be unique to split by song")
    by_genre: dict[int, list[Song]] = defaultdict(list)
    for s in sorted(songs, key=lambda s: s.song_id):
        by_genre[s.genre_index].append(s)
    rng = np.random.default_rng(seed)
    val_ids: set[str] = set()
    for g in sorted(by_genre):
        group = by_genre[g]
        n = len(group)
        n_val = 0 if n < 2 or val_fraction <= 0 else min(n - 1, max(1, round(n * val_fraction)))
        for i in rng.permutation(n)[:n_val]:
            val_ids.add(group[i].song_id)
    return [s for s in songs if s.song_id not in val_ids], [s for s in songs if s.song_id in val_ids]


@torch.inference_mode()
def _decisions(probs: Sequence[np.ndarray], tau: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(classified mask, decided class index or -1) per song, through the production voting rule."""
    classified, index = np.zeros(len(probs), bool), np.full(len(probs), -1)
    for i, p in enumerate(probs):
        d = decide(p, tau, margin)
        classified[i] = d.status == "classified"
        index[i] = d.genre_index if classified[i] else -1
    return classified, index


def evaluate_songs(probs: Sequence[np.ndarray], labels: Sequence[int], voting: VotingConfig) -> dict[str, Any]:
    """Song-level report from per-slice probabilities: forced-argmax (voted) song accuracy, single-slice
    accuracy, coverage and accuracy on classified songs at ``voting``'s thresholds."""
    y = np.asarray(labels)
    n = len(y)
    if n == 0:
        return {"n_songs": 0}
    forced = np.array([p.sum(axis=0).argmax() for p in probs])
    slice_ok = np.concatenate([p.argmax(axis=1) == y[i] for i, p in enumerate(probs)])
    classified, decided = _decisions(probs, voting.tau, voting.margin)
    return {
        "n_songs": int(n),
        "n_slices": int(slice_ok.size),
        "song_accuracy": float((forced == y).mean()),
        "slice_accuracy": float(slice_ok.mean()),
        "coverage": float(classified.mean()),
        "accuracy_on_classified": float((decided[classified] == y[classified]).mean())
        if classified.any() else float("nan"),
        "n_classified": int(classified.sum()),
    }


def choose_voting(
    probs: Sequence[np.ndarray],
    labels: Sequence[int],
    target_accuracy: float = 0.97,
    taus: Sequence[float] = DEFAULT_TAUS,
    margins: Sequence[float] = DEFAULT_MARGINS,
) -> tuple[VotingConfig, dict[str, Any]]:
    """Pick (tau, margin) on VALIDATION songs: the highest coverage with accuracy-on-classified >= target.

    Ties go to the higher accuracy, then the larger margin, then the larger tau (the more cautious pair).
    When no pair reaches the target, the pair with the highest accuracy on classified songs is taken
    (ties by coverage) and ``target_met`` is False.
    """
    y = np.asarray(labels)
    if len(y) == 0:
        raise ValueError("choose_voting needs at least one validation song")
    grid = []
    for tau in taus:
        for m in margins:
            classified, decided = _decisions(probs, tau, m)
            cov = float(classified.mean())
            acc = float((decided[classified] == y[classified]).mean()) if classified.any() else float("nan")
            grid.append({"tau": float(tau), "margin": float(m), "coverage": cov, "accuracy_on_classified": acc})
    feasible = [g for g in grid if g["coverage"] > 0 and g["accuracy_on_classified"] >= target_accuracy]
    if feasible:
        best = max(feasible, key=lambda g: (g["coverage"], g["accuracy_on_classified"], g["margin"], g["tau"]))
    else:
        decided_any = [g for g in grid if g["coverage"] > 0]
        best = max(decided_any, key=lambda g: (g["accuracy_on_classified"], g["coverage"], g["margin"], g["tau"]))
    selection = {
        "target_accuracy": target_accuracy, "target_met": bool(feasible), "n_val_songs": int(len(y)),
        "tau": best["tau"], "margin": best["margin"], "val_coverage": best["coverage"],
        "val_accuracy_on_classified": best["accuracy_on_classified"], "grid_size": len(grid),
    }
    return VotingConfig(tau=best["tau"], margin=best["margin"]), selection


def spec_augment(x: torch.Tensor, gen: torch.Generator, max_fraction: float = 0.125) -> torch.Tensor:
    """SpecAugment-style masking: per slice, one band of mel rows and one run of frames set to 0 (the mean
    of a standardised slice), each up to ``max_fraction`` of the axis. Returns a new tensor."""
    b, n_mels, n_frames = x.shape[0], x.shape[-2], x.shape[-1]
    out = x.clone()
    for axis, size in ((-2, n_mels), (-1, n_frames)):
        width = torch.randint(0, int(size * max_fraction) + 1, (b, 1), generator=gen)
        start = (torch.rand((b, 1), generator=gen) * (size - width + 1)).long()
        pos = torch.arange(size).unsqueeze(0)
        mask = (pos >= start) & (pos < start + width)            # [b, size]
        shape = (b, size, 1) if axis == -2 else (b, 1, size)
        out = out.masked_fill(mask.view(shape).expand_as(out), 0.0)
    return out


def _stack(songs: Sequence[Song]) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.concatenate([np.asarray(s.slices, dtype=np.float32) for s in songs], axis=0)
    y = np.concatenate([np.full(len(s.slices), s.genre_index, dtype=np.int64) for s in songs])
    return torch.from_numpy(x), torch.from_numpy(y)


def _train_epoch(
    model: SliceCNN, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, batch_size: int,
    gen: torch.Generator, augment: bool, device: torch.device,
) -> dict[str, float]:
    """One pass over the shuffled training slices; mean loss and slice accuracy."""
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    loss_sum, correct = 0.0, 0
    for i in range(0, len(perm), batch_size):
        idx = perm[i:i + batch_size]
        xb = spec_augment(x[idx], gen) if augment else x[idx]
        xb, yb = xb.to(device), y[idx].to(device)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == yb).sum())
    return {"train_loss": loss_sum / len(perm), "train_slice_accuracy": correct / len(perm)}


def _validate(model: SliceCNN, songs: Sequence[Song], device: torch.device) -> dict[str, float]:
    """Validation slice loss, slice accuracy and voted (forced-argmax) song accuracy."""
    probs = slice_probabilities(model, [s.slices for s in songs], device=device)
    labels = [s.genre_index for s in songs]
    p_all = torch.from_numpy(np.concatenate(probs)).clamp_min(1e-12)
    y_all = torch.from_numpy(np.concatenate([np.full(len(p), g) for p, g in zip(probs, labels, strict=True)]))
    return {
        "val_loss": float(F.nll_loss(p_all.log(), y_all)),
        "val_slice_accuracy": float((p_all.argmax(1) == y_all).float().mean()),
        "val_song_accuracy": float(np.mean([p.sum(0).argmax() == g for p, g in zip(probs, labels, strict=True)])),
    }


def train_cnn(
    train_songs: Sequence[Song],
    val_songs: Sequence[Song],
    n_classes: int,
    cnn_cfg: CNNConfig,
    train_cfg: TrainConfig,
    n_mels: int,
    n_frames: int,
    *,
    default_voting: VotingConfig | None = None,
    target_accuracy: float = 0.97,
    augment: bool = False,
    weight_decay: float = 0.0,
    lr_decay: bool = True,
    device: torch.device | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train a :class:`SliceCNN` with Adam and early stopping, then choose the voting thresholds on val.

    Each epoch is scored on the validation songs (voted song accuracy, ties by slice loss); the best epoch's
    weights are kept. With ``lr_decay`` the learning rate halves after every ``patience // 2`` epochs
    without improvement; training stops after ``patience`` such epochs. ``augment`` applies
    :func:`spec_augment` to training batches (off by default: no gain measured on the demo corpus).
    With no validation songs, all epochs run, the last model is kept and ``default_voting`` is used.
    """
    if not train_songs:
        raise ValueError("no training songs")
    overlap = {s.song_id for s in train_songs} & {s.song_id for s in val_songs}
    if overlap:
        raise ValueError(f"songs on both sides of the split: {sorted(overlap)[:5]}")
    device = device or pick_device()
    torch.manual_seed(train_cfg.seed)
    gen = torch.Generator().manual_seed(train_cfg.seed)
    model = SliceCNN(n_classes, cnn_cfg, n_mels=n_mels, n_frames=n_frames).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.learning_rate, weight_decay=weight_decay)
    x_train, y_train = _stack(train_songs)
    val_labels = [s.genre_index for s in val_songs]
    log(f"training on {len(train_songs)} songs / {len(x_train)} slices; validating on {len(val_songs)} songs "
        f"/ {sum(len(s.slices) for s in val_songs)} slices; device {device}")
    history: list[dict[str, float]] = []
    best_key: tuple[float, float] | None = None
    best_state, best_epoch, since_best = None, 0, 0
    t_train = time.perf_counter()
    for epoch in range(1, train_cfg.epochs + 1):
        t0 = time.perf_counter()
        row: dict[str, float] = {"epoch": epoch}
        row.update(_train_epoch(model, opt, x_train, y_train, train_cfg.batch_size, gen, augment, device))
        if val_songs:
            row.update(_validate(model, val_songs, device))
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        log("epoch {epoch}/{n}: train loss {train_loss:.4f} slice acc {train_slice_accuracy:.3f}".format(
            n=train_cfg.epochs, **row) + (
            " | val loss {val_loss:.4f} slice acc {val_slice_accuracy:.3f} song acc {val_song_accuracy:.3f}"
            .format(**row) if val_songs else "") + f" ({row['seconds']:.1f} s)")
        if not val_songs:
            continue
        key = (row["val_song_accuracy"], -row["val_loss"])
        if best_key is None or key[0] > best_key[0] or (key[0] == best_key[0] and key[1] > best_key[1] + 1e-4):
            best_key, best_state, best_epoch, since_best = key, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            since_best += 1
            if since_best >= train_cfg.patience:
                log(f"early stop: no improvement for {train_cfg.patience} epochs; best epoch {best_epoch}")
                break
            if lr_decay and since_best % max(1, train_cfg.patience // 2) == 0:
                for group in opt.param_groups:
                    group["lr"] *= 0.5
                log(f"no improvement for {since_best} epochs: learning rate halved to {opt.param_groups[0]['lr']:.2e}")
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = len(history)
    model.eval()
    timings = {"train_s": time.perf_counter() - t_train}
    t_sel = time.perf_counter()
    if val_songs:
        probs = slice_probabilities(model, [s.slices for s in val_songs], device=device)
        voting, selection = choose_voting(probs, val_labels, target_accuracy)
        val_report = evaluate_songs(probs, val_labels, voting)
    else:
        voting = default_voting or VotingConfig()
        selection = {"target_accuracy": target_accuracy, "target_met": False, "n_val_songs": 0,
                     "tau": voting.tau, "margin": voting.margin, "note": "no validation songs: config voting"}
        val_report = {"n_songs": 0}
    timings["selection_s"] = time.perf_counter() - t_sel
    return TrainResult(
        model=model, history=history, best_epoch=best_epoch, voting=voting, selection=selection,
        val_report=val_report, train_song_ids=[s.song_id for s in train_songs],
        val_song_ids=[s.song_id for s in val_songs], timings=timings,
    )
