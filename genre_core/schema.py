"""Arrow schemas of the catalog and the labels, plus small Parquet read/write helpers.

The labels' ``probabilities`` column is a list aligned to a class list stored in the file's schema
metadata under :data:`CLASSES_KEY` (JSON list of genre names); see :func:`with_classes`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genre_core import storage

CLASSES_KEY = b"genre_tagger.classes"

STATUS_CLASSIFIED = "classified"
STATUS_GAN_RESOLVED = "gan_resolved"
STATUS_UNCLASSIFIED = "unclassified"
STATUS_ERROR = "error"
STATUS_CURATED = "curated"  # genre set by a person (catalog column curated_genre); the model's votes beside it
STATUSES: tuple[str, ...] = (STATUS_CLASSIFIED, STATUS_GAN_RESOLVED, STATUS_UNCLASSIFIED, STATUS_ERROR,
                             STATUS_CURATED)
DECIDED_STATUSES: frozenset[str] = frozenset({STATUS_CLASSIFIED, STATUS_GAN_RESOLVED})  # decided by the models
# Why a song is unclassified (column ``reason``; null for every other status): its slices' votes were ambiguous
# (and no GAN stage decided it), or its slices look unlike the songs of any genre of the taxonomy
# (genre_core.outside; such a song never reaches the GAN stage).
REASON_AMBIGUOUS = "ambiguous_vote"
REASON_OUTSIDE = "outside_taxonomy"
REASONS: tuple[str, ...] = (REASON_AMBIGUOUS, REASON_OUTSIDE)

CATALOG_REQUIRED = pa.schema([
    pa.field("track_id", pa.string(), nullable=False),
    pa.field("audio_uri", pa.string(), nullable=False),
])

LABELS_SCHEMA = pa.schema([
    pa.field("track_id", pa.string(), nullable=False),
    pa.field("genre", pa.string()),                 # null unless decided
    pa.field("status", pa.string(), nullable=False),  # one of STATUSES
    pa.field("reason", pa.string()),                # unclassified rows: one of REASONS; null otherwise
    pa.field("confidence", pa.float32()),           # P(the top genre of the votes is right), calibrated (null
                                                    # when the model's bundle has no calibration)
    pa.field("vote_share", pa.float32()),           # top genre's share of the votes
    pa.field("margin", pa.float32()),               # gap between the top two shares
    pa.field("probabilities", pa.list_(pa.float32())),  # vote shares, aligned to the class list metadata
    pa.field("outside_score", pa.float32()),        # out-of-taxonomy score (genre_core.outside); null without a rule
    pa.field("n_slices", pa.int32()),
    pa.field("duration_s", pa.float32()),
    pa.field("error", pa.string()),                 # null or "kind: message"
    pa.field("model_version", pa.string()),
    pa.field("gan_version", pa.string()),
    pa.field("gan_probabilities", pa.list_(pa.float32())),  # GAN votes of an unclassified song (genre_core.refine)
    pa.field("gan_confidence", pa.float32()),       # combined share of the top genre that the GAN stage decided on
    pa.field("feature_version", pa.string()),
    pa.field("run_id", pa.string()),
    pa.field("labelled_at", pa.timestamp("us", tz="UTC")),
])

LABEL_COLUMNS: tuple[str, ...] = tuple(LABELS_SCHEMA.names)


def with_classes(schema: pa.Schema, classes: Sequence[str]) -> pa.Schema:
    """``schema`` with the class list attached as metadata (kept by Parquet files written with it)."""
    meta = dict(schema.metadata or {})
    meta[CLASSES_KEY] = json.dumps(list(classes)).encode()
    return schema.with_metadata(meta)


def classes_of(schema: pa.Schema) -> list[str] | None:
    """The class list stored in ``schema``'s metadata, or None when absent."""
    raw = (schema.metadata or {}).get(CLASSES_KEY)
    return None if raw is None else list(json.loads(raw))


def check_catalog_columns(columns: Sequence[str], extra: Sequence[str] = ()) -> None:
    """Raise ValueError naming the missing columns when the catalog lacks a required one."""
    missing = [c for c in [*CATALOG_REQUIRED.names, *extra] if c not in columns]
    if missing:
        raise ValueError(f"catalog lacks required column(s) {missing}; it has {list(columns)}")


def vote_list(votes: Any) -> list[float] | None:
    """Vote shares as the labels column holds them: a list of floats, or None for a song without votes (None or
    the all-NaN row that the pipeline carries for such songs, so that its column keeps one shape; a NaN scalar is
    what pandas puts in a column that rows left out)."""
    if votes is None or (isinstance(votes, float) and math.isnan(votes)):
        return None
    values = [float(v) for v in votes]
    return None if all(v != v for v in values) else values


def vote_shares(p: Any) -> np.ndarray | None:
    """A labels row's ``probabilities`` as normalised vote shares (None when the row has no votes)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return None
    arr = np.asarray(p, dtype=np.float64)
    if arr.size == 0 or not np.isfinite(arr).all() or arr.sum() <= 0:
        return None
    return arr / arr.sum()


def labels_table(rows: pd.DataFrame | Sequence[dict[str, Any]], classes: Sequence[str]) -> pa.Table:
    """Build a labels table (exact LABELS_SCHEMA column order and types, class list in the metadata)."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=list(LABEL_COLUMNS))
    missing = [c for c in LABEL_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"labels lack column(s) {missing}")
    df = df[list(LABEL_COLUMNS)].copy()
    for column in ("probabilities", "gan_probabilities"):
        df[column] = [vote_list(p) for p in df[column]]
    df["labelled_at"] = pd.to_datetime(df["labelled_at"], utc=True)
    schema = with_classes(LABELS_SCHEMA, classes)
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    return table.replace_schema_metadata(schema.metadata)  # the class list only, no pandas blob


