"""Planning a labelling run on the cluster: which catalog tracks lack a current label (genre_core.label_selection).

A hash-partitioned anti-join in plain Ray tasks, so the driver never holds the catalog or the labels:

    catalog pieces (a few row groups each) --split_catalog--> P buckets by hash(track_id)
    labels table data files (a group per task) --split_labels--> the current labels' track_ids, same P buckets
    bucket p: catalog part p anti-joined with labels part p, checked for null/duplicate ids --> todo part p

The driver reads the catalog's Parquet footers and the table's manifests (metadata), gets back per bucket only the
counts and any faults, and hands the todo parts (object references) to the labelling pipeline, cut into blocks
(:func:`todo_blocks`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from genre_core.catalog_files import CatalogFiles, CatalogPiece, read_piece
from genre_core.label_selection import (
    LABEL_SELECTION_COLUMNS,
    Selection,
    anti_join,
    catalog_curation,
    current_labels,
    track_id_hashes,
)
from genre_core.label_table import LabelsNotFound, LabelTable, open_table
from genre_core.schema import CatalogError, catalog_fault_message, catalog_faults, merge_catalog_faults

BUCKET_ROWS = 1_000_000   # catalog rows per anti-join bucket
LABEL_TASK_ROWS = 1_000_000  # label rows read per task
PLAN_CPUS = 0.5


@dataclass
class Plan:
    todo_parts: list[Any]   # object references of Arrow tables: the catalog rows to label (track_id, audio_uri, ...)
    part_rows: list[int]
    n_todo: int
    n_catalog: int
    seconds: float


def _buckets(table: pa.Table, n: int) -> list[pa.Table]:
    """``table`` split into ``n`` parts by a hash of track_id (the same in every process)."""
    if n == 1:
        return [table]
    keys = track_id_hashes(table.column("track_id")) % np.uint64(n)
    return [table.filter(pa.array(keys == b)) for b in range(n)]


@ray.remote(num_cpus=PLAN_CPUS)
def _split_catalog(piece: CatalogPiece, columns: list[str], n: int) -> Any:
    parts = _buckets(read_piece(piece, columns), n)
    return parts[0] if n == 1 else tuple(parts)


@ray.remote(num_cpus=PLAN_CPUS)
def _split_labels(files: list[Any], metadata: Any, io: Any, selection: Selection, n: int) -> Any:
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.table import FileScanTask

    schema = metadata.schema().select(*LABEL_SELECTION_COLUMNS)
    rows = ArrowScan(metadata, io, schema, AlwaysTrue()).to_table([FileScanTask(f) for f in files])
    parts = _buckets(current_labels(rows, selection), n)
    return parts[0] if n == 1 else tuple(parts)


@ray.remote(num_cpus=PLAN_CPUS, num_returns=2)
def _select_bucket(curated_column: str | None, n_catalog: int, *parts: pa.Table) -> tuple[pa.Table, dict]:
    catalog = pa.concat_tables(parts[:n_catalog], promote_options="permissive")
    labels = pa.concat_tables(parts[n_catalog:]) if len(parts) > n_catalog else None
    faults = catalog_faults(catalog.select(["track_id", "audio_uri", "_row"]))
    if labels is None:
        labels = pa.table({"track_id": pa.array([], pa.string()), "label_curated": pa.array([], pa.string())})
    todo = anti_join(catalog, labels, curated_column).drop_columns(["_row"])
    if curated_column:
        # Ray Data hands a string column that is null in every row of a block to the next stage as float NaN,
        # which then fails to merge with the same column as strings from another block (the quirk that
        # label_pipeline.restore_nulls undoes for the columns the stages write): this column comes from the catalog,
        # so it is never null in the pipeline: "" for "not curated" (the writer reads a blank as none).
        todo = todo.set_column(todo.schema.get_field_index(curated_column), curated_column,
                               catalog_curation(todo, curated_column))
    return todo, {"faults": faults, "n_todo": todo.num_rows, "n_catalog": catalog.num_rows}


def _label_file_groups(table: LabelTable) -> tuple[list[list[Any]], Any, Any]:
    try:
        ice = open_table(table)
    except LabelsNotFound:
        return [], None, None
    if ice.current_snapshot() is None:
        return [], ice.metadata, ice.io
    groups: list[list[Any]] = [[]]
    rows = 0
    for task in ice.scan(selected_fields=LABEL_SELECTION_COLUMNS).plan_files():
        if rows >= LABEL_TASK_ROWS:
            groups.append([])
            rows = 0
        groups[-1].append(task.file)
        rows += task.file.record_count
    return groups, ice.metadata, ice.io


def plan_run(files: CatalogFiles, table: LabelTable, selection: Selection, curated_column: str | None,
             limit: int | None = None) -> Plan:
    """The run's todo as a dataset, from the catalog and the table (Ray must be initialised); raises
    :class:`CatalogError` naming null or duplicate track_ids and null audio_uris (by catalog row)."""
    started = time.perf_counter()
    catalog_url = files.url
    columns = ["track_id", "audio_uri"] + ([curated_column] if curated_column in files.columns else [])
    n = max(1, -(-files.n_rows // BUCKET_ROWS))
    cat = [_split_catalog.options(num_returns=n).remote(p, columns, n) for p in files.pieces]
    groups, metadata, io = _label_file_groups(table)
    lab = []
    if groups and groups[0]:
        meta_ref, io_ref = ray.put(metadata), ray.put(io)
        lab = [_split_labels.options(num_returns=n).remote(g, meta_ref, io_ref, selection, n) for g in groups]

    def part(refs: Any, b: int) -> Any:
        return refs if n == 1 else refs[b]

    todo_refs, infos = [], []
    for b in range(n):
        t, info = _select_bucket.remote(curated_column if curated_column in columns else None, len(cat),
                                        *[part(r, b) for r in cat], *[part(r, b) for r in lab])
        todo_refs.append(t)
        infos.append(info)
    got = ray.get(infos)
    message = catalog_fault_message(catalog_url, merge_catalog_faults([g["faults"] for g in got]))
    if message:
        raise CatalogError(message)
    n_todo = sum(g["n_todo"] for g in got)
    if limit is not None and limit < n_todo:
        todo_refs, got, n_todo = _limited(todo_refs, got, limit), None, limit
    counts = [g["n_todo"] for g in got] if got else [ray.get(_num_rows.remote(r)) for r in todo_refs]
    return Plan(todo_refs, counts, n_todo, files.n_rows, time.perf_counter() - started)


@ray.remote(num_cpus=PLAN_CPUS)
def _num_rows(table: pa.Table) -> int:
    return table.num_rows


@ray.remote(num_cpus=PLAN_CPUS)
def _head(table: pa.Table, n: int) -> pa.Table:
    return table.slice(0, n)


def _limited(refs: list[Any], infos: list[dict], limit: int) -> list[Any]:
    out, left = [], limit
    for ref, info in zip(refs, infos, strict=True):
        if left <= 0:
            break
        take = min(left, info["n_todo"])
        out.append(ref if take == info["n_todo"] else _head.remote(ref, take))
        left -= take
    return out


@ray.remote(num_cpus=PLAN_CPUS)
def _chunks(table: pa.Table, k: int) -> Any:
    parts = [table.slice(i, k) for i in range(0, table.num_rows, k)]
    return parts[0] if len(parts) == 1 else tuple(parts)


def todo_blocks(plan: Plan, k: int) -> list[Any]:
    """The plan's todo as object references of blocks of ``k`` songs (made before the pipeline's pools start,
    which may then hold every CPU)."""
    blocks = []
    for ref, n in zip(plan.todo_parts, plan.part_rows, strict=True):
        m = -(-n // k)
        if m == 1:
            blocks.append(ref)
        elif m > 1:
            blocks.extend(_chunks.options(num_returns=m).remote(ref, k))
    return blocks
