"""A catalog as a list of Parquet files (and row-group pieces), checked from their footers alone.

``--catalog`` is one Parquet file, or a folder/prefix whose ``*.parquet`` files make the catalog (so the output
folder of ``genre-job make-catalog``, with its audio next to the catalog file, works as it is). The footers say
whether each file is readable Parquet with the required columns and how many rows it holds, before any work is
started; the rows themselves are read by the cluster, a piece (a few row groups) per task (:func:`read_piece`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from genre_core import storage
from genre_core.schema import CatalogError, check_catalog_columns

PIECE_ROWS = 500_000  # rows per read task, about (whole row groups)


@dataclass(frozen=True)
class CatalogPiece:
    """Row groups ``row_groups`` of the file ``url``, whose first row is row ``first_row`` of the catalog."""

    url: str
    row_groups: tuple[int, ...]
    first_row: int
    n_rows: int


@dataclass(frozen=True)
class CatalogFiles:
    url: str
    pieces: tuple[CatalogPiece, ...]
    columns: tuple[str, ...]

    @property
    def n_rows(self) -> int:
        return sum(p.n_rows for p in self.pieces)


def _files(url: str) -> list[str]:
    fs, path = storage.filesystem(url)
    scheme = "s3://" if url.startswith("s3://") else ""
    if fs.isfile(path):
        return [url]
    if fs.isdir(path):
        found = sorted(fs.glob(path.rstrip("/") + "/*.parquet"))
        if found:
            return [scheme + f for f in found]
    raise CatalogError(f"catalog not found: {url} (a Parquet file or folder with track_id and audio_uri; "
                       "`genre-job make-catalog --per-genre 8 --out DIR` renders a demo one at "
                       "DIR/catalog.parquet)")


def catalog_files(url: str, piece_rows: int = PIECE_ROWS) -> CatalogFiles:
    """The catalog's files split into pieces of about ``piece_rows`` rows; raises :class:`CatalogError` naming
    a file that is not readable Parquet or lacks a required column."""
    pieces, columns, offset = [], None, 0
    for f in _files(url):
        fs, path = storage.filesystem(f)
        try:
            with fs.open(path, "rb") as fh:
                meta = pq.ParquetFile(fh).metadata
                schema = meta.schema.to_arrow_schema()
        except (pa.ArrowInvalid, OSError) as exc:
            raise CatalogError(f"catalog {url} is not readable Parquet: {f}: {exc}") from exc
        try:
            check_catalog_columns(schema.names)
        except ValueError as exc:
            raise CatalogError(f"catalog {url}: {f}: {exc}" if f != url else f"catalog {url}: {exc}") from exc
        columns = tuple(schema.names) if columns is None else tuple(c for c in columns if c in schema.names)
        groups: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= piece_rows or g == meta.num_row_groups - 1:
                pieces.append(CatalogPiece(f, tuple(groups), offset, rows))
                offset += rows
                groups, rows = [], 0
    return CatalogFiles(url, tuple(pieces), columns or ())


def read_piece(piece: CatalogPiece, columns: list[str]) -> pa.Table:
    """The piece's rows (only ``columns``), with ``_row``: each row's number in the whole catalog."""
    fs, path = storage.filesystem(piece.url)
    with fs.open(path, "rb") as fh:
        table = pq.ParquetFile(fh).read_row_groups(list(piece.row_groups), columns=columns)
    return table.append_column("_row", pa.array(range(piece.first_row, piece.first_row + table.num_rows),
                                                pa.int64()))