def read_parquet(url: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a Parquet file or folder of files (local path, file:// or s3://)."""
    fs, path = storage.filesystem(url)
    return pq.read_table(path, filesystem=fs, columns=list(columns) if columns else None)


def write_parquet(table: pa.Table, url: str) -> None:
    """Write ``table`` as one Parquet file at ``url`` (parent folders created locally)."""
    fs, path = storage.filesystem(url)
    if not storage.is_remote(url):
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as fh:
        pq.write_table(table, fh)


class CatalogError(ValueError):
    """The catalog as a whole is unusable (unreadable, missing columns, null or duplicate track_id)."""


def read_catalog(url: str) -> pd.DataFrame:
    """Read and validate a catalog (Parquet file or folder/prefix); raises CatalogError naming what is wrong.

    Checks, before any work starts: the Parquet is readable, ``track_id`` and ``audio_uri`` exist, and
    ``track_id`` is never null or empty and unique. Other columns are carried along untouched.
    """
    try:
        table = read_parquet(url)
    except FileNotFoundError as exc:
        raise CatalogError(f"catalog not found: {url} (a Parquet file or folder with track_id and audio_uri; "
                           "`genre-job make-catalog --per-genre 8 --out DIR` renders a demo one at "
                           "DIR/catalog.parquet)") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise CatalogError(f"catalog {url} is not readable Parquet: {exc}") from exc
    try:
        check_catalog_columns(table.column_names)
    except ValueError as exc:
        raise CatalogError(f"catalog {url}: {exc}") from exc
    message = catalog_fault_message(url, catalog_faults(
        table.select(["track_id", "audio_uri"]).append_column("_row", pa.array(range(table.num_rows), pa.int64()))))
    if message:
        raise CatalogError(message)
    df = table.to_pandas()
    ids = df["track_id"]
    df["track_id"] = ids.astype(str)
    return df


def catalog_faults(rows: pa.Table) -> dict[str, Any]:
    """Row-level faults of (a part of) a catalog with ``track_id``, ``audio_uri`` and ``_row`` (the row number in
    the whole catalog): ``null_id`` (null or blank track_id), ``duplicate`` (track_id -> rows; complete when
    every row of a track_id is in ``rows``), ``null_uri`` ((row, track_id) pairs). Empty lists when all is well."""
    ids = rows.column("track_id").cast(pa.string())
    row_no = rows.column("_row").to_numpy()
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(ids), ""), True)
    null_id = sorted(row_no[blank.to_numpy(zero_copy_only=False)].tolist())
    counts = pc.value_counts(pc.drop_null(ids))
    repeated = [v.as_py() for v, n in zip(counts.field("values"), counts.field("counts"), strict=True)
                if n.as_py() > 1]
    duplicate: dict[str, list[int]] = {}
    if repeated:
        hit = pc.is_in(ids, value_set=pa.array(repeated, pa.string())).to_numpy(zero_copy_only=False)
        for tid, r in zip(np.asarray(ids.to_pylist(), dtype=object)[hit], row_no[hit], strict=True):
            duplicate.setdefault(str(tid), []).append(int(r))
    no_uri = pc.is_null(rows.column("audio_uri")).to_numpy(zero_copy_only=False)
    null_uri = sorted(zip(row_no[no_uri].tolist(), np.asarray(ids.to_pylist(), dtype=object)[no_uri].tolist(),
                          strict=True)) if no_uri.any() else []
    return {"null_id": null_id, "duplicate": {k: sorted(v) for k, v in duplicate.items()}, "null_uri": null_uri}


def merge_catalog_faults(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The faults of a whole catalog from those of parts that never split a track_id between them."""
    out: dict[str, Any] = {"null_id": [], "duplicate": {}, "null_uri": []}
    for p in parts:
        out["null_id"] += p["null_id"]
        out["duplicate"].update(p["duplicate"])
        out["null_uri"] += p["null_uri"]
    out["null_id"].sort()
    out["null_uri"].sort()
    return out


def catalog_fault_message(url: str, faults: dict[str, Any]) -> str | None:
    """The error naming the first kind of fault found (null ids, then duplicates, then null URIs), or None."""
    if faults["null_id"]:
        return f"catalog {url}: null or empty track_id in row(s) {faults['null_id'][:20]}"
    if faults["duplicate"]:
        dups = sorted(faults["duplicate"].items(), key=lambda kv: kv[1][0])[:20]
        where = [f"{tid!r} in rows {rows}" for tid, rows in sorted(dups)]
        return f"catalog {url}: duplicate track_id(s): {'; '.join(where)}"
    if faults["null_uri"]:
        rows = [r for r, _ in faults["null_uri"][:20]]
        return f"catalog {url}: null audio_uri in row(s) {rows} (track_id {[t for _, t in faults['null_uri'][:20]]})"
    return None
