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
from collections.abc import Callable, Iterable, Iterator, Sequence
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


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """``values`` summed over the processes of a ``torch.distributed`` group (DDP training workers); unchanged in a
    single process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


class CNNTrainLoop:
    """The slice CNN's training state and its epochs, fed by any iterator of batches: in memory
    (:func:`train_cnn`), or a Ray Data shard on each DDP worker of a Ray Train run (``jobs/train_cnn.py``), where
    every figure is summed over the workers, so that each takes the same early-stopping decisions.

    Adam; each epoch is scored on the validation songs (voted song accuracy, ties by slice loss) and the best
    epoch's weights are kept. With ``lr_decay`` the learning rate halves after every ``patience // 2`` epochs
    without improvement; training stops after ``patience`` such epochs. ``augment`` applies :func:`spec_augment`
    to training batches. The model computes in bf16 where ``cnn_cfg.precision`` says so (autocast, see
    :class:`SliceCNN`). :meth:`state_dict` holds everything a resumed run needs (tensors, numbers, strings: it
    loads with ``torch.load(weights_only=True)``).
    """

    def __init__(self, n_classes: int, cnn_cfg: CNNConfig, train_cfg: TrainConfig, n_mels: int, n_frames: int,
                 device: torch.device, *, augment: bool = False, weight_decay: float = 0.0, lr_decay: bool = True,
                 wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
                 log: Callable[[str], None] = print) -> None:
        torch.manual_seed(train_cfg.seed)
        self.cfg, self.device, self.augment, self.lr_decay, self.log = train_cfg, device, augment, lr_decay, log
        self.gen = torch.Generator().manual_seed(train_cfg.seed)
        self.model = SliceCNN(n_classes, cnn_cfg, n_mels=n_mels, n_frames=n_frames).to(device)
        self.net = wrap(self.model) if wrap is not None else self.model  # DDP on Ray Train workers
        self.opt = torch.optim.Adam(self.net.parameters(), lr=train_cfg.learning_rate, weight_decay=weight_decay)
        self.history: list[dict[str, float]] = []
        self.best_key: tuple[float, float] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch = 0
        self.since_best = 0
        self.stopped = False
        self.resumed_after: list[int] = []   # epochs after which a run was resumed from a checkpoint

    @property
    def epoch(self) -> int:
        """Epochs done."""
        return len(self.history)

    def train_epoch(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """One pass over ``batches`` of (slices ``[b, n_mels, n_frames]``, class indices); mean loss and slice
        accuracy over every worker's slices."""
        self.net.train()
        # summed on the device: reading a figure back every batch would make the host wait for the GPU
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        n = 0
        for xb, yb in batches:
            if self.augment:
                xb = spec_augment(xb.cpu(), self.gen)
            xb = xb.to(self.device, non_blocking=True)
            yb = yb.to(self.device, non_blocking=True)
            logits = self.net(xb)
            loss = F.cross_entropy(logits, yb)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            sums[0] += loss.detach().double() * len(yb)
            sums[1] += (logits.argmax(1) == yb).sum()
            n += len(yb)
        loss_sum, correct, n = all_reduce_sum([*sums.tolist(), n], self.device)
        if n == 0:
            raise ValueError("an epoch without a training slice")
        return {"train_loss": loss_sum / n, "train_slice_accuracy": correct / n}

    def validate(self, songs: Iterable[tuple[Sequence[np.ndarray], Sequence[int]]]) -> dict[str, float]:
        """Validation slice loss, slice accuracy and voted (forced-argmax) song accuracy over batches of
        (songs' slices, their class indices), summed over every worker's songs."""
        loss_sum, slice_ok, n_slices, song_ok, n_songs = 0.0, 0, 0, 0, 0
        for slices, labels in songs:
            probs = slice_probabilities(self.model, slices, device=self.device)
            for p, g in zip(probs, labels, strict=True):
                if not len(p):
                    continue
                loss_sum -= float(np.log(np.clip(p[:, g], 1e-12, None)).sum())
                slice_ok += int((p.argmax(1) == g).sum())
                n_slices += len(p)
                song_ok += int(p.sum(0).argmax() == g)
                n_songs += 1
        loss_sum, slice_ok, n_slices, song_ok, n_songs = all_reduce_sum(
            [loss_sum, slice_ok, n_slices, song_ok, n_songs], self.device)
        if n_songs == 0:
            return {}
        return {"val_loss": loss_sum / n_slices, "val_slice_accuracy": slice_ok / n_slices,
                "val_song_accuracy": song_ok / n_songs}

    def end_epoch(self, row: dict[str, float]) -> bool:
        """Record an epoch's figures (with validation ones, if any), keep the best weights, decay the learning rate;
        True when training should stop (early stopping, or the last epoch)."""
        row = {"epoch": self.epoch + 1, **row}
        self.history.append(row)
        has_val = "val_song_accuracy" in row
        self.log("epoch {epoch}/{n}: train loss {train_loss:.4f} slice acc {train_slice_accuracy:.3f}".format(
            n=self.cfg.epochs, **row) + (
            " | val loss {val_loss:.4f} slice acc {val_slice_accuracy:.3f} song acc {val_song_accuracy:.3f}"
            .format(**row) if has_val else "") + (f" ({row['seconds']:.1f} s)" if "seconds" in row else ""))
        self.stopped = self.epoch >= self.cfg.epochs
        if not has_val:
            return self.stopped
        key = (row["val_song_accuracy"], -row["val_loss"])
        best = self.best_key
        if best is None or key[0] > best[0] or (key[0] == best[0] and key[1] > best[1] + 1e-4):
            self.best_key, self.best_epoch, self.since_best = key, self.epoch, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
            return self.stopped
        self.since_best += 1
        if self.since_best >= self.cfg.patience:
            self.log(f"early stop: no improvement for {self.cfg.patience} epochs; best epoch {self.best_epoch}")
            self.stopped = True
        elif self.lr_decay and self.since_best % max(1, self.cfg.patience // 2) == 0:
            for group in self.opt.param_groups:
                group["lr"] *= 0.5
            self.log(f"no improvement for {self.since_best} epochs: learning rate halved to "
                     f"{self.opt.param_groups[0]['lr']:.2e}")
        return self.stopped

    def best_model(self) -> SliceCNN:
        """The model with the best epoch's weights (the last epoch's without validation songs), in eval mode."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        else:
            self.best_epoch = self.epoch
        return self.model.eval()

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs."""
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "best_model": self.best_state or {}, "history": self.history,
                "best_key": list(self.best_key) if self.best_key is not None else [], "best_epoch": self.best_epoch,
                "since_best": self.since_best, "stopped": self.stopped, "generator": self.gen.get_state(),
                "resumed_after": self.resumed_after}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.best_state = state["best_model"] or None
        self.history = list(state["history"])
        self.best_key = tuple(state["best_key"]) if state["best_key"] else None  # type: ignore[assignment]
        self.best_epoch, self.since_best, self.stopped = state["best_epoch"], state["since_best"], state["stopped"]
        self.gen.set_state(state["generator"])
        self.resumed_after = list(state["resumed_after"])


