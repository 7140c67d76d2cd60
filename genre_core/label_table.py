"""The labels: an Apache Iceberg table (pyiceberg), one row per track, each run's commits as snapshots.

Where it lives (:class:`LabelTable`): a pyiceberg catalog, given by its properties, and a warehouse (local folder
or s3:// prefix). The embedded default for a local ``--output LABELS`` is a SQL catalog in the SQLite file
``LABELS/catalog.db`` with the table's files under ``LABELS/warehouse/``, so nothing needs a server; any other
pyiceberg catalog (REST, Glue, Hive, SQL on Postgres, or a SQLite file of its own next to an s3:// warehouse)
comes from configuration (the ``labels.catalog`` section of the job's YAML, or ``--table-catalog URI``).

Any engine reads the table (Spark, Trino, DuckDB, Ray's ``read_iceberg``, pyiceberg's scan); readers see a run's
rows only once a commit holding them is made (:mod:`genre_core.label_commit`). The columns are those of
:data:`genre_core.schema.LABELS_SCHEMA`, ``track_id`` the identifier field; the class list that ``probabilities``
is aligned to is a table property per model version (:data:`CLASSES_PROPERTY`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from genre_core import storage
from genre_core.config import ConfigError, from_dict
from genre_core.schema import LABEL_COLUMNS, LABELS_SCHEMA

NAMESPACE = "genre_tagger"
TABLE = "labels"
CATALOG_FILE = "catalog.db"
WAREHOUSE_DIR = "warehouse"
CLASSES_PROPERTY = "genre_tagger.classes"          # JSON {model_version: [class, ...]}
LATEST_CLASSES_PROPERTY = "genre_tagger.classes.latest"
# Our commits retry themselves (genre_core.label_commit): the rows an upsert replaces depend on the snapshot it
# is planned against, so a conflict means planning again, not replaying the same change.
TABLE_PROPERTIES = {"commit.retry.num-retries": "0", "format-version": "2"}


class LabelsNotFound(FileNotFoundError):
    """There is no labels table (yet) where one was looked for."""


@dataclass(frozen=True)
class TableSettings:
    """The ``labels:`` section of the job's YAML: where the table's catalog is and how runs commit."""

    catalog: dict[str, str] = field(default_factory=dict)  # pyiceberg catalog properties (type, uri, ...)
    namespace: str = NAMESPACE
    table: str = TABLE
    commit_every: int = 50_000        # songs per Iceberg commit of a run
    curated_column: str = "curated_genre"  # catalog column of genres set by a person

    @classmethod
    def from_yaml_section(cls, section: dict[str, Any] | None) -> TableSettings:
        return from_dict(cls, section, "labels")


@dataclass(frozen=True)
class LabelTable:
    """A labels table: the pyiceberg catalog's properties (``name`` included) and the table identifier."""

    catalog: dict[str, str]
    namespace: str = NAMESPACE
    name: str = TABLE
    warehouse: str = ""
    output: str = ""    # the --output it was located from

    def not_found(self) -> LabelsNotFound:
        return LabelsNotFound(f"no labels table {self.describe()}. Label a catalog first: `genre-job label "
                              f"--catalog CATALOG --output {self.output or 'LABELS'}`")

    @property
    def identifier(self) -> str:
        return f"{self.namespace}.{self.name}"

    def describe(self) -> str:
        where = self.catalog.get("uri") or self.catalog.get("type", "?")
        return f"{self.identifier} (catalog {where}, warehouse {self.warehouse or '-'})"

    @property
    def sqlite_file(self) -> str | None:
        """The SQLite file of an embedded SQL catalog (None for any other catalog)."""
        uri = self.catalog.get("uri", "")
        return uri[len("sqlite:///"):] if uri.startswith("sqlite:///") and "memory" not in uri else None

    def load_catalog(self):
        from pyiceberg.catalog import load_catalog

        props = dict(self.catalog)
        return load_catalog(props.pop("name"), **props)

    def ray_catalog_kwargs(self) -> dict[str, str]:
        """``catalog_kwargs`` of Ray Data's ``read_iceberg`` / ``write_iceberg`` for this table."""
        return dict(self.catalog)


def _s3_properties() -> dict[str, str]:
    """The S3 endpoint and region from the standard AWS variables (credentials stay in the environment)."""
    props = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    if endpoint:
        props["s3.endpoint"] = endpoint
    if os.environ.get("AWS_DEFAULT_REGION"):
        props["s3.region"] = os.environ["AWS_DEFAULT_REGION"]
    return props


