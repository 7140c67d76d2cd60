"""jobs.train_head.memory_sample: the songs whose backbone outputs the driver holds when a catalog has more."""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobs.train_head import memory_sample


def _splits(rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    def part(prefix: str, n: int) -> pd.DataFrame:
        return pd.DataFrame({"track_id": [f"{prefix}{i}" for i in range(n)], "genre_index": rng.integers(0, 4, n),
                             "soundfont": rng.choice(["a", "b"], n)})

    return {"train": part("t", 600), "val": part("v", 200), "test": part("x", 300)}


def test_the_sample_has_cap_songs_of_train_and_val_in_proportion_and_every_cell() -> None:
    splits = _splits(np.random.default_rng(0))
    picked = memory_sample(splits, "soundfont", cap=200, seed=3)
    assert len(picked) == 200 and not any(t.startswith("x") for t in picked)  # test songs are never held
    n_val = sum(t.startswith("v") for t in picked)
    assert 40 <= n_val <= 60  # a quarter of the train and val songs are val songs
    for name in ("train", "val"):
        df = splits[name]
        kept = df[df["track_id"].isin(picked)]
        assert set(map(tuple, kept[["genre_index", "soundfont"]].values)) == \
            set(map(tuple, df[["genre_index", "soundfont"]].values))  # every (genre, group) cell is represented
    assert memory_sample(splits, "soundfont", cap=200, seed=3) == picked  # the same seed, the same songs
    assert memory_sample(splits, "soundfont", cap=200, seed=4) != picked
    assert len(memory_sample(splits, "no-such-column", cap=10_000, seed=0)) == 800  # all when they fit
