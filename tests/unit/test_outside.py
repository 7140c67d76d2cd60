"""The out-of-taxonomy rule (genre_core.outside): scores, feature statistics, threshold choice, comparison."""

from __future__ import annotations

import numpy as np
import pytest

from genre_core.calibration import Calibration
from genre_core.outside import (
    CONFIDENCE_WEIGHTS,
    ELIGIBLE,
    SCORES,
    Judged,
    OutsideRule,
    ScoredSongs,
    auroc,
    choose_threshold,
    compare_scores,
    fit_feature_stats,
    fit_rule,
    fit_tag_stats,
    song_score,
    stats_from_tensors,
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
    confidence = np.full(n, 0.5)  # log-odds 0: every weight gives the same rule, and the smallest is kept
    chosen, table = compare_scores(Judged(inside, np.ones(n, bool), confidence, np.ones(n, bool)),
                                   Judged(outside, np.ones(n, bool), confidence), 0.05)
    assert chosen["score"] == "energy" and chosen["score"] in ELIGIBLE and chosen["confidence_weight"] == 0.0
    assert len(table) == len(inside) * len(CONFIDENCE_WEIGHTS)
    rows = {r["score"]: r for r in table if r["confidence_weight"] == 0.0}
    assert set(rows) == set(inside)
    assert rows["energy"]["threshold"] == chosen["threshold"]
    assert rows["energy"]["inside_coverage_before"] - rows["energy"]["inside_coverage"] <= 0.05 + 1e-9
    assert rows["energy"]["outside_unclassified"] > rows["max_logit"]["outside_unclassified"]
    assert rows["feature_distance"]["auroc"] == pytest.approx(0.5, abs=0.1)


def test_weighing_the_confidence_keeps_the_accuracy_where_the_score_alone_would_lower_it() -> None:
    # 100 songs of the taxonomy, all decided, song i scoring i / 20: the ten lowest are wrong and unsure
    # (confidence 0.6), the others right and near certain (0.999); 100 outside songs score 6 ... 10 at confidence 0.97
    i = np.arange(100)
    inside = Judged({"energy": i / 20}, np.ones(100, bool), np.where(i < 10, 0.6, 0.999), i >= 10)
    outside = Judged({"energy": np.linspace(6, 10, 100)}, np.ones(100, bool), np.full(100, 0.97))
    chosen, table = compare_scores(inside, outside, max_coverage_drop=0.05)
    alone = next(r for r in table if r["confidence_weight"] == 0.0)
    # the score alone turns away the 5 top-scoring songs, all right: 90/100 -> 85/95
    assert (alone["inside_right_decided"], alone["inside_decided"]) == (85, 95)
    assert alone["outside_unclassified"] == 1.0
    # from weight 0.75 on the unsure songs lead (i / 20 - 0.75 x 0.41 against at most 4.95 - 0.75 x 6.9): the 5
    # turned away are wrong (90/95) and every outside song is still caught; the smallest such weight wins
    assert chosen["confidence_weight"] == 0.75 and chosen["outside_unclassified"] == 1.0
    assert (chosen["inside_right_decided"], chosen["inside_decided"]) == (90, 95)
    assert chosen["undecided_threshold"] == alone["threshold"] == 4.7  # ambiguous songs: the score alone
    rule = OutsideRule("energy", chosen["threshold"], chosen["confidence_weight"])
    confident = np.tile([2.0, 0.0], (3, 1))
    assert rule.song_score(confident, None, 0.999) == pytest.approx(song_score("energy", confident)
                                                                    - 0.75 * np.log(0.999 / 0.001))
    with pytest.raises(ValueError, match="calibrated confidence"):
        rule.song_score(confident)
    assert rule.song_score(confident, None, 0.999, decided=False) == song_score("energy", confident)
    rule = OutsideRule("energy", chosen["threshold"], 0.75, chosen["undecided_threshold"])
    assert rule.is_outside(4.8, decided=False) and not rule.is_outside(4.6, decided=False)
    with pytest.raises(ValueError, match="must include 0"):
        compare_scores(inside, outside, 0.05, weights=(0.5, 1.0))
    # no row catches enough outside songs: the one catching the most is kept
    assert compare_scores(inside, outside, 0.05, min_outside=1.5)[0]["outside_unclassified"] == 1.0


def test_fit_rule_keeps_the_table_and_the_statistics_of_a_feature_rule() -> None:
    rng = np.random.default_rng(2)

    def songs(centre: float, n: int, labels: bool) -> ScoredSongs:
        emb = [rng.normal(centre, 1, (3, 6)) for _ in range(n)]
        logits = [np.tile([2.0, 0.0], (3, 1)) for _ in range(n)]  # every song decided, genre 0
        return ScoredSongs(logits, emb, [0] * n if labels else None)

    rule = fit_rule(songs(0.0, 40, True), songs(0.0, 40, True), songs(4.0, 40, False), tau=0.5, margin=0.0,
                    calibration=Calibration(1.0), max_coverage_drop=0.05)
    assert isinstance(rule, OutsideRule) and rule.score == "feature_distance" and rule.stats is not None
    assert len(rule.selection["table"]) == (len(SCORES) - 1) * len(CONFIDENCE_WEIGHTS)  # no tags
    assert rule.selection["n_val_outside"] == 40
    assert rule.confidence_weight == 0.0  # every song is right: no weight keeps more of them, the smallest wins
    far = rule.song_score(np.zeros((3, 2)), np.full((3, 6), 4.0))
    assert rule.is_outside(far) and not rule.is_outside(rule.song_score(np.zeros((3, 2)), np.zeros((3, 6))))


def test_outside_tags_score_is_the_most_unusual_outside_tag_of_the_song() -> None:
    rng = np.random.default_rng(5)
    # embedding columns 1 and 3 are the logits of two outside tags; over training songs they sit near -2 and 0
    train = [np.column_stack([rng.normal(0, 1, 4), rng.normal(-2, 0.3, 4), rng.normal(0, 1, 4),
                              rng.normal(0, 0.3, 4)]) for _ in range(50)]
    stats = fit_tag_stats(train, [1, 3])
    assert stats.mean[0] == pytest.approx(1 / (1 + np.exp(2)), abs=0.02)
    assert stats.mean[1] == pytest.approx(0.5, abs=0.02)
    usual = np.tile([9.0, -2.0, -9.0, 0.0], (4, 1))  # the other columns do not count, however extreme
    ambient = np.tile([0.0, 3.0, 0.0, 0.0], (4, 1))  # the first outside tag near certain
    assert song_score("outside_tags", np.zeros((4, 2)), usual, stats) == pytest.approx(0.0, abs=0.5)
    expected = (1 / (1 + np.exp(-3.0)) - stats.mean[0]) / stats.scale[0]
    assert song_score("outside_tags", np.zeros((4, 2)), ambient, stats) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="tag statistics"):
        song_score("outside_tags", np.zeros((4, 2)), ambient, None)
    again = stats_from_tensors("outside_tags", stats.tensors())
    assert again.score(ambient) == stats.score(ambient)


