"""The labels table's history: runs read from snapshot summaries, rollback, resuming a backfill, orphan files.

Every commit of a run carries the run's :class:`~genre_core.label_commit.RunManifest` in its snapshot summary,
so the table itself says which runs wrote it, with which models, how far each got and what it found.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from genre_core import storage
from genre_core.label_commit import RUN_PROPERTY, RunManifest
from genre_core.label_table import LabelTable, open_table


@dataclass(frozen=True)
class Commit:
    """One snapshot of the current state's history (oldest first), with the run manifest when it is a run's."""

    snapshot_id: int
    committed_at: str
    operation: str
    added_records: int
    deleted_records: int
    total_records: int
    run: RunManifest | None

    def describe(self) -> str:
        head = f"snapshot {self.snapshot_id}  {self.committed_at}  {self.operation:<9} rows {self.total_records:>9}"
        if self.run is None:
            return head
        r = self.run
        return (f"{head}  run {r.run_id} ({r.mode}) commit {r.commit}: +{r.commit_rows} tracks, "
                f"{r.n_rows}/{r.n_todo} of the run, model {r.model_version}")


def _commit(snapshot: Any) -> Commit:
    props = snapshot.summary.additional_properties if snapshot.summary else {}
    raw = props.get(RUN_PROPERTY)
    when = datetime.fromtimestamp(snapshot.timestamp_ms / 1000, timezone.utc).isoformat(timespec="seconds")
    op = snapshot.summary.operation.value if snapshot.summary else "?"
    return Commit(snapshot.snapshot_id, when, op, int(props.get("added-records", 0)),
                  int(props.get("deleted-records", 0)), int(props.get("total-records", 0)),
                  RunManifest.from_json(raw) if raw else None)


def history(ice: Any) -> list[Commit]:
    """The commits that make up the table's current state, oldest first (a rolled-back branch is not in it)."""
    from pyiceberg.table.snapshots import ancestors_of

    return [_commit(s) for s in reversed(list(ancestors_of(ice.current_snapshot(), ice.metadata)))]


def runs(ice: Any) -> list[RunManifest]:
    """Each run of the current history as of its last commit, in the order of their first commits."""
    last: dict[str, RunManifest] = {}
    for c in history(ice):
        if c.run is not None:
            last[c.run.run_id] = c.run
    return list(last.values())


def resumable_backfill(ice: Any, model_version: str, gan_version: str | None,
                       feature_version: str) -> RunManifest | None:
    """The latest backfill with these model versions, if it never committed its last rows (it was killed):
    a backfill started now continues it. None when the latest such backfill finished (or there is none)."""
    latest = None
    for r in runs(ice):
        if r.mode == "backfill" and (r.model_version, r.gan_version or "", r.feature_version) == \
                (model_version, gan_version or "", feature_version):
            latest = r
    return None if latest is None or latest.complete else latest


def rollback(table: LabelTable, snapshot_id: int) -> Commit:
    """Make ``snapshot_id`` (an ancestor of the current state) the current state again; returns its commit.
    The later snapshots stay in the table's metadata (time travel) until snapshots are expired."""
    ice = open_table(table)
    ice.manage_snapshots().rollback_to_snapshot(snapshot_id).commit()
    ice.refresh()
    return _commit(ice.current_snapshot())


def _referenced_data_files(ice: Any) -> set[str]:
    """Every data file that any snapshot in the table's metadata refers to (rollback targets included)."""
    paths: set[str] = set()
    for snapshot in ice.metadata.snapshots:
        for manifest in snapshot.manifests(ice.io):
            for entry in manifest.fetch_manifest_entry(ice.io, discard_deleted=False):
                paths.add(entry.data_file.file_path)
    return paths


def _plain(path: str) -> str:
    return storage.strip_file_scheme(path).removeprefix("s3://").removeprefix("s3a://")


def orphan_files(table: LabelTable, older_than_s: float = 3600.0) -> list[str]:
    """Data files under the table's data folder that no snapshot refers to and that are older than
    ``older_than_s`` (files of a run that is still writing are young: they are never listed)."""
    ice = open_table(table)
    location = ice.location().rstrip("/") + "/data"
    fs, root = storage.filesystem(location)
    if not fs.exists(root):
        return []
    referenced = {_plain(p) for p in _referenced_data_files(ice)}
    now = time.time()
    out = []
    for path, info in fs.find(root, detail=True).items():
        plain = _plain(path) if storage.is_remote(location) else path
        if plain in referenced or (root + plain if not plain.startswith("/") else plain) in referenced:
            continue
        mtime = info.get("mtime") or info.get("LastModified")
        age = now - (mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime or now))
        if age >= older_than_s:
            out.append(path)
    return sorted(out)


def remove_orphan_files(table: LabelTable, older_than_s: float = 3600.0) -> list[str]:
    """Delete :func:`orphan_files` (what dead runs left behind); returns the paths removed."""
    found = orphan_files(table, older_than_s)
    location = open_table(table).location()
    fs, _ = storage.filesystem(location)
    for path in found:
        fs.rm(path)
    return found
