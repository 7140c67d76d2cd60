"""Training of the GAN stage's generator on PAIRS, and the choice of its refine parameters on validation songs.

A pair is one time span of one composition rendered two ways (``jobs.make_catalog --reference-soundfont``):
the **input**, the catalog song as it is (one of the training soundfonts, through the song's random recording
chain of effects), and the **target**, the same notes through the reference soundfont with no effects. Both are
taken to the frozen CNN's GAN features once (``cnn.gan_features``: musicnn's front end) and the generator ``G``
(:mod:`genre_core.models.gan`) learns to turn the first into the second. Its losses (:func:`generator_losses`),
weighted by :class:`GANLossWeights`:

- **L1** to the clean target, ``|G(f_x) - f_y|``;
- **reading**: the frozen CNN's reading of ``G(f_x)`` agrees with its reading of the clean target,
  ``KL(CNN(f_y) || CNN(G(f_x)))`` (``cnn.logits_from_gan_features``: musicnn's mid and back end and the head);
- **adversarial** (hinge): the patch discriminator cannot tell ``G(f_x)`` from clean targets;
- **identity**: a slice that is already clean stays as it is, ``|G(f_y) - f_y|``.

Each step takes a batch of whole pairs. The CNN is never trained here (its parameters get no gradient; it stays
in eval mode) and the backward pass runs only through the part of it after the GAN features (for musicnn, a
twentieth of its cost). Learning rates decay linearly to zero over the last ``1 - decay_from`` of the steps.

:class:`GANTrainLoop` holds the training state and takes its batches from any iterator: on the DDP workers of a Ray
Train run (``jobs/train_gan.py``: pairs streamed from Parquet, ``G`` and ``D`` wrapped, a checkpoint of
:meth:`GANTrainLoop.state_dict` every few steps), or from pairs held in memory (:func:`train_gan`, deterministic
on CPU for a given seed).

:func:`choose_refine_params` picks the rule's ``gan_weight`` and ``threshold`` (:mod:`genre_core.refine`) on
validation songs; test songs are never seen here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genre_core.config import VotingConfig
from genre_core.models.gan import GANModelConfig, Generator, PatchDiscriminator
from genre_core.refine import GANReadable, RefineParams, decide, vote_shares
from genre_core.training.cnn import all_reduce_sum
from genre_core.voting import decide as vote_decide

GAN_WEIGHTS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))                     # 0, 0.1 .. 1
THRESHOLDS: tuple[float, ...] = (0.0,) + tuple(round(0.3 + 0.05 * i, 2) for i in range(13))      # 0, .3 .. .9


@dataclass(frozen=True)
class GANLossWeights:
    l1: float = 1.0
    reading: float = 1.0
    adversarial: float = 0.1
    identity: float = 1.0


@dataclass(frozen=True)
class GANTrainConfig:
    """Optimisation settings (a step: G, the CNN's back part forward and backward, D)."""

    seed: int = 0
    steps: int = 1500
    batch_size: int = 16
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    decay_from: float = 0.5        # fraction of the steps after which the learning rates decay linearly to 0
    max_minutes: float | None = None  # stop early after this wall time (the steps done are recorded)
    log_every: int = 100
    loss_weights: GANLossWeights = field(default_factory=GANLossWeights)


@dataclass
class Pairs:
    """Aligned training pairs of GAN features: ``inputs`` and ``targets`` ``[N, C, n_frames]`` (any float dtype;
    float16 halves the memory of musicnn's 561 x 187 features, and batches are computed in float32)."""

    inputs: torch.Tensor
    targets: torch.Tensor


@dataclass
class GANTrainResult:
    generator: Generator
    discriminator: PatchDiscriminator
    history: list[dict[str, float]]
    timings: dict[str, float]
    steps_done: int


def discriminator_loss(d: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss on clean targets vs (detached) generator outputs."""
    return F.relu(1.0 - d(real)).mean() + F.relu(1.0 + d(fake.detach())).mean()


def generator_losses(g: torch.nn.Module, d: torch.nn.Module, cnn: GANReadable, x: torch.Tensor, y: torch.Tensor,
                     w: GANLossWeights) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The generator's losses on input features ``x`` and clean target features ``y``; returns (losses with
    ``total``, ``G(x)``). ``g`` and ``d`` may be wrapped (DistributedDataParallel): only their forward is called."""
    with torch.no_grad():
        target_probs = torch.softmax(cnn.logits_from_gan_features(y).float(), dim=-1)
    fake = g(x)
    logits = cnn.logits_from_gan_features(fake).float()
    reading = F.kl_div(F.log_softmax(logits, dim=-1), target_probs, reduction="batchmean")
    l1 = (fake - y).abs().mean()
    adv = -d(fake).mean()
    identity = (g(y) - y).abs().mean()
    total = w.l1 * l1 + w.reading * reading + w.adversarial * adv + w.identity * identity
    agree = (logits.argmax(1) == target_probs.argmax(1)).float().mean()
    return {"total": total, "l1": l1, "reading": reading, "adv": adv, "identity": identity,
            "agree": agree.detach()}, fake


def _lr_factor(step: int, cfg: GANTrainConfig) -> float:
    start = int(cfg.decay_from * cfg.steps)
    if step < start or cfg.steps <= start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / (cfg.steps - start))


@contextlib.contextmanager
def frozen(cnn: torch.nn.Module) -> Iterator[torch.device]:
    """``cnn`` as a frozen reader for training, on its device: no parameter takes a gradient (given back as they
    were on leaving), and ``eval()`` again, which drops tensors a model cached under ``torch.inference_mode``
    (musicnn's fast-path weights) that autograd refuses to save for the backward pass through it."""
    if cnn.training:
        raise ValueError("the CNN must be in eval mode (it is frozen)")
    flags = [p.requires_grad for p in cnn.parameters()]
    for p in cnn.parameters():
        p.requires_grad_(False)
    cnn.eval()
    try:
        yield next(cnn.parameters()).device
    finally:
        for p, flag in zip(cnn.parameters(), flags, strict=True):
            p.requires_grad_(flag)


FIGURES = ("total", "l1", "reading", "agree", "adv", "identity", "d")  # per-step figures of the history


class GANTrainLoop:
    """``G`` and ``D``, their optimisers and the steps done, fed by any endless iterator of (input, target) feature
    batches: drawn from pairs in memory (:func:`train_gan`), or a Ray Data shard on each DDP worker of a Ray Train
    run (``jobs/train_gan.py``), where ``wrap`` wraps ``G`` and ``D`` (DistributedDataParallel) and the history's
    figures are averaged over the workers.

    ``cnn`` is the frozen reader (inside :func:`frozen`, on ``device``); it is never wrapped nor trained. A step:
    ``G``'s losses (:func:`generator_losses`) and one Adam step of ``G``, then one of ``D``
    (:func:`discriminator_loss`). :meth:`state_dict` holds everything a resumed run needs (tensors, numbers,
    strings: it loads with ``torch.load(weights_only=True)``).
    """

    def __init__(self, cnn: torch.nn.Module, n_features: int, model_cfg: GANModelConfig, train_cfg: GANTrainConfig,
                 device: torch.device, *, wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
                 log: Callable[[str], None] = print) -> None:
        torch.manual_seed(train_cfg.seed)
        self.cnn, self.cfg, self.device, self.log = cnn, train_cfg, device, log
        self.g = Generator(model_cfg, n_features=n_features).to(device)
        self.d = PatchDiscriminator(model_cfg, n_features=n_features).to(device)
        self.bf16 = cnn.bf16_on(device)  # G and D compute as the frozen CNN does: bf16 autocast where supported
        self.g_net = wrap(self.g) if wrap is not None else self.g  # DDP on Ray Train workers
        self.d_net = wrap(self.d) if wrap is not None else self.d
        betas = (train_cfg.beta1, train_cfg.beta2)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=train_cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=train_cfg.lr_d, betas=betas)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.stopped = False
        self.train_s = 0.0                   # seconds of training, over every run that resumed this one
        self.resumed_at: list[int] = []      # steps at which a run was resumed from a checkpoint
        # summed on the device since the last history row: reading a figure back every step would make the host
        # wait for the GPU
        self._sums = torch.zeros(len(FIGURES), dtype=torch.float64, device=device)
        self._since = 0                      # steps summed in _sums

    def run(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], until: int) -> None:
        """Train on ``batches`` until ``until`` steps are done (at most ``cfg.steps``), or until ``cfg.max_minutes``
        of training have passed (then :attr:`stopped`, as after the last step)."""
        until = min(until, self.cfg.steps)
        t0, before = time.perf_counter(), self.train_s
        self.g_net.train()
        self.d_net.train()
        while self.step < until and not self.stopped:
            x, y = next(batches)
            self._step(x.to(self.device, non_blocking=True).float(), y.to(self.device, non_blocking=True).float())
            self.train_s = before + time.perf_counter() - t0
            if self.step >= self.cfg.steps:
                self.stopped = True
            elif self.cfg.max_minutes is not None and _on_any_worker(self.train_s > 60 * self.cfg.max_minutes,
                                                                        self.device):
                self.log(f"stopping after {self.step} steps: --max-minutes {self.cfg.max_minutes} reached")
                self.stopped = True
            if self.stopped or self.step % self.cfg.log_every == 0:
                self._history_row()

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        for opt, base in ((self.opt_g, self.cfg.lr_g), (self.opt_d, self.cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * _lr_factor(self.step, self.cfg)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            losses, fake = generator_losses(self.g_net, self.d_net, self.cnn, x, y, self.cfg.loss_weights)
        self.opt_g.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.opt_g.step()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            losses["d"] = discriminator_loss(self.d_net, y, fake)
        self.opt_d.zero_grad(set_to_none=True)
        losses["d"].backward()
        self.opt_d.step()
        self._sums += torch.stack([losses[k].detach().double() for k in FIGURES])
        self._since += 1
        self.step += 1

    def _history_row(self) -> None:
        world = torch.distributed.get_world_size() if _distributed() else 1
        means = [v / (world * self._since) for v in all_reduce_sum(self._sums.tolist(), self.device)]
        row = {"step": self.step, "seconds": self.train_s, **dict(zip(FIGURES, means, strict=True))}
        self.history.append(row)
        self._sums.zero_()
        self._since = 0
        self.log(f"step {self.step}/{self.cfg.steps} ({row['seconds']:.0f} s): " + ", ".join(
            f"{k} {row[k]:.4f}" for k in ("l1", "reading", "agree", "adv", "identity", "d")))

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs."""
        return {"generator": self.g.state_dict(), "discriminator": self.d.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "step": self.step,
                "history": self.history, "stopped": self.stopped, "train_s": self.train_s,
                "resumed_at": self.resumed_at, "sums": self._sums.tolist(), "since": self._since}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.g.load_state_dict(state["generator"])
        self.d.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.stopped, self.train_s = int(state["step"]), bool(state["stopped"]), float(state["train_s"])
        self.history, self.resumed_at = list(state["history"]), list(state["resumed_at"])
        self._sums = torch.tensor(state["sums"], dtype=torch.float64, device=self.device)
        self._since = int(state["since"])


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _on_any_worker(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on any DDP worker (so that every worker stops at the same step)."""
    return all_reduce_sum([float(flag)], device)[0] > 0


def memory_batches(pairs: Pairs, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches of ``batch_size`` pairs drawn at random (with replacement across batches) from ``pairs``."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(len(pairs.inputs), (batch_size,), generator=gen)
        yield pairs.inputs[idx], pairs.targets[idx]


def train_gan(pairs: Pairs, cnn: torch.nn.Module, model_cfg: GANModelConfig, train_cfg: GANTrainConfig, *,
              log: Callable[[str], None] = print) -> GANTrainResult:
    """:class:`GANTrainLoop` on ``pairs`` held in memory, in this process, with the frozen ``cnn`` (eval mode, on
    the device to train on); the train job runs the same loop on Ray Train workers over streamed pairs."""
    n = len(pairs.inputs)
    if n == 0:
        raise ValueError("no training pairs")
    if pairs.inputs.shape != pairs.targets.shape:
        raise ValueError(f"pairs disagree: inputs {list(pairs.inputs.shape)}, targets {list(pairs.targets.shape)}")
    with frozen(cnn) as device:
        loop = GANTrainLoop(cnn, pairs.inputs.shape[1], model_cfg, train_cfg, device, log=log)
        loop.run(memory_batches(pairs, train_cfg.batch_size, train_cfg.seed), until=train_cfg.steps)
    loop.g.eval()
    loop.d.eval()
    return GANTrainResult(loop.g, loop.d, loop.history, {"train_s": loop.train_s,
                                                         "s_per_step": loop.train_s / max(loop.step, 1)}, loop.step)


# ---- the refine parameters, on validation songs ------------------------------------------------------------

def refine_tuning_set(probs: Sequence[np.ndarray], voting: VotingConfig, min_songs: int = 40) -> list[int]:
    """Validation songs to tune the rule on: every one the vote leaves unclassified, topped up with the most
    ambiguous classified ones (smallest top share) to ``min_songs``."""
    votes = [p.mean(axis=0) for p in probs]
    decisions = [vote_decide(p, voting.tau, voting.margin) for p in probs]
    chosen = [i for i, dec in enumerate(decisions) if dec.status == "unclassified"]
    if len(chosen) < min_songs:
        rest = sorted((i for i in range(len(votes)) if i not in set(chosen)), key=lambda i: float(np.max(votes[i])))
        chosen += rest[: min_songs - len(chosen)]
    return sorted(chosen)


def choose_refine_params(cnn_votes: Sequence[np.ndarray], gan_votes: Sequence[np.ndarray], labels: Sequence[int],
                         wrong_penalty: float = 1.0) -> tuple[RefineParams, dict[str, Any]]:
    """``gan_weight``: the highest forced accuracy of the combined votes on these validation songs (ties to the
    smaller weight: the original votes are kept where the translation adds nothing); then ``threshold``: the
    most ``right - wrong_penalty * wrong`` decisions with that weight (ties to the lower threshold)."""
    if not (len(cnn_votes) == len(gan_votes) == len(labels)) or not labels:
        raise ValueError("choose_refine_params needs the same (non-zero) number of vote rows and labels")
    y = np.asarray(labels)
    forced = {}
    for w in GAN_WEIGHTS:
        pred = [decide(v, g, RefineParams(w, 0.0)).best_index for v, g in zip(cnn_votes, gan_votes, strict=True)]
        forced[w] = float(np.mean(np.asarray(pred) == y))
    weight = max(GAN_WEIGHTS, key=lambda w: (forced[w], -w))
    scores = {}
    for th in THRESHOLDS:
        dec = [decide(v, g, RefineParams(weight, th)) for v, g in zip(cnn_votes, gan_votes, strict=True)]
        right = int(sum(d.genre_index == t for d, t in zip(dec, y, strict=True)))
        wrong = int(sum(d.genre_index is not None and d.genre_index != t for d, t in zip(dec, y, strict=True)))
        scores[th] = (right - wrong_penalty * wrong, right, wrong)
    threshold = max(THRESHOLDS, key=lambda th: (scores[th][0], -th))
    base = float(np.mean([int(np.argmax(vote_shares(v))) == t for v, t in zip(cnn_votes, y, strict=True)]))
    selection = {"n_songs": len(y), "forced_vote_accuracy": base,
                 "forced_accuracy_by_weight": {str(k): v for k, v in forced.items()},
                 "threshold_scores": {str(k): list(v) for k, v in scores.items()}, "wrong_penalty": wrong_penalty,
                 "summary": f"{len(y)} validation songs: forced vote {base:.3f}, combined (w={weight}) "
                            f"{forced[weight]:.3f}; threshold {threshold}: {scores[threshold][1]} right, "
                            f"{scores[threshold][2]} wrong"}
    return RefineParams(weight, threshold), selection
