"""Slice probabilities -> one song decision (classified or unclassified), as a pure function."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSIFIED = "classified"
UNCLASSIFIED = "unclassified"
ROW_SUM_ATOL = 1e-3  # a slice row must sum to 1 within this (float16/float32 softmax outputs pass)
FLOAT_TOL = 1e-9     # threshold comparisons forgive float rounding of this size


@dataclass(frozen=True, eq=False)
class VoteDecision:
    """The outcome of :func:`decide`; arrays are read-only."""

    status: str                    # "classified" | "unclassified"
    genre_index: int | None        # index of the top genre when classified, else None
    probabilities: np.ndarray      # [n_classes] float64, summed slice votes normalised to sum 1
    top_share: float               # share of the votes held by the top genre (the vote share)
    margin: float                  # top share minus second share
    n_slices: int
    timeline: np.ndarray           # [n_slices] int64, argmax genre of each slice

    @property
    def classified(self) -> bool:
        return self.status == CLASSIFIED

    @property
    def top_index(self) -> int:
        """Index of the genre with the most votes (first one on a tie), classified or not."""
        return int(np.argmax(self.probabilities))


def decide(slice_probs: np.ndarray, tau: float, margin: float) -> VoteDecision:
    """Sum the slices' softmax outputs as votes and decide the song's genre.

    Rule: the votes ``v = sum over slices of slice_probs`` are normalised to shares ``p = v / sum(v)``
    (equivalently the mean slice probability). With ``top`` the largest share and ``second`` the next one,
    the song is *classified* as ``argmax(p)`` iff ``top >= tau`` and ``top - second >= margin`` and
    ``top - second > 0``; otherwise it is *unclassified* (an exact tie is never classified, whatever the
    thresholds). Comparisons forgive 1e-9 of float rounding, so a share exactly at a threshold passes.

    ``slice_probs`` is ``[n_slices, n_classes]`` with ``n_slices >= 1`` and ``n_classes >= 2``; each row must be
    a probability vector (finite, non-negative, sums to 1 within 1e-3), else ValueError. ``tau`` and
    ``margin`` must lie in [0, 1].
    """
    probs = _validate(slice_probs, tau, margin)
    votes = probs.sum(axis=0)
    shares = votes / votes.sum()
    order = np.argsort(-shares, kind="stable")
    top, second = float(shares[order[0]]), float(shares[order[1]])
    gap = top - second
    ok = top >= tau - FLOAT_TOL and gap >= margin - FLOAT_TOL and gap > FLOAT_TOL
    timeline = probs.argmax(axis=1).astype(np.int64)
    shares.setflags(write=False)
    timeline.setflags(write=False)
    return VoteDecision(
        status=CLASSIFIED if ok else UNCLASSIFIED,
        genre_index=int(order[0]) if ok else None,
        probabilities=shares,
        top_share=top,
        margin=gap,
        n_slices=int(probs.shape[0]),
        timeline=timeline,
    )


def _validate(slice_probs: np.ndarray, tau: float, margin: float) -> np.ndarray:
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    if not 0.0 <= margin <= 1.0:
        raise ValueError(f"margin must be in [0, 1], got {margin}")
    probs = np.asarray(slice_probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"slice_probs must be [n_slices, n_classes], got shape {probs.shape}")
    if probs.shape[0] == 0:
        raise ValueError("cannot vote with zero slices")
    if probs.shape[1] < 2:
        raise ValueError(f"need at least 2 classes to vote, got {probs.shape[1]}")
    if not np.isfinite(probs).all():
        raise ValueError("slice_probs contains NaN or infinite values")
    if (probs < 0).any():
        raise ValueError(f"slice_probs has negative entries (min {probs.min():.3g}); expected softmax outputs")
    sums = probs.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_ATOL)
    if bad.size:
        raise ValueError(
            f"{bad.size} slice row(s) do not sum to 1 (e.g. row {bad[0]} sums to {sums[bad[0]]:.4g}); "
            "pass softmax probabilities, not logits"
        )
    return probs
