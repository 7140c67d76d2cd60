"""Catalogs for benchmarks: the first N rows of a catalog, repeated under new track_ids when N is larger."""

from __future__ import annotations

import pandas as pd

from genre_core.schema import read_catalog


def first_rows(catalog: str, n: int) -> pd.DataFrame:
    """The first ``n`` rows of ``catalog``; beyond its length its rows come again with ``-r<k>`` appended to the
    track_id (the same audio decoded again: per-song work and memory are those of distinct songs)."""
    source = read_catalog(catalog)
    reps = -(-n // len(source))
    rows = [source.assign(track_id=source["track_id"] + (f"-r{k}" if k else "")) for k in range(reps)]
    return pd.concat(rows, ignore_index=True).iloc[:n].reset_index(drop=True)
