"""Calibrated confidence (genre_core.calibration): temperature fitting, ECE and the reliability diagram."""

from __future__ import annotations

import numpy as np
import pytest

from genre_core.calibration import (
    Calibration,
    calibration_figures,
    expected_calibration_error,
    fit_temperature,
    reliability,
    song_nll,
    vote_top,
)


def _songs(rng: np.random.Generator, n: int, scale: float) -> tuple[list[np.ndarray], list[int]]:
    """Songs whose slice logits are drawn from a known model (true genre's logit +1 on average), then scaled by
    ``scale``: scale > 1 makes the votes over-confident."""
    logits, labels = [], []
    for _ in range(n):
        y = int(rng.integers(4))
        z = rng.normal(0, 1.0, (6, 4))
        z[:, y] += 1.0
        logits.append(scale * z)
        labels.append(y)
    return logits, labels


@pytest.mark.parametrize("scale", [0.3, 4.0])
def test_a_miscalibrated_model_gets_a_temperature_that_lowers_its_held_out_ece(scale: float) -> None:
    rng = np.random.default_rng(0)
    fit_logits, fit_labels = _songs(rng, 400, scale)
    cal = fit_temperature(fit_logits, fit_labels)
    assert cal.n_songs == 400 and cal.val_nll <= song_nll(fit_logits, fit_labels, 1.0)
    test_logits, test_labels = _songs(rng, 400, scale)
    raw = calibration_figures(Calibration(temperature=1.0), test_logits, test_labels)["ece"]
    fitted = calibration_figures(cal, test_logits, test_labels)
    assert fitted["ece"] < raw and fitted["ece"] < 0.08
    assert sum(b["n"] for b in fitted["reliability"]) == 400


def test_confidence_pools_the_slices_log_linearly_and_tempers_them() -> None:
    z = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    top = vote_top(z)
    assert top == 0
    t = 2.0
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    pooled = np.exp(log_p.mean(axis=0) / t)
    assert Calibration(temperature=t).confidence(z, top) == pytest.approx(pooled[0] / pooled.sum())
    # the slices' evidence is averaged: a longer song with the same slices is not surer
    one, ten = np.array([[1.5, 0.0, 0.0]]), np.tile([1.5, 0.0, 0.0], (10, 1))
    assert Calibration(temperature=0.5).confidence(ten, 0) == pytest.approx(
        Calibration(temperature=0.5).confidence(one, 0))
    assert Calibration.from_json(Calibration(temperature=t, n_songs=3).to_json()).temperature == t
    with pytest.raises(ValueError, match="unknown calibration method"):
        Calibration.from_json({"method": "isotonic"})


def test_ece_and_reliability_by_hand() -> None:
    conf = [0.95, 0.95, 0.15, 0.15]
    right = [True, False, False, False]
    bins = reliability(conf, right)
    top = bins[9]
    assert top["n"] == 2 and top["accuracy"] == 0.5 and top["confidence"] == pytest.approx(0.95)
    assert bins[1]["n"] == 2 and bins[1]["accuracy"] == 0.0
    assert bins[5]["n"] == 0 and bins[5]["accuracy"] is None
    assert expected_calibration_error(conf, right) == pytest.approx(0.5 * 0.45 + 0.5 * 0.15)
    assert reliability([1.0], [True])[9]["n"] == 1  # the last bin is closed
    assert np.isnan(expected_calibration_error([], []))
