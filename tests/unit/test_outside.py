"""The out-of-taxonomy rule (genre_core.outside): scores, feature statistics, threshold choice, comparison."""

from __future__ import annotations

import numpy as np
import pytest

from genre_core.outside import (
    ELIGIBLE,
    SCORES,
    OutsideRule,
    ScoredSongs,
    auroc,
    choose_threshold,
    compare_scores,
    fit_feature_stats,
    fit_rule,
    song_score,
)


def test_logit_scores_rank_a_flat_song_above_a_confident_one() -> None:
    confident = np.tile([8.0, 0.0, 0.0], (5, 1))
    flat = np.tile([0.5, 0.4, 0.3], (5, 1))
    for kind in ("vote_share", "max_logit", "energy"):
        assert song_score(kind, flat) > song_score(kind, confident), kind
    assert song_score("max_logit", confident) == pytest.approx(-8.0)
    assert song_score("energy", confident) == pytest.approx(-np.log(np.exp(8.0) + 2.0))
    with pytest.raises(ValueError, match="unknown"):
        song_score("nope", flat)
    with pytest.raises(ValueError, match="needs"):
        song_score("feature_distance", flat)


def test_feature_distance_is_small_near_a_genre_and_large_far_from_all() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0, 0.0], [6.0, 0.0, 0.0, 0.0]])
    songs = [centres[k] + rng.normal(0, 1, (4, 4)) for k in (0, 1) for _ in range(30)]
    labels = [k for k in (0, 1) for _ in range(30)]
    stats = fit_feature_stats(songs, labels)
    near = song_score("feature_distance", np.zeros((4, 2)), np.tile(centres[1], (4, 1)), stats)
    between = song_score("feature_distance", np.zeros((4, 2)), np.tile([3.0, 0, 0, 0], (4, 1)), stats)
    far = song_score("feature_distance", np.zeros((4, 2)), np.tile([3.0, 8.0, -8.0, 0], (4, 1)), stats)
    assert near < between < far
    assert stats.class_means.shape == (2, 4) and stats.precision.shape == (4, 4)


def test_auroc_counts_ties_as_half() -> None:
    assert auroc([0, 1, 2], [3, 4]) == 1.0
    assert auroc([3, 4], [0, 1]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5


def test_threshold_turns_away_at_most_the_allowed_share_of_decided_songs() -> None:
    scores = np.arange(20, dtype=float)          # song i scores i
    decided = np.arange(20) % 2 == 0             # even songs are decided by the vote rule
    th = choose_threshold(scores, decided, max_coverage_drop=0.10)  # 2 of the 20 songs may lose their label
    flagged = decided & (scores > th)
    assert flagged.sum() == 2 and th == 14.0     # 18 and 16 are turned away, 14 keeps its label
    assert (decided & (scores > choose_threshold(scores, decided, 0.0))).sum() == 0


def test_comparison_picks_the_eligible_score_that_catches_most_outside_songs() -> None:
    rng = np.random.default_rng(1)
    n = 200
    inside = {"vote_share": rng.normal(0, 1, n), "max_logit": rng.normal(0, 1, n), "energy": rng.normal(0, 1, n),
              "feature_distance": rng.normal(0, 1, n)}
    outside = {"vote_share": rng.normal(9, 1, n),  # the best separation, but only a baseline
               "max_logit": rng.normal(1, 1, n), "energy": rng.normal(3, 1, n), "feature_distance": rng.normal(0, 1, n)}
    decided, right = np.ones(n, bool), np.ones(n, bool)
    chosen, th, table = compare_scores(inside, decided, right, outside, np.ones(n, bool), 0.05)
    assert chosen == "energy" and chosen in ELIGIBLE
    rows = {r["score"]: r for r in table}
    assert set(rows) == set(SCORES)
    assert rows["energy"]["threshold"] == th
    assert rows["energy"]["inside_coverage_before"] - rows["energy"]["inside_coverage"] <= 0.05 + 1e-9
    assert rows["energy"]["outside_unclassified"] > rows["max_logit"]["outside_unclassified"]
    assert rows["feature_distance"]["auroc"] == pytest.approx(0.5, abs=0.1)


def test_fit_rule_keeps_the_table_and_the_statistics_of_a_feature_rule() -> None:
    rng = np.random.default_rng(2)

    def songs(centre: float, n: int, labels: bool) -> ScoredSongs:
        emb = [rng.normal(centre, 1, (3, 6)) for _ in range(n)]
        logits = [np.tile([2.0, 0.0], (3, 1)) for _ in range(n)]  # every song decided, genre 0
        return ScoredSongs(logits, emb, [0] * n if labels else None)

    rule = fit_rule(songs(0.0, 40, True), songs(0.0, 40, True), songs(4.0, 40, False), tau=0.5, margin=0.0,
                    max_coverage_drop=0.05)
    assert isinstance(rule, OutsideRule) and rule.score == "feature_distance" and rule.stats is not None
    assert len(rule.selection["table"]) == len(SCORES) and rule.selection["n_val_outside"] == 40
    far = rule.song_score(np.zeros((3, 2)), np.full((3, 6), 4.0))
    assert rule.is_outside(far) and not rule.is_outside(rule.song_score(np.zeros((3, 2)), np.zeros((3, 6))))
