"""GAN-based re-classification of an UNCLASSIFIED song (Bae 2020), as pure functions of tensors.

The rule, for one song whose slice vote was ambiguous:

1. **Candidates.** The ``top_k`` genres of the song's vote shares ``v`` (ties to the lower index), i.e. the
   genres the CNN already hesitated between. No other genre can be chosen.
2. **Translation.** Every slice ``x`` is translated to EVERY genre ``g`` by the conditional generator,
   ``G(x, g)`` (``n_classes * n_slices`` translations, in batches of ``batch_size``), and the frozen CNN
   reads each translation (re-standardised per slice first when ``standardize``, as the CNN's inputs always
   are): :class:`TranslationReadings`.
3. **Evidence per candidate ``c``.**
   *reading* ``r_c`` = the CNN's mean probability of ``c`` over the slices translated to every genre (the
   mean over all targets ``g`` of ``P(c | G(x, g))``). A generator trained to give back the clean slice of
   the genre it is asked for (restoration training, :mod:`genre_core.training.recording_chain`) removes
   recording effects on the way; every target pulls the reading towards itself, and averaging over all
   targets cancels those pulls, so what remains is how the CNN reads the song's cleaned-up content.
   *confidence* ``conf_c`` = ``P(c | G(x, c))`` (Bae's "translate to c and ask the CNN"; kept as a
   diagnostic: a generator that fools the CNN reaches any genre, so on its own it says little).
   *cost* ``cost_c`` = the mean absolute change ``|G(x, c) - x|`` per bin (in units of the standardised
   input): a genre the song reaches with less change is more plausible.
4. **Score.** ``s_c = vote_weight * log(v_c) + log(r_c) - cost_weight * cost_c``, turned into shares over
   the candidates ``q = softmax(s)`` (so ``q`` sums to 1). ``vote_weight`` keeps part of the original
   votes (the translation then has to outweigh them), ``cost_weight`` adds the translation cost.
5. **Decision.** The best candidate is taken (status ``gan_resolved``) iff ``q_best >= threshold`` and it is
   strictly ahead of the runner-up; otherwise the song stays ``unclassified``. ``threshold``, ``vote_weight``,
   ``cost_weight`` and ``top_k`` are chosen on validation songs (never test songs), see
   :func:`genre_core.training.gan.choose_refine_params`. With ``threshold <= 1 / top_k`` every song with a
   strict winner is decided.

With the identity map as "generator", ``cost_c = 0`` and ``r_c = conf_c`` is the vote share of ``c``, so the
rule reduces to the forced argmax of the votes (for any weights): whatever the GAN stage adds over that
baseline comes from the translation. Songs the CNN classified are never passed here
(:func:`refine_unclassified` returns None for them). Nothing here does I/O or changes the models: both must
already be in eval mode.
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
class TranslationReadings:
    """The song translated to every genre, as the frozen CNN reads it (read-only float64 arrays)."""

    probs: np.ndarray   # [n_classes (target g), n_classes (read as c)]: mean over slices of P(c | G(x, g))
    cost: np.ndarray    # [n_classes (target g)]: mean |G(x, g) - x| per bin


@dataclass(frozen=True, eq=False)
class CandidateEvidence:
    """What the translation says about each candidate genre of one song (arrays ``[k]``, read-only)."""

    candidates: np.ndarray   # int64 genre indices, in vote order (best vote first)
    confidence: np.ndarray   # float64, P(c | G(x, c)): the CNN's mean probability of c on slices translated to c
    cost: np.ndarray         # float64, mean |G(x, c) - x| per bin
    vote_shares: np.ndarray  # float64, the song's vote share of each candidate
    reading: np.ndarray      # float64, mean over every target genre g of P(c | G(x, g))


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
    vote_weight: float = 0.0

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
def read_translations(
    slices: torch.Tensor | np.ndarray,
    generator: Translator,
    cnn: Classifier,
    n_classes: int,
    *,
    batch_size: int = 256,
    standardize: bool = True,
) -> TranslationReadings:
    """Step 2 of the rule: translate every slice to every genre and let the CNN read each translation."""
    slices = _as_slices(slices)
    _check_eval(cnn, "cnn")
    slices = slices.to(_device_of(generator, cnn) or slices.device)
    y = translate(slices, np.arange(n_classes), generator, batch_size)          # [C, n, 1, M, T]
    n = y.shape[1]
    cost = (y - slices.unsqueeze(0)).abs().flatten(2).mean(dim=2).mean(dim=1)  # [C]
    flat = y.reshape(n_classes * n, *y.shape[2:])
    if standardize:
        flat = standardize_slices(flat)
    probs = torch.cat([torch.softmax(cnn(flat[i:i + batch_size]).float(), dim=-1)
                       for i in range(0, n_classes * n, batch_size)]).view(n_classes, n, -1)
    if probs.shape[-1] != n_classes:
        raise ValueError(f"the CNN has {probs.shape[-1]} classes but {n_classes} genres were asked for")
    out = TranslationReadings(probs.mean(dim=1).double().cpu().numpy(), cost.double().cpu().numpy())
    out.probs.setflags(write=False)
    out.cost.setflags(write=False)
    return out


def evidence_from_readings(readings: TranslationReadings, vote_probs: torch.Tensor | np.ndarray,
                           top_k: int) -> CandidateEvidence:
    """Steps 1 and 3 of the rule: the candidates and their reading, confidence and cost."""
    shares = _as_votes(vote_probs, top_k)
    if readings.probs.shape != (len(shares), len(shares)):
        raise ValueError(f"readings are {readings.probs.shape} for {len(shares)} vote shares")
    cand = top_candidates(shares, top_k)
    arrays = [cand, readings.probs[cand, cand].astype(np.float64), readings.cost[cand].astype(np.float64),
              shares[cand].astype(np.float64), readings.probs[:, cand].mean(axis=0).astype(np.float64)]
    for a in arrays:
        a.setflags(write=False)
    return CandidateEvidence(*arrays)


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
    """Steps 1-3 of the rule (see the module docstring)."""
    shares = _as_votes(vote_probs, top_k)
    readings = read_translations(slices, generator, cnn, len(shares), batch_size=batch_size, standardize=standardize)
    return evidence_from_readings(readings, shares, top_k)


def _check_params(threshold: float, cost_weight: float, vote_weight: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    for name, w in (("cost_weight", cost_weight), ("vote_weight", vote_weight)):
        if not (np.isfinite(w) and w >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {w}")


def decide_from_evidence(evidence: CandidateEvidence, threshold: float, cost_weight: float,
                         vote_weight: float = 0.0) -> RefineDecision:
    """Steps 4-5 of the rule: score shares ``q = softmax(vote_weight log v + log r - cost_weight cost)``
    and the decision."""
    _check_params(threshold, cost_weight, vote_weight)
    q = refine_scores(evidence.reading, evidence.cost, cost_weight, evidence.vote_shares, vote_weight)
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
        vote_weight=float(vote_weight),
    )


def refine_scores(reading: np.ndarray, cost: np.ndarray, cost_weight: float,
                  vote_shares: np.ndarray | None = None, vote_weight: float = 0.0) -> np.ndarray:
    """``softmax(vote_weight log v + log r - cost_weight cost)`` over the last axis (works on ``[..., k]``);
    shares and readings are floored at 1e-12 before the log."""
    s = np.log(np.maximum(np.asarray(reading, dtype=np.float64), CONF_FLOOR)) - cost_weight * np.asarray(
        cost, dtype=np.float64)
    if vote_weight:
        if vote_shares is None:
            raise ValueError("vote_weight > 0 needs the vote shares")
        s = s + vote_weight * np.log(np.maximum(np.asarray(vote_shares, dtype=np.float64), CONF_FLOOR))
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
    vote_weight: float = 0.0,
    batch_size: int = 256,
    standardize: bool = True,
) -> RefineDecision:
    """Re-classify one unclassified song from its slices ``[n, n_mels, n_frames]`` and its vote shares
    ``[n_classes]`` (the rule is in the module docstring). Both models must be in eval mode and on one
    device (the slices are moved there); ``standardize`` re-standardises translated slices per slice before
    the CNN (use it when the features are ``per_slice``-normalised)."""
    _check_params(threshold, cost_weight, vote_weight)
    ev = candidate_evidence(slices, vote_probs, generator, cnn, top_k, batch_size=batch_size,
                            standardize=standardize)
    return decide_from_evidence(ev, threshold, cost_weight, vote_weight)


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
