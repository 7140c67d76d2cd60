"""Which catalog tracks a run labels: the catalog anti-joined with the labels that are current for the run.

A label is *current* for a run (the track is skipped) when it was made with the run's model versions (CNN, GAN,
features) and

- nightly: it is not an error (errors are retried);
- backfill: it was made since the backfill began (a backfill that resumes a killed one began when that one did);

and its curation matches the catalog's (a track a person curated, or uncurated, since is labelled again).
:func:`current_mask` is that rule on a batch of label rows; :func:`anti_join` applies it to a catalog. The job
runs both per block on the cluster (``jobs/label_plan.py``); tests call them on tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from genre_core.schema import STATUS_CURATED, STATUS_ERROR

# the label columns the selection reads from the table
LABEL_SELECTION_COLUMNS = ("track_id", "status", "genre", "model_version", "gan_version", "feature_version",
                           "labelled_at")


@dataclass(frozen=True)
class Selection:
    """What makes a label current for a run."""

    mode: str                        # nightly | backfill
    model_version: str
    gan_version: str | None
    feature_version: str
    since_us: int | None = None      # backfill: labels made at or after this time (µs since epoch, UTC)


def track_id_hashes(ids: pa.ChunkedArray | pa.Array | list[str]) -> np.ndarray:
    """A 64-bit hash per track_id, the same in every process (pandas' fixed-key SipHash)."""
    import pandas as pd

    values = ids.to_pylist() if hasattr(ids, "to_pylist") else list(ids)
    return pd.util.hash_array(np.asarray(values, dtype=object), categorize=False)


def _str(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return pc.fill_null(col.cast(pa.string()), "")


def current_mask(labels: pa.Table, sel: Selection) -> pa.Array:
    """Boolean per label row: current for the run (see the module docstring; curation is checked in the join)."""
    same = pc.and_(pc.equal(_str(labels["model_version"]), sel.model_version),
                   pc.and_(pc.equal(_str(labels["gan_version"]), sel.gan_version or ""),
                           pc.equal(_str(labels["feature_version"]), sel.feature_version)))
    if sel.mode == "backfill":
        since = sel.since_us if sel.since_us is not None else np.iinfo(np.int64).max
        at = pc.fill_null(labels["labelled_at"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), 0)
        return pc.and_(same, pc.greater_equal(at, since))
    return pc.and_(same, pc.not_equal(_str(labels["status"]), STATUS_ERROR))


def current_labels(labels: pa.Table, sel: Selection) -> pa.Table:
    """The current labels' track_id with what curation they reflect (``label_curated``: the curated genre, or
    "" when the label is not curated)."""
    keep = labels.filter(current_mask(labels, sel))
    curated = pc.if_else(pc.equal(_str(keep["status"]), STATUS_CURATED), _str(keep["genre"]), "")
    return pa.table({"track_id": _str(keep["track_id"]), "label_curated": curated})


def catalog_curation(catalog: pa.Table, curated_column: str | None) -> pa.Array:
    """The catalog's curated genre per row, "" where there is none (or no such column)."""
    if not curated_column or curated_column not in catalog.column_names:
        return pa.array([""] * catalog.num_rows, pa.string())
    return pc.utf8_trim_whitespace(_str(catalog[curated_column]))


def anti_join(catalog: pa.Table, current: pa.Table, curated_column: str | None) -> pa.Table:
    """Catalog rows without a current label (``current`` from :func:`current_labels`), or whose current label
    reflects another curation than the catalog's."""
    slim = pa.table({"track_id": _str(catalog["track_id"]),
                     "_idx": pa.array(np.arange(catalog.num_rows), pa.int64()),
                     "_curated": catalog_curation(catalog, curated_column)})
    joined = slim.join(current, keys="track_id", join_type="left outer")
    todo = pc.fill_null(pc.or_kleene(pc.is_null(joined["label_curated"]),
                                     pc.not_equal(joined["label_curated"], joined["_curated"])), True)
    picked = joined.filter(todo)["_idx"]
    return catalog.take(pc.take(picked, pc.sort_indices(picked)))
