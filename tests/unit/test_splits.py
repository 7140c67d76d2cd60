"""genre_core.training.splits: groups (artists, albums) never straddle two splits."""

from __future__ import annotations

import pytest

from genre_core.training.splits import check_groups_within_splits, hold_out_validation


def test_a_group_in_two_splits_is_refused_by_name() -> None:
    check_groups_within_splits(["train", "train", "test"], ["a", "a", "b"], "artist")
    with pytest.raises(ValueError, match=r"'artist' column .*'a' \(test/train\)"):
        check_groups_within_splits(["train", "test", "test"], ["a", "a", "b"], "artist")


def test_validation_is_held_out_by_whole_groups() -> None:
    ids = [f"t{i:02d}" for i in range(40)]
    genres = [i % 4 for i in range(40)]
    artists = [f"artist{i // 5}" for i in range(40)]           # 8 artists of 5 songs
    val = hold_out_validation(ids, genres, artists, 0.25, seed=0)
    held = {artists[i] for i, t in enumerate(ids) if t in val}
    assert all(all(ids[i] in val for i in range(40) if artists[i] == a) for a in held)  # whole artists only
    assert len(val) >= 10 and len(held) < 8
    assert hold_out_validation(ids, genres, artists, 0.25, seed=0) == val
    assert hold_out_validation(ids, genres, ["one"] * 40, 0.25, seed=0) == set()   # one group: nothing to hold out


def test_validation_without_groups_is_stratified_by_genre() -> None:
    ids = [f"t{i:02d}" for i in range(40)]
    val = hold_out_validation(ids, [i % 4 for i in range(40)], None, 0.2, seed=0)
    assert sorted(int(t[1:]) % 4 for t in val) == [0, 0, 1, 1, 2, 2, 3, 3]
