"""The last step of the labelling pipeline, in the worker that finished the batch: label rows -> table data files.

:func:`label_rows` turns a finished column batch into rows of the labels schema (curated genres applied:
:func:`apply_curated`); :class:`LabelFileWriter` writes them as data files of the labels table and returns one
small row per batch (the files' metadata and track_ids, pickled, and the batch's counts) for the driver's
:class:`~genre_core.label_commit.RunCommitter`. Only that small row travels to the driver, never the labels.
"""

from __future__ import annotations

import math
import pickle
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from genre_core.label_commit import WrittenPart, write_part
from genre_core.schema import LABEL_COLUMNS, STATUS_CURATED, labels_table

PART_COLUMN = "part"


def _missing(value: Any) -> bool:
    """A missing value however a block conversion wrote it (None, NaN of an all-null column, pd.NA)."""
    if value is None:
        return True
    try:
        return bool(value != value) or (isinstance(value, float) and math.isnan(value))  # NaN, pd.NA
    except (TypeError, ValueError):
        return False


def curated_value(value: Any) -> str | None:
    """A catalog's curated genre as a genre name, or None when the track has none (null, NaN, blank)."""
    if _missing(value):
        return None
    text = str(value).strip()
    return text or None


def apply_curated(row: dict[str, Any], curated: Any) -> dict[str, Any]:
    """``row`` with a person's genre, when there is one: status ``curated`` and that genre; the model's votes
    (probabilities, confidence, margin) stay beside it, so editors see where the model disagrees."""
    genre = curated_value(curated)
    if genre is not None:
        row.update(status=STATUS_CURATED, genre=genre, reason=None)
    return row


def label_rows(batch: dict[str, Any], classes: list[str], *, model_version: str, gan_version: str | None,
               feature_version: str, run_id: str, labelled_at: datetime, curated_column: str | None = None) -> pa.Table:
    """Rows of the labels schema from a finished batch (vote and refinement columns present)."""
    n = len(batch["track_id"])
    curated = batch.get(curated_column) if curated_column else None
    rows = []
    for i in range(n):
        row = {c: (None if c not in batch or _missing_scalar(batch[c][i]) else batch[c][i]) for c in LABEL_COLUMNS}
        row.update(model_version=model_version, gan_version=gan_version, feature_version=feature_version,
                   run_id=run_id, labelled_at=labelled_at)
        rows.append(apply_curated(row, None if curated is None else curated[i]))
    return labels_table(rows, classes)


def _missing_scalar(value: Any) -> bool:
    return not isinstance(value, (np.ndarray, list)) and _missing(value)


class LabelFileWriter:
    """Writes a finished batch's label rows into the labels table's data folder; returns one row per batch:
    ``part`` (a pickled :class:`WrittenPart`), ``n`` and the batch's GAN counts."""

    def __init__(self, metadata: Any, io: Any, classes: list[str], versions: dict[str, Any],
                 curated_column: str | None = None) -> None:
        self.metadata, self.io, self.classes = metadata, io, list(classes)
        self.versions, self.curated_column = dict(versions), curated_column

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = label_rows(batch, self.classes, labelled_at=datetime.now(timezone.utc),
                          curated_column=self.curated_column, **self.versions)
        part = write_part(self.metadata, self.io, rows, self.versions["run_id"])
        cnn_status = batch.get("cnn_status", batch["status"])
        gan_slices = np.asarray(batch.get("gan_input_slices", np.zeros(len(rows), np.int64)))
        return {PART_COLUMN: np.array([pickle.dumps(part)], dtype=object),
                "n": np.array([len(rows)], np.int64),
                "cnn_unclassified": np.array([int(sum(s == "unclassified" for s in cnn_status))], np.int64),
                "gan_songs": np.array([int((gan_slices > 0).sum())], np.int64),
                "gan_slices": np.array([int(gan_slices.sum())], np.int64)}


def read_part(value: bytes) -> WrittenPart:
    """The :class:`WrittenPart` of a writer's output row (pickled by this project's own workers)."""
    return pickle.loads(value)
