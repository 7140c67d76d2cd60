"""Where labels live: run-scoped staging, an atomic publish step, and a reader that sees published runs only.

Layout under an output URL (local folder or s3:// prefix)::

    _staging/<run_id>/part-00000.parquet     written while the run is going; Parquet readers skip "_" paths
    labels/run-<run_id>/part-00000.parquet     published parts: plain Parquet files any reader can read
    _published/<run_id>.json                 the commit marker, written last: the run's manifest

A run is visible only once its manifest exists (the manifest names every file of the run, so a reader never
sees a half-published run, even on S3 where copying several objects is not atomic). Part files get
deterministic names (``part-<index>``), one run never writes a track twice (checked before publishing), and
:func:`latest_labels` resolves the newest published label of each track, so a rerun never duplicates a row.
Folders of runs that died before publishing are removed by :func:`remove_unpublished`.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from genre_core import storage
from genre_core.schema import LABELS_SCHEMA, classes_of

STAGING = "_staging"
PUBLISHED = "_published"
LABELS = "labels"


class PublishError(RuntimeError):
    """A run's rows are not exactly one per catalog track; nothing was published."""


@dataclass
class Manifest:
    run_id: str
    mode: str
    catalog: str
    model_version: str
    gan_version: str | None
    feature_version: str
    classes: list[str]
    files: list[str] = field(default_factory=list)   # relative to the output root
    n_rows: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    published_at: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1, sort_keys=True)


def _fs(output: str):
    return storage.filesystem(output)


class RunWriter:
    """Stages one run's label parts, then publishes them with a manifest."""

    def __init__(self, output: str, manifest: Manifest) -> None:
        self.output = storage.absolute(output)
        self.manifest = manifest
        self.fs, self.root = _fs(self.output)
        self._staged: list[str] = []
        self._track_ids: set[str] = set()
        self._counts: dict[str, int] = {}

    @property
    def staging_dir(self) -> str:
        return posixpath.join(self.root, STAGING, self.manifest.run_id)

    def write_part(self, table: pa.Table) -> None:
        """Stage one part (deterministic name ``part-<n>``); duplicate track_ids are refused."""
        ids = table.column("track_id").to_pylist()
        dup = self._track_ids.intersection(ids) | {t for t, n in Counter(ids).items() if n > 1}
        if dup:
            raise PublishError(f"run {self.manifest.run_id} produced track(s) twice: {sorted(dup)[:10]}")
        self._track_ids.update(ids)
        for status in table.column("status").to_pylist():
            self._counts[status] = self._counts.get(status, 0) + 1
        name = f"part-{len(self._staged):05d}.parquet"
        path = posixpath.join(self.staging_dir, name)
        self.fs.makedirs(self.staging_dir, exist_ok=True)
        with self.fs.open(path, "wb") as fh:
            pq.write_table(table, fh)
        self._staged.append(name)

    def publish(self, expected_track_ids: set[str]) -> Manifest:
        """Check exactly-once coverage of ``expected_track_ids``, move parts into place, write the manifest."""
        missing = expected_track_ids - self._track_ids
        extra = self._track_ids - expected_track_ids
        if missing or extra:
            raise PublishError(
                f"run {self.manifest.run_id} not published: {len(missing)} track(s) missing "
                f"{sorted(missing)[:10]}, {len(extra)} unexpected {sorted(extra)[:10]}"
            )
        target = f"{LABELS}/run-{self.manifest.run_id}"  # not "run_id=": that would read as a Hive partition
        self.fs.makedirs(posixpath.join(self.root, target), exist_ok=True)
        files = []
        for name in self._staged:
            src = posixpath.join(self.staging_dir, name)
            self.fs.copy(src, posixpath.join(self.root, target, name))
            files.append(f"{target}/{name}")
        m = self.manifest
        m.files, m.n_rows, m.status_counts = files, len(self._track_ids), dict(sorted(self._counts.items()))
        m.published_at = datetime.now(timezone.utc).isoformat()
        marker = posixpath.join(self.root, PUBLISHED, f"{m.run_id}.json")
        self.fs.makedirs(posixpath.join(self.root, PUBLISHED), exist_ok=True)
        with self.fs.open(marker, "w") as fh:  # the commit point
            fh.write(m.to_json())
        self.fs.rm(self.staging_dir, recursive=True)
        return m


def manifests(output: str) -> list[Manifest]:
    """Published runs, oldest first."""
    fs, root = _fs(storage.absolute(output))
    folder = posixpath.join(root, PUBLISHED)
    if not fs.exists(folder):
        return []
    out = []
    for path in fs.glob(posixpath.join(folder, "*.json")):
        with fs.open(path, "r") as fh:
            out.append(Manifest(**json.load(fh)))
    return sorted(out, key=lambda m: (m.published_at, m.run_id))


def remove_unpublished(output: str) -> list[str]:
    """Delete staging folders and label folders of runs that never published; returns what was removed."""
    fs, root = _fs(storage.absolute(output))
    published = {m.run_id for m in manifests(output)}
    removed = []
    for pattern in (f"{STAGING}/*", f"{LABELS}/run-*"):
        for path in fs.glob(posixpath.join(root, pattern)):
            run_id = path.rsplit("/", 1)[-1].removeprefix("run-")
            if run_id not in published or pattern.startswith(STAGING):
                fs.rm(path, recursive=True)
                removed.append(path)
    return removed


def read_run(output: str, manifest: Manifest) -> pa.Table:
    fs, root = _fs(storage.absolute(output))
    tables = [pq.read_table(posixpath.join(root, f), filesystem=fs) for f in manifest.files]
    if not tables:
        return LABELS_SCHEMA.empty_table()
    return pa.concat_tables(tables)


def latest_labels(output: str) -> pd.DataFrame:
    """The newest published label of every track (one row per track), with the class list in ``attrs``."""
    runs = manifests(output)
    frames, classes = [], None
    for order, m in enumerate(runs):
        table = read_run(output, m)
        classes = classes_of(table.schema) or m.classes or classes
        df = table.to_pandas()
        df["_order"] = order
        frames.append(df)
    if not frames:
        df = LABELS_SCHEMA.empty_table().to_pandas()
    else:
        df = pd.concat(frames, ignore_index=True)
        df = df.sort_values("_order").drop_duplicates("track_id", keep="last").drop(columns="_order")
        df = df.sort_values("track_id", ignore_index=True)
    df.attrs["classes"] = classes or []
    return df
