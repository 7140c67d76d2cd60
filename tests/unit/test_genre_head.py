"""The musicnn genre head: the tag map as a prior, and training that keeps to it unless songs pay for moving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genre_core.config import GENRES, ConfigError
from genre_core.models.genre_head import (
    PRIOR_SCALE,
    TagPriorHead,
    outside_tag_columns,
    prior_matrix,
    read_tag_map,
)
from genre_core.training.head import (
    BEST,
    ONE_STANDARD_ERROR,
    HeadSong,
    best_choice,
    fit_head,
    head_objective,
    head_probabilities,
    one_standard_error_choice,
    refit_streamed,
    train_head,
)

MSD_TAGS = ("rock", "pop", "jazz", "Hip-Hop", "dance", "funk", "country", "blues", "metal", "heavy metal")
N_PEN, N_POOL = 6, 4
POOL_MEAN, POOL_STD = 5.0, 2.0  # the backbone's batch-norm statistics of the pooled features, in these tests


def test_msd_map_reads_and_gives_each_mapped_genre_a_row_summing_to_one() -> None:
    entries = read_tag_map("musicnn-msd")
    assert all(e["why"] for e in entries)
    tags = sorted({e["tag"] for e in entries})
    m = prior_matrix(entries, tags, GENRES)
    sums = dict(zip(GENRES, m.sum(1).tolist(), strict=True))
    assert sums["reggae"] == 0.0 and sums["classical"] == 0.0  # no MSD tag names them
    for g in ("blues", "country", "disco", "hiphop", "jazz", "metal", "pop", "rock"):
        assert sums[g] == pytest.approx(1.0)
    assert m[GENRES.index("rock"), tags.index("rock")] > m[GENRES.index("rock"), tags.index("punk")] > 0


def test_outside_style_tags_are_found_among_the_backbone_tags_and_never_map_to_a_genre() -> None:
    tags = ["rock", "folk", "pop", "ambient", "House", "electronic", "electronica", "electro", "chillout", "chill",
            "experimental", "soul"]
    columns = outside_tag_columns({"name": "musicnn-msd", "tags": tags})
    assert {tags[c] for c in columns} == {"folk", "ambient", "House", "electronic", "electronica", "electro",
                                          "chillout", "chill", "experimental", "soul"}
    assert not {tags[c] for c in columns} & {e["tag"] for e in read_tag_map("musicnn-msd")}
    assert outside_tag_columns({}) == []  # the from-scratch CNN has no tags
    with pytest.raises(ConfigError, match="lacks"):
        outside_tag_columns({"name": "musicnn-msd", "tags": ["rock"]})


def test_map_errors_are_named() -> None:
    with pytest.raises(ConfigError, match="no tag-to-genre map"):
        read_tag_map("vggish")
    with pytest.raises(ConfigError, match="'rock'"):
        prior_matrix([{"tag": "rock", "genre": "rock", "weight": 1.0}], ("pop",), GENRES)


def _songs(rng: np.random.Generator, n_per_class: int, group: str, feature_signal: bool,
           signal_in: str = "penultimate") -> list[HeadSong]:
    """Songs whose tags follow the prior for rock and jazz; reggae's tags read as rock, and only feature 0 of the
    penultimate (or of the pooled) features tells."""
    classes = ("rock", "jazz", "reggae")
    songs = []
    for k, g in enumerate(classes):
        for i in range(n_per_class):
            tags = rng.normal(-3.0, 0.5, (8, len(MSD_TAGS)))  # tag logits of 8 slices
            tags[:, MSD_TAGS.index("rock" if g == "reggae" else g)] += 4.0
            pen = rng.normal(0.0, 1.0, (8, N_PEN))
            pooled = rng.normal(POOL_MEAN, POOL_STD, (8, N_POOL))
            if feature_signal and g == "reggae":
                if signal_in == "penultimate":
                    pen[:, 0] += 3.0
                else:
                    pooled[:, 0] += 3.0 * POOL_STD
            songs.append(HeadSong(f"{group}-{g}-{i}", k, np.hstack([tags, pen, pooled]).astype(np.float32), group))
    return songs


def _head() -> TagPriorHead:
    prior = prior_matrix([{"tag": "rock", "genre": "rock", "weight": 1.0},
                          {"tag": "jazz", "genre": "jazz", "weight": 1.0}], MSD_TAGS, ("rock", "jazz", "reggae"))
    return TagPriorHead(prior, N_PEN, torch.full((N_POOL,), POOL_MEAN), torch.full((N_POOL,), POOL_STD))


def test_head_starts_at_the_prior() -> None:
    head = _head()
    x = torch.randn(5, head.n_inputs)
    torch.testing.assert_close(head(x), head.prior_logits(x))
    assert head.tag_weight.max().item() == pytest.approx(PRIOR_SCALE)
    assert head.n_inputs == len(MSD_TAGS) + N_PEN + N_POOL


def test_pooled_features_are_standardised_by_the_backbone_statistics() -> None:
    head = _head()
    with torch.no_grad():
        head.tag_weight.zero_()
        head.pooled_weight[0, 1] = 1.0
    x = torch.zeros(1, head.n_inputs)
    x[0, len(MSD_TAGS) + N_PEN + 1] = POOL_MEAN + 3 * POOL_STD
    torch.testing.assert_close(head(x), torch.tensor([[3.0, 0.0, 0.0]]))


def test_fitting_learns_the_untagged_genre_and_a_strong_pull_keeps_the_prior() -> None:
    rng = np.random.default_rng(0)
    train = _songs(rng, 12, "a", feature_signal=True)
    test = _songs(rng, 12, "b", feature_signal=True)
    head = _head()
    prior_acc = np.mean([p.sum(0).argmax() == s.genre_index
                         for p, s in zip(head_probabilities(head, test), test, strict=True)])
    fitted = fit_head(head, train, l2=1e-3)
    acc = np.mean([p.sum(0).argmax() == s.genre_index
                   for p, s in zip(head_probabilities(fitted, test), test, strict=True)])
    assert prior_acc < 0.7 and acc > 0.95  # reggae, which no tag names, is learnt from feature 0
    stiff = fit_head(head, train, l2=1e4)
    for name in ("tag_weight", "feature_weight", "pooled_weight"):  # every weight is pulled back to the start
        assert (getattr(stiff, name) - getattr(head, name)).abs().max().item() < 0.05
    assert (fitted.tag_weight - head.tag_weight).abs().max().item() > (stiff.tag_weight - head.tag_weight).abs().max()


def test_the_untagged_genre_is_learnt_from_a_pooled_feature_too() -> None:
    rng = np.random.default_rng(2)
    train, test = _songs(rng, 12, "a", True, "pooled"), _songs(rng, 12, "b", True, "pooled")
    fitted = fit_head(_head(), train, l2=1e-3)
    acc = np.mean([p.sum(0).argmax() == s.genre_index
                   for p, s in zip(head_probabilities(fitted, test), test, strict=True)])
    assert acc > 0.95 and fitted.pooled_weight[2, 0] > fitted.pooled_weight[2, 1:].abs().max()


def test_train_head_chooses_l2_leave_one_group_out_and_thresholds_on_val() -> None:
    rng = np.random.default_rng(1)
    train = _songs(rng, 8, "sf1", True) + _songs(rng, 8, "sf2", True)
    val = _songs(rng, 4, "sf1", True) + _songs(rng, 4, "sf2", True)
    result = train_head(_head(), train, val, l2_grid=(1e-3, 1e4), log=lambda _: None)
    assert result.selection["scheme"] == "leave-one-group-out" and result.selection["groups"] == ["sf1", "sf2"]
    assert result.l2 == 1e-3  # the stiff head never learns reggae: 2/3 at best
    assert [r["l2"] for r in result.grid] == [1e-3, 1e4]
    assert result.grid[0]["val_forced_accuracy"] > result.grid[1]["val_forced_accuracy"]
    assert 0.0 <= result.voting.tau <= 1.0 and result.val_report["n_songs"] == len(val)
    with pytest.raises(ValueError, match="train and val"):
        train_head(_head(), train, [], log=lambda _: None)


def test_l2_is_the_stiffest_within_one_standard_error_of_the_best() -> None:
    grid = [{"l2": 1e-3, "val_forced_accuracy": 0.80}, {"l2": 1e-1, "val_forced_accuracy": 0.77},
            {"l2": 1.0, "val_forced_accuracy": 0.60}]
    row, top, se = one_standard_error_choice(grid, n_val=100)  # se = sqrt(0.8 * 0.2 / 100) = 0.04
    assert (row["l2"], top) == (1e-1, 0.80) and abs(se - 0.04) < 1e-12
    row, _, _ = one_standard_error_choice(grid, n_val=10_000)  # se 0.004: 0.77 is now clearly worse
    assert row["l2"] == 1e-3
    row, top, _ = best_choice(grid, n_val=100)  # fine-tuning on a catalog's own songs: the best
    assert (row["l2"], top) == (1e-3, 0.80)
    tied = [*grid, {"l2": 3e-3, "val_forced_accuracy": 0.80}]
    assert best_choice(tied, n_val=100)[0]["l2"] == 3e-3  # of equals, the stiffer


def test_train_head_applies_its_l2_rule() -> None:
    rng = np.random.default_rng(1)
    train = _songs(rng, 8, "sf1", True) + _songs(rng, 8, "sf2", True)
    # sf2's validation reggae reads as rock (no feature tells): no head gets every validation song right, so the
    # standard error is wide enough for the stiff heads to count as good as the best
    val = _songs(rng, 4, "sf1", True) + _songs(rng, 4, "sf2", False)
    grid = (1e-3, 0.1, 1.0, 3.0, 1e4)
    stiff = train_head(_head(), train, val, l2_grid=grid, log=lambda _: None)
    best = train_head(_head(), train, val, l2_grid=grid, l2_rule=BEST, log=lambda _: None)
    assert best.selection["l2_rule"] == BEST and stiff.selection["l2_rule"] == ONE_STANDARD_ERROR
    assert best.grid == stiff.grid  # the same validation figures, read by two rules
    assert best.l2 == best_choice(best.grid, len(val))[0]["l2"]
    assert stiff.l2 == one_standard_error_choice(stiff.grid, len(val))[0]["l2"]
    assert best.l2 < stiff.l2  # the rules disagree here: the best is not the stiffest within one standard error
    with pytest.raises(ValueError, match="unknown l2 rule"):
        train_head(_head(), train, val, l2_rule="median", log=lambda _: None)


def test_one_group_is_cross_validated_over_train_and_val_songs() -> None:
    from genre_core.training.head import _cross_validation_folds

    songs = [HeadSong(f"s{i:02d}", i % 3, np.zeros((1, 4), np.float32), "only") for i in range(30)]
    folds = _cross_validation_folds(songs, 5)
    assert len(folds) == 5
    held = [s.song_id for _, va in folds for s in va]
    assert sorted(held) == sorted(s.song_id for s in songs)  # every song held out exactly once
    for tr, va in folds:
        assert {s.genre_index for s in va} == {0, 1, 2} and not {s.song_id for s in tr} & {s.song_id for s in va}


def test_a_streamed_refit_from_a_sample_reaches_the_fit_on_every_song() -> None:
    """More songs than the driver may hold: the fit on a sample, then minibatch passes over every song, ends where
    the full-batch fit on every song does (the same objective), and below where the sample's fit started."""
    rng = np.random.default_rng(7)
    songs = _songs(rng, 60, "sf1", True)
    sample = [s for i, s in enumerate(songs) if i % 6 == 0]  # 30 of 180
    start, l2 = _head(), 1e-2
    on_sample = fit_head(start, sample, l2)
    everything = fit_head(start, songs, l2)

    def passes(epoch: int):
        order = np.random.default_rng(epoch).permutation(len(songs))
        for i in range(0, len(order), 16):  # minibatches of 16 songs' slices
            batch = [songs[j] for j in order[i:i + 16]]
            yield (np.concatenate([s.outputs for s in batch]),
                   np.concatenate([np.full(len(s.outputs), s.genre_index) for s in batch]))

    streamed = refit_streamed(on_sample, start, passes, l2, epochs=8, lr=3e-3)
    full, begun, ended = (head_objective(h, start, songs, l2) for h in (everything, on_sample, streamed))
    assert ended < begun and ended == pytest.approx(full, rel=0.05), (full, begun, ended)
    assert all(p.dtype == torch.float32 for p in streamed.parameters()) and not streamed.training
