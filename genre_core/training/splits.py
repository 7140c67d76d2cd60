"""Which songs train, validate and test: the catalog's own ``split`` column, checked, with validation songs held
out of the train split when the catalog has none. With a grouping column (``artist``, ``album``) every group
stays on one side of every split, so that a model is never scored on songs of an artist it trained on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genre_core.training.cnn import Song, split_by_song


def check_groups_within_splits(splits: Sequence[str], groups: Sequence[str], column: str) -> None:
    """Raise ValueError when a value of ``column`` has songs in two splits (naming a few of them)."""
    sides: dict[str, set[str]] = {}
    for split, group in zip(splits, groups, strict=True):
        sides.setdefault(str(group), set()).add(str(split))
    straddling = sorted(g for g, s in sides.items() if len(s) > 1)
    if straddling:
        examples = ", ".join(f"{g!r} ({'/'.join(sorted(sides[g]))})" for g in straddling[:5])
        raise ValueError(f"{len(straddling)} value(s) of the catalog's {column!r} column have songs in two splits, "
                         f"e.g. {examples}: give each {column} one split, or train without --split-by")


def hold_out_validation(track_ids: Sequence[str], genre_index: Sequence[int], groups: Sequence[str] | None,
                        fraction: float, seed: int) -> set[str]:
    """The ids of the train songs to validate on instead, deterministic for ``seed``: per song stratified by genre
    (:func:`split_by_song`), or, with ``groups``, whole groups drawn at random until ``fraction`` of the songs
    (at least one group, never every group)."""
    if groups is None:
        _, val = split_by_song([Song(t, int(g), np.empty(0)) for t, g in zip(track_ids, genre_index, strict=True)],
                               fraction, seed)
        return {s.song_id for s in val}
    members: dict[str, list[str]] = {}
    for tid, group in zip(track_ids, groups, strict=True):
        members.setdefault(str(group), []).append(tid)
    names = sorted(members)
    if len(names) < 2 or fraction <= 0:
        return set()
    target = fraction * len(track_ids)
    val: set[str] = set()
    for i in np.random.default_rng(seed).permutation(len(names))[: len(names) - 1]:
        if val and len(val) >= target:
            break
        val.update(members[names[i]])
    return val
