"""Writing label rows into the labels table: data files written where the rows are, one upsert commit per interval.

Workers turn their label rows into Iceberg data files (:func:`write_part`: Parquet files under the table's data
folder, named from the run and the batch, so a rerun of a batch overwrites its own file) and hand back only the
files' metadata and track_ids (:class:`WrittenPart`). The driver's :class:`RunCommitter` gathers them and
commits every ``commit_every`` songs one Iceberg snapshot that upserts on ``track_id``:

1. plan, against the current snapshot, the data files that may hold one of the commit's track_ids (file bounds);
2. rewrite each of them without those rows (:func:`rewrite_without`; a file holding none is left alone), on the
   workers when the caller passes a parallel ``map``;
3. commit one overwrite snapshot: those files out, their kept rows and the new files in, the run's manifest in
   the snapshot summary (:data:`RUN_PROPERTY`).

Commits are optimistic: when another run committed in between, the catalog refuses ours
(``CommitFailedException``) and the committer plans again against the new snapshot and retries, so a track is
never in the table twice and no run's rows are lost. Files of a failed attempt are the committer's own and are
deleted by it; nothing written by another run is ever deleted (orphans of dead runs: :mod:`genre_core.label_runs`).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from genre_core.label_selection import track_id_hashes
from genre_core.label_table import CLASSES_PROPERTY, LATEST_CLASSES_PROPERTY, LabelTable, open_table
from genre_core.schema import LABELS_SCHEMA

RUN_PROPERTY = "genre_tagger.run"      # snapshot summary key: the run's manifest as JSON
RUN_ID_PROPERTY = "genre_tagger.run-id"
MAX_COMMIT_ATTEMPTS = 20


class CommitError(RuntimeError):
    """A commit could not be made (rows twice in one run, or conflicts past the retry limit)."""


@dataclass
class RunManifest:
    """What a run is, as each of its commits records it in the snapshot summary."""

    run_id: str
    mode: str
    catalog: str
    model_version: str
    gan_version: str | None
    feature_version: str
    classes: list[str]
    n_todo: int = 0                  # tracks the run set out to label
    started_at: str = ""
    resumes: str | None = None       # run_id of the interrupted backfill this run continues
    commit: int = 0                  # this commit's number in the run (1, 2, ...)
    n_rows: int = 0                  # rows committed by the run so far, this commit included
    commit_rows: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    committed_at: str = ""

    @property
    def complete(self) -> bool:
        return self.n_rows >= self.n_todo

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunManifest:
        return cls(**json.loads(text))


@dataclass
class WrittenPart:
    """What a worker hands back for one batch of label rows: the data files' metadata and what they hold."""

    data_files: list[Any]            # pyiceberg DataFile
    track_ids: list[str]
    statuses: list[str]


def _uuid(*parts: str) -> uuid.UUID:
    return uuid.UUID(hashlib.md5("\0".join(parts).encode()).hexdigest())


def write_part(metadata: Any, io: Any, rows: pa.Table, run_id: str) -> WrittenPart:
    """Write ``rows`` (labels schema) as data files of the table; the name comes from the run and the batch's
    track_ids, so a batch written again (a retried task) replaces its own file instead of adding one, and no other
    batch ever writes over it."""
    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    rows = rows.cast(LABELS_SCHEMA.remove_metadata()) if rows.schema != LABELS_SCHEMA else rows
    ids = rows.column("track_id").to_pylist()
    files = list(_dataframe_to_data_files(metadata, rows.replace_schema_metadata(None), io,
                                          write_uuid=_uuid(run_id, *sorted(ids))))
    return WrittenPart(files, ids, rows.column("status").to_pylist())


