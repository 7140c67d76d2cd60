"""GAN-based re-classification of an UNCLASSIFIED song (Bae 2020), as pure functions of tensors.

The rule, for one song whose slice vote was ambiguous:

1. **Candidates.** The ``top_k`` genres of the song's vote shares (ties to the lower index), i.e. the genres
   the CNN already hesitated between. No other genre can be chosen.
2. **Translation.** Every slice ``x`` is translated to every candidate ``c`` by the conditional generator:
   ``y = G(x, c)`` (all ``k * n_slices`` translations in one batch, chunked by ``batch_size``).
3. **Evidence per candidate.**
   *confidence* ``conf_c`` = the frozen CNN's mean probability of ``c`` over the slices translated to ``c``
   (``y`` is re-standardised per slice first when ``standardize``, as the CNN's inputs always are);
   *cost* ``cost_c`` = the mean absolute change ``|G(x, c) - x|`` per bin, averaged over the slices (in units
   of the standardised input). A generator trained with an identity loss changes a slice little when it
   already belongs to ``c`` and a lot when it must be rewritten into ``c``; a genre that the song reaches
   with less change is more plausible.
4. **Score.** ``s_c = log(conf_c) - cost_weight * cost_c``, turned into shares over the candidates
   ``q = softmax(s)`` (so ``q`` sums to 1; ``cost_weight = 0`` trusts the CNN alone, a large weight trusts
   the cost alone).
5. **Decision.** The best candidate is taken (status ``gan_resolved``) iff ``q_best >= threshold`` and it is
   strictly ahead of the runner-up; otherwise the song stays ``unclassified``. ``threshold``, ``cost_weight``
   and ``top_k`` are chosen on validation songs (never test songs), see
   :func:`genre_core.training.gan.choose_refine_params`. With ``threshold <= 1 / top_k`` every song with a
   strict winner is decided.

With the identity map as "generator", ``cost_c = 0`` and ``conf_c`` is the vote share of ``c``, so the rule
reduces to the forced argmax of the votes: whatever the GAN stage adds over that baseline comes from the
translation. Songs the CNN classified are never passed here (:func:`refine_unclassified` returns None for
them). Nothing here does I/O or changes the models: both must already be in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from genre_core.schema import STATUS_GAN_RESOLVED, STATUS_UNCLASSIFIED

FLOAT_TOL = 1e-9
CONF_FLOOR = 1e-12   # log(conf) is floored here, so a zero confidence is a finite, very low score
NORM_EPS = 1e-5      # as in genre_core.features per-slice standardisation

Translator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B,1,M,T], genres [B]) -> [B,1,M,T]
Classifier = Callable[[torch.Tensor], torch.Tensor]                # x [B,1,M,T] -> logits [B, C]


@dataclass(frozen=True, eq=False)
class CandidateEvidence:
    """What the translation says about each candidate genre of one song (arrays ``[k]``, read-only)."""

    candidates: np.ndarray   # int64 genre indices, in vote order (best vote first)
    confidence: np.ndarray   # float64, CNN's mean probability of c on the slices translated to c
    cost: np.ndarray         # float64, mean |G(x, c) - x| per bin
    vote_shares: np.ndarray  # float64, the song's vote share of each candidate (for reference)


@dataclass(frozen=True, eq=False)
class RefineDecision:
    """The outcome of :func:`refine` for one unclassified song."""

    status: str                 # "gan_resolved" | "unclassified"
    genre_index: int | None     # the chosen genre when resolved, else None
    best_index: int             # the best-scoring candidate, decided or not
    confidence: float           # q of the best candidate (share of the refine score)
    evidence: CandidateEvidence
    scores: np.ndarray          # [k] float64 q shares over the candidates (sum to 1)
    threshold: float
    cost_weight: float

    @property
    def resolved(self) -> bool:
        return self.status == STATUS_GAN_RESOLVED


def _as_slices(slices: torch.Tensor | np.ndarray) -> torch.Tensor:
    if not isinstance(slices, torch.Tensor):
        slices = torch.as_tensor(np.asarray(slices, dtype=np.float32))
    if slices.dim() == 3:
        slices = slices.unsqueeze(1)
    if slices.dim() != 4 or slices.shape[1] != 1:
        raise ValueError(f"slices must be [n, n_mels, n_frames] or [n, 1, n_mels, n_frames], got {list(slices.shape)}")
    if slices.shape[0] == 0:
        raise ValueError("cannot refine a song with zero slices")
    if not bool(torch.isfinite(slices).all()):
        raise ValueError("slices contain NaN or infinite values")
    return slices.float()


def _as_votes(vote_probs: torch.Tensor | np.ndarray, top_k: int) -> np.ndarray:
    if isinstance(vote_probs, torch.Tensor):
        vote_probs = vote_probs.detach().cpu().numpy()
    votes = np.asarray(vote_probs, dtype=np.float64)
    if votes.ndim != 1 or votes.shape[0] < 2:
        raise ValueError(f"vote_probs must be [n_classes] with n_classes >= 2, got shape {votes.shape}")
    if not np.isfinite(votes).all() or (votes < 0).any() or votes.sum() <= 0:
        raise ValueError("vote_probs must be finite, non-negative and not all zero")
    if not 1 <= top_k <= votes.shape[0]:
        raise ValueError(f"top_k must be in [1, {votes.shape[0]}], got {top_k}")
    return votes / votes.sum()


def _device_of(*models: object) -> torch.device | None:
    """The device of the first model with parameters or buffers (None for plain callables)."""
    for m in models:
        if isinstance(m, torch.nn.Module):
            for t in (*m.parameters(), *m.buffers()):
                return t.device
    return None


def _check_eval(model: object, name: str) -> None:
    if getattr(model, "training", False):
        raise ValueError(f"{name} is in training mode; call .eval() first (refine never changes the models)")


def top_candidates(vote_probs: np.ndarray, top_k: int) -> np.ndarray:
    """Indices of the ``top_k`` largest vote shares, best first, ties to the lower index."""
    return np.argsort(-np.asarray(vote_probs, dtype=np.float64), kind="stable")[:top_k].astype(np.int64)


def standardize_slices(x: torch.Tensor) -> torch.Tensor:
    """Per-slice standardisation (mean 0, std 1 over each slice), as genre_core.features does it."""
    flat = x.flatten(1)
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, unbiased=False, keepdim=True)
    return ((flat - mean) / (std + NORM_EPS)).view_as(x)


@torch.inference_mode()
def translate(slices: torch.Tensor | np.ndarray, candidates: np.ndarray, generator: Translator,
              batch_size: int = 256) -> torch.Tensor:
    """``G(x, c)`` for every slice and candidate: ``[k, n, 1, n_mels, n_frames]`` (on the slices' device)."""
    slices = _as_slices(slices)
    _check_eval(generator, "generator")
    slices = slices.to(_device_of(generator) or slices.device)
    n, k = slices.shape[0], len(candidates)
    x = slices.unsqueeze(0).expand(k, *slices.shape).reshape(k * n, *slices.shape[1:])
    c = torch.as_tensor(np.repeat(np.asarray(candidates, dtype=np.int64), n), device=slices.device)
    out = torch.cat([generator(x[i:i + batch_size], c[i:i + batch_size]) for i in range(0, k * n, batch_size)])
    return out.view(k, n, *slices.shape[1:])


@torch.inference_mode()
def candidate_evidence(
    slices: torch.Tensor | np.ndarray,
    vote_probs: torch.Tensor | np.ndarray,
    generator: Translator,
    cnn: Classifier,
    top_k: int,
    *,
    batch_size: int = 256,
    standardize: bool = True,
) -> CandidateEvidence:
    """Steps 1-3 of the rule (see the module docstring): candidates, confidence and cost per candidate."""
    slices, shares = _as_slices(slices), _as_votes(vote_probs, top_k)
    _check_eval(cnn, "cnn")
    slices = slices.to(_device_of(generator, cnn) or slices.device)
    cand = top_candidates(shares, top_k)
    y = translate(slices, cand, generator, batch_size)                      # [k, n, 1, M, T]
    k, n = y.shape[:2]
    cost = (y - slices.unsqueeze(0)).abs().flatten(2).mean(dim=2).mean(dim=1)  # [k]
    flat = y.reshape(k * n, *y.shape[2:])
    if standardize:
        flat = standardize_slices(flat)
    probs = torch.cat([torch.softmax(cnn(flat[i:i + batch_size]).float(), dim=-1)
                       for i in range(0, k * n, batch_size)]).view(k, n, -1)
    if probs.shape[-1] != len(shares):
        raise ValueError(f"the CNN has {probs.shape[-1]} classes but vote_probs has {len(shares)}")
    idx = torch.as_tensor(cand, device=probs.device)
    conf = probs[torch.arange(k, device=probs.device), :, idx].mean(dim=1)  # P(c | G(x, c)), mean over slices
    arrays = [cand, conf.double().cpu().numpy(), cost.double().cpu().numpy(), shares[cand].astype(np.float64)]
    for a in arrays:
        a.setflags(write=False)
    return CandidateEvidence(*arrays)


def decide_from_evidence(evidence: CandidateEvidence, threshold: float, cost_weight: float) -> RefineDecision:
    """Steps 4-5 of the rule: score shares ``q = softmax(log conf - cost_weight * cost)`` and the decision."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if not (np.isfinite(cost_weight) and cost_weight >= 0):
        raise ValueError(f"cost_weight must be finite and >= 0, got {cost_weight}")
    q = refine_scores(evidence.confidence, evidence.cost, cost_weight)
    order = np.argsort(-q, kind="stable")
    best = int(order[0])
    top = float(q[best])
    ahead = len(q) == 1 or top - float(q[order[1]]) > FLOAT_TOL
    ok = ahead and top >= threshold - FLOAT_TOL
    q.setflags(write=False)
    return RefineDecision(
        status=STATUS_GAN_RESOLVED if ok else STATUS_UNCLASSIFIED,
        genre_index=int(evidence.candidates[best]) if ok else None,
        best_index=int(evidence.candidates[best]),
        confidence=top, evidence=evidence, scores=q, threshold=float(threshold), cost_weight=float(cost_weight),
    )


def refine_scores(confidence: np.ndarray, cost: np.ndarray, cost_weight: float) -> np.ndarray:
    """``softmax(log(max(conf, 1e-12)) - cost_weight * cost)`` over the last axis (works on ``[..., k]``)."""
    s = np.log(np.maximum(np.asarray(confidence, dtype=np.float64), CONF_FLOOR)) - cost_weight * np.asarray(
        cost, dtype=np.float64)
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def refine(
    slices: torch.Tensor | np.ndarray,
    vote_probs: torch.Tensor | np.ndarray,
    generator: Translator,
    cnn: Classifier,
    top_k: int,
    threshold: float,
    cost_weight: float,
    *,
    batch_size: int = 256,
    standardize: bool = True,
) -> RefineDecision:
    """Re-classify one unclassified song from its slices ``[n, n_mels, n_frames]`` and its vote shares
    ``[n_classes]`` (the rule is in the module docstring). Both models must be in eval mode and on one
    device (the slices are moved there); ``standardize`` re-standardises translated slices per slice before
    the CNN (use it when the features are ``per_slice``-normalised)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if not (np.isfinite(cost_weight) and cost_weight >= 0):
        raise ValueError(f"cost_weight must be finite and >= 0, got {cost_weight}")
    ev = candidate_evidence(slices, vote_probs, generator, cnn, top_k, batch_size=batch_size,
                            standardize=standardize)
    return decide_from_evidence(ev, threshold, cost_weight)


def refine_unclassified(
    status: str,
    slices: torch.Tensor | np.ndarray,
    vote_probs: torch.Tensor | np.ndarray,
    generator: Translator,
    cnn: Classifier,
    top_k: int,
    threshold: float,
    cost_weight: float,
    **kwargs: object,
) -> RefineDecision | None:
    """:func:`refine` for a song whose vote status is ``"unclassified"``; None (nothing to change) otherwise,
    so a song the CNN classified, or an error row, is never touched by this stage."""
    if status != STATUS_UNCLASSIFIED:
        return None
    return refine(slices, vote_probs, generator, cnn, top_k, threshold, cost_weight, **kwargs)  # type: ignore[arg-type]
