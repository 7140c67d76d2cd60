"""Calibrated confidence: the probability that a song's label is right, fitted on validation songs.

The vote share (the top genre's share of the summed slice softmax outputs) is not a probability of being right:
the shipped model decides at a top share of 0.35 songs that are right far more often than 35 % of the time, since
ten slices that lean the same way are stronger evidence than any one of them. The calibrated ``confidence`` of a
song pools its slices' evidence log-linearly and tempers it:

    confidence = softmax(mean over slices of log_softmax(slice logits) / T)[top genre of the votes]

with one temperature ``T`` fitted on validation songs (never test songs) by minimising the negative log-likelihood
of their true genres (temperature scaling, Guo et al. 2017, at the song level; tempering each slice before
averaging the softmax outputs cannot fix a song-level miscalibration: the mean of ten slices' probabilities stays
near a single slice's). The top genre is the vote's, so the confidence belongs to the label the song gets (or,
for an unclassified song, to the genre its forced vote would say). Its quality is measured by the expected calibration
error (:func:`expected_calibration_error`) and drawn as a reliability diagram (:func:`reliability`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

T_GRID = np.exp(np.linspace(np.log(0.01), np.log(100.0), 321))  # log-spaced temperatures tried
N_BINS = 10  # equal-width confidence bins of the reliability diagram and the ECE


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def song_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(mean over slices of log_softmax(logits) / temperature)``: ``[n_classes]``, the song's calibrated
    genre probabilities (the slices' evidence pooled log-linearly, then tempered)."""
    pooled = log_softmax(np.asarray(logits, np.float64)).mean(axis=0)
    return np.exp(log_softmax(pooled[None, :] / temperature)[0])


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling of the slice logits, as fitted by :func:`fit_temperature` (recorded in the bundle)."""

    temperature: float
    method: str = "temperature"
    n_songs: int = 0          # validation songs it was fitted on
    val_nll: float = float("nan")

    def confidence(self, logits: np.ndarray, top_index: int) -> float:
        """P(the genre ``top_index`` is right) for a song with slice ``logits`` ``[n_slices, n_classes]``."""
        return float(song_probabilities(logits, self.temperature)[top_index])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, meta: dict[str, Any]) -> Calibration:
        if meta.get("method") != "temperature":
            raise ValueError(f"unknown calibration method {meta.get('method')!r}; known: temperature")
        return cls(temperature=float(meta["temperature"]), n_songs=int(meta.get("n_songs", 0)),
                   val_nll=float(meta.get("val_nll", float("nan"))))


def song_nll(logits: Sequence[np.ndarray], labels: Sequence[int], temperature: float) -> float:
    """Mean negative log-likelihood of the true genres under :func:`song_probabilities`."""
    p = [song_probabilities(z, temperature)[y] for z, y in zip(logits, labels, strict=True)]
    return float(-np.mean(np.log(np.clip(p, 1e-12, None))))


def fit_temperature(logits: Sequence[np.ndarray], labels: Sequence[int]) -> Calibration:
    """The temperature of :data:`T_GRID` with the lowest :func:`song_nll` on these (validation) songs."""
    if not logits:
        raise ValueError("calibration needs at least one validation song")
    nll = [song_nll(logits, labels, float(t)) for t in T_GRID]
    best = int(np.argmin(nll))
    return Calibration(temperature=float(T_GRID[best]), n_songs=len(logits), val_nll=float(nll[best]))


def reliability(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """Per equal-width confidence bin (the last one closed): songs, mean confidence, share right (None if empty)."""
    conf = np.asarray(confidence, np.float64)
    ok = np.asarray(correct, bool)
    which = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = which == b
        rows.append({"low": b / n_bins, "high": (b + 1) / n_bins, "n": int(mask.sum()),
                     "confidence": float(conf[mask].mean()) if mask.any() else None,
                     "accuracy": float(ok[mask].mean()) if mask.any() else None})
    return rows


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS) -> float:
    """sum over bins of (songs in bin / songs) * |share right - mean confidence|; NaN without songs."""
    n = len(confidence)
    if n == 0:
        return float("nan")
    return float(sum(r["n"] / n * abs(r["accuracy"] - r["confidence"]) for r in reliability(confidence, correct, n_bins)
                     if r["n"]))


def vote_top(logits: np.ndarray) -> int:
    """The top genre of a song's votes (the argmax of its mean slice softmax), from its slice logits."""
    return int(np.exp(log_softmax(logits)).mean(axis=0).argmax())


def calibration_figures(calibration: Calibration, logits: Sequence[np.ndarray], labels: Sequence[int]
                        ) -> dict[str, Any]:
    """ECE and reliability diagram of ``calibration``'s confidence for these songs (their true genres ``labels``)."""
    top = [vote_top(z) for z in logits]
    conf = [calibration.confidence(z, t) for z, t in zip(logits, top, strict=True)]
    right = [t == y for t, y in zip(top, labels, strict=True)]
    return {"n_songs": len(conf), "ece": expected_calibration_error(conf, right),
            "reliability": reliability(conf, right)}