def rewrite_without(data_file: Any, keys: pa.Array, metadata: Any, io: Any, attempt: str) -> tuple[Any, list[Any]]:
    """(``data_file`` if it holds any of ``keys`` else None, data files of its other rows). Only ``track_id`` is
    read from a file that turns out to hold none of the keys."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
    from pyiceberg.table import FileScanTask

    task = FileScanTask(data_file)
    schema = metadata.schema()
    ids = ArrowScan(metadata, io, schema.select("track_id"), AlwaysTrue()).to_table([task]).column("track_id")
    hit = pc.is_in(ids, value_set=keys)
    n_hit = pc.sum(hit).as_py() or 0
    if n_hit == 0:
        return None, []
    if n_hit == len(ids):
        return data_file, []
    rows = ArrowScan(metadata, io, schema, AlwaysTrue()).to_table([task])
    kept = rows.filter(pc.invert(pc.is_in(rows.column("track_id"), value_set=keys)))
    return data_file, list(_dataframe_to_data_files(metadata, kept, io, write_uuid=_uuid(attempt, data_file.file_path)))


def _retryable() -> tuple[type[BaseException], ...]:
    from pyiceberg.exceptions import CommitFailedException, ValidationException

    errors: list[type[BaseException]] = [CommitFailedException, ValidationException]
    try:  # a SQLite catalog busy with another process's commit
        from sqlalchemy.exc import OperationalError

        errors.append(OperationalError)
    except ImportError:
        pass
    return tuple(errors)


class RunCommitter:
    """Gathers a run's written parts and commits them, ``commit_every`` songs at a time, as upserts on track_id.

    ``rewrite_map(fn, files)`` runs :func:`rewrite_without` over candidate files (default: here, one by one; the
    job passes one that runs them as Ray tasks). The driver keeps 8 bytes per committed track (to refuse a
    track twice in one run), never the rows."""

    def __init__(self, table: LabelTable, manifest: RunManifest, commit_every: int = 50_000,
                 rewrite_map: Callable[[Callable[[Any], Any], list[Any]], Iterable[Any]] = map,
                 log: Callable[[str], None] = print) -> None:
        self.table, self.manifest, self.commit_every = table, manifest, max(1, commit_every)
        self.rewrite_map, self.log = rewrite_map, log
        self.ice = open_table(table, create=True)
        self.pending: list[WrittenPart] = []
        self._committed: list[np.ndarray] = []
        self.counts: Counter[str] = Counter(manifest.status_counts)
        self.conflicts = 0
        self.snapshots: list[int] = []

    @property
    def target(self) -> tuple[Any, Any]:
        """(table metadata, FileIO) that workers write data files with."""
        return self.ice.metadata, self.ice.io

    @property
    def pending_rows(self) -> int:
        return sum(len(p.track_ids) for p in self.pending)

    def add(self, part: WrittenPart, stats: dict[str, Any] | None = None) -> int | None:
        """Take one written part; commits when ``commit_every`` songs are pending (returns the snapshot id)."""
        self.pending.append(part)
        return self.commit(stats) if self.pending_rows >= self.commit_every else None

    def _check_once(self, ids: list[str]) -> np.ndarray:
        h = track_id_hashes(ids)
        seen = np.concatenate(self._committed) if self._committed else np.zeros(0, np.uint64)
        dup_within = len(np.unique(h)) != len(h)
        if dup_within or np.isin(h, seen).any():
            counts = Counter(ids)
            twice = sorted(t for t, n in counts.items() if n > 1) or sorted(
                t for t, x in zip(ids, np.isin(h, seen), strict=True) if x)
            raise CommitError(f"run {self.manifest.run_id} produced track(s) twice: {twice[:10]}; nothing of "
                              "this commit was committed")
        return h

    def commit(self, stats: dict[str, Any] | None = None) -> int | None:
        """Commit the pending parts as one snapshot (retried on conflict); None when nothing is pending."""
        if not self.pending:
            return None
        parts, self.pending = self.pending, []
        ids = [t for p in parts for t in p.track_ids]
        hashes = self._check_once(ids)
        files = [f for p in parts for f in p.data_files]
        m = self.manifest
        m.commit += 1
        m.commit_rows = len(ids)
        m.n_rows += len(ids)
        self.counts.update(s for p in parts for s in p.statuses)
        m.status_counts = dict(sorted(self.counts.items()))
        if stats is not None:
            m.stats = dict(stats)
        m.committed_at = datetime.now(timezone.utc).isoformat()
        keys = pa.array(sorted(set(ids)), pa.string())
        snapshot = self._commit_with_retry(files, keys)
        self._committed.append(hashes)
        self.snapshots.append(snapshot)
        return snapshot

    def _commit_with_retry(self, files: list[Any], keys: pa.Array) -> int:
        from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual

        m = self.manifest
        summary = {RUN_PROPERTY: m.to_json(), RUN_ID_PROPERTY: m.run_id}
        bounds = And(GreaterThanOrEqual("track_id", keys[0].as_py()), LessThanOrEqual("track_id", keys[-1].as_py()))
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            self.ice.refresh()
            meta, io = self.target
            tag = f"{m.run_id}/{m.commit}/{attempt}"
            candidates = [t.file for t in self.ice.scan(row_filter=bounds, selected_fields=("track_id",)).plan_files()]

            def rewrite(f: Any, meta: Any = meta, io: Any = io, tag: str = tag) -> tuple[Any, list[Any]]:
                return rewrite_without(f, keys, meta, io, tag)

            rewritten = [r for r in self.rewrite_map(rewrite, candidates) if r[0] is not None]
            kept = [f for _, fs in rewritten for f in fs]
            try:
                txn = self.ice.transaction()
                known = json.loads(self.ice.properties.get(CLASSES_PROPERTY, "{}"))
                if known.get(m.model_version) != m.classes or \
                        self.ice.properties.get(LATEST_CLASSES_PROPERTY) != json.dumps(m.classes):
                    known[m.model_version] = m.classes
                    txn.set_properties({CLASSES_PROPERTY: json.dumps(known),
                                        LATEST_CLASSES_PROPERTY: json.dumps(m.classes)})
                with txn.update_snapshot(snapshot_properties=summary).overwrite() as ow:
                    for old, _ in rewritten:
                        ow.delete_data_file(old)
                    for f in [*kept, *files]:
                        ow.append_data_file(f)
                txn.commit_transaction()
            except _retryable() as exc:
                self.conflicts += 1
                for f in kept:  # this attempt's own rewrites: never referenced by any snapshot
                    try:
                        io.delete(f.file_path)
                    except OSError:
                        pass
                if attempt == MAX_COMMIT_ATTEMPTS:
                    raise CommitError(f"run {m.run_id}: commit {m.commit} failed {attempt} times on conflicts "
                                      f"with other commits ({type(exc).__name__}: {exc})") from exc
                wait = min(5.0, 0.05 * 2 ** attempt) * (0.5 + random.random())
                self.log(f"commit {m.commit} of run {m.run_id}: another commit came first "
                         f"({type(exc).__name__}); planning again in {wait:.2f} s")
                time.sleep(wait)
                continue
            self.ice.refresh()
            return self.ice.current_snapshot().snapshot_id
        raise AssertionError("unreachable")