def _memory_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int,
                    gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    perm = torch.randperm(len(x), generator=gen)
    for i in range(0, len(perm), batch_size):
        idx = perm[i:i + batch_size]
        yield x[idx], y[idx]


def _stack(songs: Sequence[Song]) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.concatenate([np.asarray(s.slices, dtype=np.float32) for s in songs], axis=0)
    y = np.concatenate([np.full(len(s.slices), s.genre_index, dtype=np.int64) for s in songs])
    return torch.from_numpy(x), torch.from_numpy(y)


def select_voting(probs: Sequence[np.ndarray], labels: Sequence[int], target_accuracy: float,
                  default_voting: VotingConfig | None) -> tuple[VotingConfig, dict[str, Any], dict[str, Any]]:
    """(voting thresholds, selection record, validation report) from the validation songs' slice probabilities;
    the config's thresholds (``default_voting``) when there are no validation songs."""
    if len(labels):
        voting, selection = choose_voting(probs, labels, target_accuracy)
        return voting, selection, evaluate_songs(probs, labels, voting)
    voting = default_voting or VotingConfig()
    return voting, {"target_accuracy": target_accuracy, "target_met": False, "n_val_songs": 0, "tau": voting.tau,
                    "margin": voting.margin, "note": "no validation songs: config voting"}, {"n_songs": 0}


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
    """:class:`CNNTrainLoop` over songs held in memory, in this process (the benchmarks' small models; the
    train job runs the same loop on Ray Train workers over streamed slices), then the voting thresholds chosen
    on the validation songs. With no validation songs, all epochs run, the last model is kept and
    ``default_voting`` is used."""
    if not train_songs:
        raise ValueError("no training songs")
    overlap = {s.song_id for s in train_songs} & {s.song_id for s in val_songs}
    if overlap:
        raise ValueError(f"songs on both sides of the split: {sorted(overlap)[:5]}")
    device = device or pick_device()
    loop = CNNTrainLoop(n_classes, cnn_cfg, train_cfg, n_mels, n_frames, device, augment=augment,
                        weight_decay=weight_decay, lr_decay=lr_decay, log=log)
    x_train, y_train = _stack(train_songs)
    val = [([s.slices for s in val_songs], [s.genre_index for s in val_songs])] if val_songs else []
    log(f"training on {len(train_songs)} songs / {len(x_train)} slices; validating on {len(val_songs)} songs "
        f"/ {sum(len(s.slices) for s in val_songs)} slices; device {device}")
    t_train = time.perf_counter()
    while not loop.stopped:
        t0 = time.perf_counter()
        row = loop.train_epoch(_memory_batches(x_train, y_train, train_cfg.batch_size, loop.gen))
        row.update(loop.validate(val))
        row["seconds"] = time.perf_counter() - t0
        loop.end_epoch(row)
    model = loop.best_model()
    timings = {"train_s": time.perf_counter() - t_train}
    t_sel = time.perf_counter()
    probs = slice_probabilities(model, [s.slices for s in val_songs], device=device) if val_songs else []
    voting, selection, val_report = select_voting(probs, [s.genre_index for s in val_songs], target_accuracy,
                                                  default_voting)
    timings["selection_s"] = time.perf_counter() - t_sel
    return TrainResult(
        model=model, history=loop.history, best_epoch=loop.best_epoch, voting=voting, selection=selection,
        val_report=val_report, train_song_ids=[s.song_id for s in train_songs],
        val_song_ids=[s.song_id for s in val_songs], timings=timings,
    )
