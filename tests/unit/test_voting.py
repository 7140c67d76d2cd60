"""genre_core.voting.decide: the vote rule, its boundaries, and input validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from genre_core.voting import VoteDecision, decide


def rows(*probs: list[float]) -> np.ndarray:
    return np.array(probs, dtype=np.float32)


def test_clear_majority_is_classified() -> None:
    d = decide(rows([0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.2, 0.7, 0.1]), tau=0.5, margin=0.2)
    assert d.status == "classified" and d.classified and d.genre_index == 0
    np.testing.assert_allclose(d.probabilities, [0.6, 0.95 / 3, 0.25 / 3], rtol=1e-6)
    assert d.probabilities.sum() == pytest.approx(1.0)
    assert d.top_share == pytest.approx(0.6)
    assert d.margin == pytest.approx(0.6 - 0.95 / 3)
    assert d.n_slices == 3
    np.testing.assert_array_equal(d.timeline, [0, 0, 1])


def test_votes_sum_probabilities_not_argmax_counts() -> None:
    # two slices narrowly prefer class 0, one strongly prefers class 1: summed votes pick class 1
    d = decide(rows([0.51, 0.49], [0.51, 0.49], [0.0, 1.0]), tau=0.5, margin=0.0)
    assert d.genre_index == 1
    np.testing.assert_array_equal(d.timeline, [0, 0, 1])


def test_single_slice() -> None:
    d = decide(rows([0.1, 0.8, 0.1]), tau=0.6, margin=0.2)
    assert d.classified and d.genre_index == 1 and d.n_slices == 1
    np.testing.assert_array_equal(d.timeline, [1])


def test_exact_tie_is_never_classified_even_with_zero_thresholds() -> None:
    d = decide(rows([0.7, 0.3], [0.3, 0.7]), tau=0.0, margin=0.0)
    assert d.status == "unclassified" and d.genre_index is None
    assert d.margin == 0.0 and d.top_share == 0.5
    assert d.top_index == 0  # first on a tie, reported but not decided


def test_three_way_tie_at_top() -> None:
    d = decide(rows([0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [0.4, 0.2, 0.4]), tau=0.0, margin=0.0)
    assert not d.classified and d.margin == pytest.approx(0.0, abs=1e-12)


def test_uniform_probabilities_are_unclassified() -> None:
    d = decide(np.full((12, 10), 0.1), tau=0.0, margin=0.0)
    assert not d.classified
    np.testing.assert_allclose(d.probabilities, 0.1)


def test_tau_boundary_is_inclusive() -> None:
    probs = np.array([[0.6, 0.4]])  # float64: 0.6 - 0.4 == 0.19999999999999996 < 0.2 without tolerance
    assert 0.6 - 0.4 < 0.2
    assert decide(probs, tau=0.6, margin=0.2).classified  # confidence == tau, margin == threshold
    assert decide(np.array([[0.7, 0.3], [0.5, 0.5], [0.6, 0.4]]), tau=0.6, margin=0.2).classified
    assert decide(probs, tau=0.6, margin=0.2).classified  # confidence == tau, margin == threshold
    assert not decide(probs, tau=0.6001, margin=0.2).classified
    assert not decide(probs, tau=0.6, margin=0.2001).classified


def test_margin_is_checked_independently_of_tau() -> None:
    probs = rows([0.5, 0.45, 0.05])
    assert decide(probs, tau=0.5, margin=0.05).classified
    d = decide(probs, tau=0.5, margin=0.1)
    assert not d.classified and d.top_share == pytest.approx(0.5) and d.margin == pytest.approx(0.05)
    assert not decide(probs, tau=0.55, margin=0.0).classified


def test_accepts_float16_and_lists() -> None:
    probs = np.array([[0.7, 0.2, 0.1]] * 4, dtype=np.float16)
    assert decide(probs, tau=0.6, margin=0.2).genre_index == 0
    assert decide([[0.2, 0.8]], tau=0.6, margin=0.2).genre_index == 1


def test_decision_is_frozen_and_read_only() -> None:
    d = decide(rows([0.9, 0.1]), tau=0.5, margin=0.1)
    assert isinstance(d, VoteDecision)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.status = "unclassified"  # type: ignore[misc]
    with pytest.raises(ValueError):
        d.probabilities[0] = 0.0
    with pytest.raises(ValueError):
        d.timeline[0] = 1


def test_input_array_is_not_modified() -> None:
    probs = rows([0.9, 0.1], [0.4, 0.6])
    before = probs.copy()
    decide(probs, tau=0.5, margin=0.1)
    np.testing.assert_array_equal(probs, before)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((0, 10)), "zero slices"),
        (np.ones(10) / 10, "n_slices, n_classes"),
        (np.ones((3, 1)), "2 classes"),
        (np.array([[1.2, -0.2]]), "negative"),
        (np.array([[0.5, 0.4]]), "sum to 1"),
        (np.array([[2.0, 1.0, 0.5]]), "sum to 1"),  # logits
        (np.array([[np.nan, 1.0]]), "NaN"),
    ],
)
def test_invalid_probabilities_raise(bad: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decide(bad, tau=0.5, margin=0.1)


@pytest.mark.parametrize("tau,margin", [(-0.1, 0.1), (1.1, 0.1), (0.5, -0.01), (0.5, 1.5)])
def test_thresholds_out_of_range_raise(tau: float, margin: float) -> None:
    with pytest.raises(ValueError):
        decide(rows([0.9, 0.1]), tau=tau, margin=margin)