def test_fit_rule_compares_outside_tags_only_given_their_columns_and_keeps_its_statistics() -> None:
    rng = np.random.default_rng(6)

    # column 0 is an outside tag's logit: spread widely below 0 for songs of the taxonomy (probability near 0),
    # 0 for outside songs (probability 0.5). In the embedding space that is no further than the taxonomy's own
    # spread, so feature_distance cannot tell them apart; the tag's probability can
    def songs(inside: bool, n: int) -> ScoredSongs:
        tag = (lambda: rng.uniform(-10, -1)) if inside else (lambda: 0.0)
        emb = [np.column_stack([np.full(3, tag()), rng.normal(0, 1, (3, 5))]) for _ in range(n)]
        return ScoredSongs([np.tile([2.0, 0.0], (3, 1)) for _ in range(n)], emb, [0] * n if inside else None)

    train, val_in, val_out = songs(True, 40), songs(True, 40), songs(False, 40)
    rule = fit_rule(train, val_in, val_out, tau=0.5, margin=0.0, calibration=Calibration(1.0), max_coverage_drop=0.05,
                    outside_columns=[0])
    assert rule.score == "outside_tags" and list(rule.stats.columns) == [0]
    assert {r["score"] for r in rule.selection["table"]} == set(SCORES)
    assert rule.is_outside(rule.song_score(np.zeros((3, 2)), val_out.embeddings[0]))
    assert not rule.is_outside(rule.song_score(np.zeros((3, 2)), np.full((3, 6), -3.0)))
    rows = {r["score"]: r for r in rule.selection["table"] if r["confidence_weight"] == 0.0}
    assert rows["outside_tags"]["outside_unclassified"] > rows["feature_distance"]["outside_unclassified"]
    plain = fit_rule(train, val_in, val_out, tau=0.5, margin=0.0, calibration=Calibration(1.0), max_coverage_drop=0.05)
    assert "outside_tags" not in {r["score"] for r in plain.selection["table"]}