def locate(output: str, settings: TableSettings | None = None, catalog_uri: str | None = None) -> LabelTable:
    """The labels table of ``--output`` (the warehouse), with the catalog of ``settings``/``catalog_uri``, else
    the embedded SQLite catalog beside a local warehouse."""
    settings = settings or TableSettings()
    output = storage.absolute(output.rstrip("/"))
    remote = storage.is_remote(output)
    warehouse = output if remote else f"file://{output}/{WAREHOUSE_DIR}"
    props: dict[str, str] = {"name": "genre_tagger", **{k: str(v) for k, v in settings.catalog.items()}}
    if catalog_uri:
        props.update(type="sql", uri=catalog_uri)
    if "uri" not in props and "type" not in props:
        if remote:
            raise ConfigError(
                f"the labels warehouse {output} is on object storage: give the table a catalog that every run "
                "shares, with --table-catalog sqlite:////shared/path/labels.db (or postgresql://...), or a "
                "labels.catalog section in the config (any pyiceberg catalog: rest, glue, hive, sql)")
        props.update(type="sql", uri=f"sqlite:///{output}/{CATALOG_FILE}")
    props.setdefault("warehouse", warehouse)
    props.setdefault("py-io-impl", "pyiceberg.io.fsspec.FsspecFileIO")  # s3fs, as the rest of the project
    if remote or props["warehouse"].startswith("s3://"):
        for k, v in _s3_properties().items():
            props.setdefault(k, v)
    return LabelTable(catalog=props, namespace=settings.namespace, name=settings.table, warehouse=props["warehouse"],
                      output=output)


def iceberg_schema():
    """The Iceberg schema of the labels (field ids fixed here, ``track_id`` the identifier field)."""
    from pyiceberg.io.pyarrow import pyarrow_to_schema
    from pyiceberg.schema import Schema
    from pyiceberg.table.name_mapping import MappedField, NameMapping

    fields, next_id = [], 1
    for f in LABELS_SCHEMA:
        sub = []
        if pa.types.is_list(f.type):
            sub = [MappedField(field_id=next_id + 1, names=["element"])]
        fields.append(MappedField(field_id=next_id, names=[f.name], fields=sub))
        next_id += 1 + len(sub)
    schema = pyarrow_to_schema(LABELS_SCHEMA, name_mapping=NameMapping(fields))
    return Schema(*schema.fields, schema_id=0, identifier_field_ids=[schema.find_field("track_id").field_id])


def open_table(table: LabelTable, create: bool = False):
    """The pyiceberg table; with ``create`` it (and its namespace) is made when missing."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    sqlite = table.sqlite_file
    if sqlite is not None and not os.path.exists(sqlite):
        if not create:
            raise table.not_found()
        os.makedirs(os.path.dirname(sqlite) or ".", exist_ok=True)
    catalog = table.load_catalog()
    try:
        ice = catalog.load_table(table.identifier)
    except (NoSuchTableError, NoSuchNamespaceError):
        if not create:
            raise table.not_found() from None
        catalog.create_namespace_if_not_exists(table.namespace)
        ice = catalog.create_table_if_not_exists(table.identifier, schema=iceberg_schema(),
                                                 properties=TABLE_PROPERTIES)
    if create:
        ice = _add_new_columns(ice)
    if table.warehouse and not ice.location().startswith(table.warehouse.rstrip("/") + "/"):
        raise ConfigError(f"the table {table.identifier} of catalog {table.catalog.get('uri', table.catalog)} "
                          f"lives at {ice.location()}, not in the warehouse {table.warehouse} named by --output: "
                          "give this warehouse a catalog (or a table name, labels.table) of its own")
    return ice


def _add_new_columns(ice):
    """A table made by an earlier release lacks the columns added since (e.g. ``gan_probabilities``): a writer
    adds them (Iceberg schema evolution, a metadata-only commit), and the old rows read them as null."""
    missing = [name for name in LABEL_COLUMNS if name not in ice.schema().column_names]
    if not missing:
        return ice
    with ice.update_schema() as update:
        update.union_by_name(iceberg_schema())
    return ice.refresh()


def classes_by_model(ice) -> dict[str, list[str]]:
    return json.loads(ice.properties.get(CLASSES_PROPERTY, "{}"))


def as_labels_frame(arrow: pa.Table, classes: list[str]) -> pd.DataFrame:
    """Label rows as a DataFrame in the labels column order, sorted by track_id, the class list in ``attrs``."""
    df = arrow.to_pandas()
    df = df[[c for c in LABEL_COLUMNS if c in df.columns]].sort_values("track_id", ignore_index=True)
    df.attrs["classes"] = classes
    return df


def read_labels(table: LabelTable, snapshot_id: int | None = None, columns: tuple[str, ...] | None = None,
                row_filter: Any = None) -> pd.DataFrame:
    """Every track's label (one row per track) as of the current snapshot (or ``snapshot_id``); raises
    :class:`LabelsNotFound` when there is no table. ``attrs["classes"]``: the class list of the latest commit."""
    ice = open_table(table)
    kwargs: dict[str, Any] = {"snapshot_id": snapshot_id}
    if columns:
        kwargs["selected_fields"] = tuple(columns)
    if row_filter is not None:
        kwargs["row_filter"] = row_filter
    arrow = ice.scan(**kwargs).to_arrow()
    if ice.current_snapshot() is None:
        arrow = LABELS_SCHEMA.empty_table() if not columns else LABELS_SCHEMA.empty_table().select(list(columns))
    return as_labels_frame(arrow, json.loads(ice.properties.get(LATEST_CLASSES_PROPERTY, "[]")))
