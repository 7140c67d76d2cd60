"""genre_core.metrics against hand-computed values and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genre_core import metrics as M

TRUTH = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "b", "a", "b", "c", "c"]


def test_accuracy_and_none_predictions() -> None:
    assert M.accuracy(TRUTH, PRED) == pytest.approx(4 / 6)
    assert M.accuracy(["a", "b"], [None, "b"]) == 0.5
    assert math.isnan(M.accuracy([], []))
    with pytest.raises(ValueError):
        M.accuracy(["a"], ["a", "b"])


def test_coverage_and_accuracy_on_classified() -> None:
    classified = [True, True, False, True, False, True]
    assert M.coverage(classified) == pytest.approx(4 / 6)
    # classified items: (a,a) ok, (a,b) wrong, (b,b) ok, (c,c) ok -> 3/4
    assert M.accuracy_on_classified(TRUTH, PRED, classified) == pytest.approx(0.75)
    assert math.isnan(M.accuracy_on_classified(TRUTH, PRED, [False] * 6))


def test_confusion_matrix_rows_are_truth() -> None:
    cm = M.confusion_matrix(TRUTH, PRED, ["a", "b", "c"])
    assert cm["classes"] == ["a", "b", "c"]
    assert cm["matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_per_class_precision_recall() -> None:
    pr = M.per_class_precision_recall(TRUTH, PRED, ["a", "b", "c", "d"])
    assert pr["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "support": 3}
    assert pr["b"]["precision"] == 0.5 and pr["b"]["recall"] == 0.5
    assert pr["c"]["precision"] == 0.5 and pr["c"]["recall"] == 1.0
    assert math.isnan(pr["d"]["precision"]) and math.isnan(pr["d"]["recall"]) and pr["d"]["support"] == 0


def test_flip_counts() -> None:
    before = [True, True, False, False, True]
    after = [True, False, True, True, True]
    assert M.flip_counts(before, after) == {"wrong_to_right": 2, "right_to_wrong": 1, "both_right": 2,
                                            "both_wrong": 0}


def test_mcnemar_known_values() -> None:
    # b = 1, c = 9: p = 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024
    a = [True] * 1 + [False] * 9 + [True] * 5
    b = [False] * 1 + [True] * 9 + [True] * 5
    res = M.mcnemar_exact(a, b)
    assert (res["b"], res["c"]) == (1, 9)
    assert res["p_value"] == pytest.approx(22 / 1024)
    assert M.mcnemar_exact([True, False], [True, False])["p_value"] == 1.0  # no discordant pairs
    assert M.binomial_two_sided_p(5, 10) == 1.0


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 5), (2, 7), (3, 20), (12, 30), (40, 100), (7, 7)])
def test_binomial_p_matches_scipy(k: int, n: int) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = scipy_stats.binomtest(min(k, n - k), n, 0.5).pvalue
    assert M.binomial_two_sided_p(k, n) == pytest.approx(expected, rel=1e-12)


def test_summarize() -> None:
    decided = ["a", None, "a", "b", None, "c"]
    rep = M.summarize(TRUTH, PRED, decided, ["a", "b", "c"])
    assert rep["n_songs"] == 6
    assert rep["accuracy"] == pytest.approx(4 / 6)
    assert rep["coverage"] == pytest.approx(4 / 6)
    assert rep["accuracy_on_classified"] == 1.0
    assert rep["n_classified"] == 4
    assert rep["confusion"]["matrix"][0] == [2, 1, 0]
    assert set(rep["per_genre"]) == {"a", "b", "c"}
    assert np.isclose(rep["per_genre"]["c"]["recall"], 1.0)


def test_coverage_accuracy_curve_hand_values() -> None:
    correct = [True, False, True, True, False]
    score = [0.9, 0.8, 0.5, float("nan"), 0.3]   # the 4th item has no vote (e.g. an error row)
    curve = M.coverage_accuracy_curve(correct, score, [0.0, 0.5, 0.85, 0.95])
    assert curve["threshold"] == [0.0, 0.5, 0.85, 0.95]
    assert curve["n_decided"] == [4, 3, 1, 0]
    assert curve["coverage"] == pytest.approx([4 / 5, 3 / 5, 1 / 5, 0.0])
    assert curve["accuracy"][:3] == pytest.approx([2 / 4, 2 / 3, 1.0])  # a score exactly at t is decided
    assert math.isnan(curve["accuracy"][3])
    with pytest.raises(ValueError):
        M.coverage_accuracy_curve([True], [0.1, 0.2], [0.5])
