"""Evaluation metrics over songs: accuracy, coverage, confusion, per-genre precision/recall, McNemar, flips.

Predictions and truths are sequences of hashable labels (genre names or indices). A prediction of ``None``
(e.g. an error row) never equals a truth.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np


def _pairs(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> tuple[list, list]:
    t, p = list(y_true), list(y_pred)
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} items but y_pred has {len(p)}")
    return t, p


def correct_mask(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> np.ndarray:
    """Boolean array: prediction equals truth (``None`` predictions are wrong)."""
    t, p = _pairs(y_true, y_pred)
    return np.array([pi is not None and pi == ti for ti, pi in zip(t, p, strict=True)], dtype=bool)


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """Fraction of items predicted correctly (nan when empty)."""
    ok = correct_mask(y_true, y_pred)
    return float(ok.mean()) if ok.size else float("nan")


def coverage(classified: Sequence[bool]) -> float:
    """Fraction of items that received a decision (nan when empty)."""
    c = np.asarray(classified, dtype=bool)
    return float(c.mean()) if c.size else float("nan")


def accuracy_on_classified(
    y_true: Sequence[Hashable], y_pred: Sequence[Hashable], classified: Sequence[bool]
) -> float:
    """Accuracy over the items with a decision only (nan when none was decided)."""
    ok = correct_mask(y_true, y_pred)
    c = np.asarray(classified, dtype=bool)
    if c.shape != ok.shape:
        raise ValueError("classified mask must have one entry per item")
    return float(ok[c].mean()) if c.any() else float("nan")


def confusion_matrix(
    y_true: Sequence[Hashable], y_pred: Sequence[Hashable], classes: Sequence[Hashable]
) -> dict[str, Any]:
    """``{"classes": [...], "matrix": rows = truth, columns = prediction}``; unknown labels are skipped."""
    t, p = _pairs(y_true, y_pred)
    index = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for ti, pi in zip(t, p, strict=True):
        if ti in index and pi in index:
            m[index[ti], index[pi]] += 1
    return {"classes": list(classes), "matrix": m.tolist()}


def per_class_precision_recall(
    y_true: Sequence[Hashable], y_pred: Sequence[Hashable], classes: Sequence[Hashable]
) -> dict[Hashable, dict[str, float]]:
    """Per class: precision, recall (nan when undefined) and support (number of true items)."""
    t, p = _pairs(y_true, y_pred)
    out: dict[Hashable, dict[str, float]] = {}
    for c in classes:
        tp = sum(1 for ti, pi in zip(t, p, strict=True) if ti == c and pi == c)
        n_pred = sum(1 for pi in p if pi == c)
        n_true = sum(1 for ti in t if ti == c)
        out[c] = {
            "precision": tp / n_pred if n_pred else float("nan"),
            "recall": tp / n_true if n_true else float("nan"),
            "support": n_true,
        }
    return out


def coverage_accuracy_curve(
    correct: Sequence[bool], score: Sequence[float], thresholds: Sequence[float]
) -> dict[str, list[float]]:
    """Coverage and accuracy when only items with ``score >= t`` are decided, for every threshold ``t``.

    ``correct[i]`` says whether item i's prediction is right; ``score[i]`` is its decision score (e.g. the top
    vote share), NaN for an item that has none (it is never decided). Coverage is over all items; accuracy
    is over the decided ones (NaN where none is). Returns ``{"threshold", "coverage", "accuracy",
    "n_decided"}`` lists aligned to ``thresholds``.
    """
    ok = np.asarray(correct, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    if ok.shape != s.shape:
        raise ValueError(f"correct has {ok.size} items but score has {s.size}")
    out: dict[str, list[float]] = {"threshold": [], "coverage": [], "accuracy": [], "n_decided": []}
    for t in thresholds:
        decided = s >= float(t) - 1e-9  # NaN scores compare False: never decided
        out["threshold"].append(float(t))
        out["coverage"].append(float(decided.mean()) if ok.size else float("nan"))
        out["accuracy"].append(float(ok[decided].mean()) if decided.any() else float("nan"))
        out["n_decided"].append(int(decided.sum()))
    return out


def flip_counts(correct_before: Sequence[bool], correct_after: Sequence[bool]) -> dict[str, int]:
    """Paired outcome counts between two systems on the same items."""
    a = np.asarray(correct_before, dtype=bool)
    b = np.asarray(correct_after, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("paired correctness arrays differ in length")
    return {
        "wrong_to_right": int((~a & b).sum()),
        "right_to_wrong": int((a & ~b).sum()),
        "both_right": int((a & b).sum()),
        "both_wrong": int((~a & ~b).sum()),
    }


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair-coin trials (doubling the smaller tail)."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return float(min(1.0, 2.0 * tail))


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, float]:
    """Exact McNemar test of two classifiers on the same items.

    ``b`` = A right and B wrong, ``c`` = A wrong and B right; under H0 ``b ~ Binomial(b + c, 1/2)``.
    Returns ``{"b", "c", "p_value"}``.
    """
    f = flip_counts(correct_a, correct_b)
    b, c = f["right_to_wrong"], f["wrong_to_right"]
    return {"b": b, "c": c, "p_value": binomial_two_sided_p(b, b + c)}


def summarize(
    y_true: Sequence[Hashable],
    forced_pred: Sequence[Hashable],
    decided_pred: Sequence[Hashable | None],
    classes: Sequence[Hashable],
) -> dict[str, Any]:
    """The standard song-level report.

    ``forced_pred``: argmax over the vote shares for every song (None where there is no vote, e.g. errors);
    ``decided_pred``: the genre actually assigned (None when unclassified or error).
    """
    t, forced = _pairs(y_true, forced_pred)
    _, decided = _pairs(y_true, decided_pred)
    classified = [d is not None for d in decided]
    return {
        "n_songs": len(t),
        "accuracy": accuracy(t, forced),
        "coverage": coverage(classified),
        "accuracy_on_classified": accuracy_on_classified(t, decided, classified),
        "n_classified": int(sum(classified)),
        "confusion": confusion_matrix(t, forced, classes),
        "per_genre": {str(k): v for k, v in per_class_precision_recall(t, forced, classes).items()},
    }
