"""The labels table on a local warehouse with its SQLite catalog (the same code runs on s3://): commits, upserts,
conflicts between runs, history, rollback, orphan files, the selection of what a run labels. No Ray."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from genre_core.label_commit import CommitError, RunCommitter, RunManifest, write_part
from genre_core.label_runs import history, orphan_files, remove_orphan_files, resumable_backfill, rollback, runs
from genre_core.label_selection import Selection, anti_join, current_labels
from genre_core.label_table import LabelsNotFound, locate, open_table, read_labels
from genre_core.label_writer import label_rows
from genre_core.schema import LABEL_COLUMNS, labels_table

CLASSES = ["jazz", "rock"]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _rows(ids, genre="rock", run_id="r1", model="cnn-a", status="classified", at=T0):
    return labels_table([{
        "track_id": t, "genre": genre, "status": status, "confidence": 0.9, "margin": 0.8,
        "probabilities": [0.1, 0.9], "n_slices": 10, "duration_s": 30.0, "error": None, "model_version": model,
        "gan_version": None, "feature_version": "fv-x", "run_id": run_id, "labelled_at": at,
    } for t in ids], CLASSES)


def _committer(table, run_id, mode="nightly", model="cnn-a", n_todo=0, every=50_000, **kw):
    return RunCommitter(table, RunManifest(run_id=run_id, mode=mode, catalog="c", model_version=model,
                                           gan_version=None, feature_version="fv-x", classes=CLASSES, n_todo=n_todo,
                                           started_at=T0.isoformat()), every, log=lambda _: None, **kw)


def _write(c, ids, **kw):
    return write_part(*c.target, _rows(ids, run_id=c.manifest.run_id, **kw), c.manifest.run_id)


def test_rows_are_invisible_until_committed_then_one_row_per_track(tmp_path):
    table = locate(str(tmp_path / "labels"))
    with pytest.raises(LabelsNotFound, match="Label a catalog first"):
        read_labels(table)
    assert not (tmp_path / "labels").exists()  # looking never creates anything
    c = _committer(table, "r1", n_todo=3)
    part = _write(c, ["a", "b"])
    assert c.add(part) is None  # pending, not committed
    reader = open_table(table)  # a second reader, its own catalog connection
    assert read_labels(table).empty and reader.scan().to_arrow().num_rows == 0
    c.add(_write(c, ["c"]))
    snapshot = c.commit()
    reader.refresh()
    assert reader.current_snapshot().snapshot_id == snapshot and reader.scan().to_arrow().num_rows == 3
    got = read_labels(table)
    assert list(got["track_id"]) == ["a", "b", "c"] and list(got.columns) == list(LABEL_COLUMNS)
    assert got.attrs["classes"] == CLASSES
    (run,) = runs(reader)
    assert (run.n_rows, run.commit, run.status_counts, run.complete) == (3, 1, {"classified": 3}, True)


def test_a_later_run_replaces_the_rows_of_its_tracks_only(tmp_path):
    table = locate(str(tmp_path / "labels"))
    c = _committer(table, "r1")
    c.add(_write(c, ["a", "b", "c"]))
    c.commit()
    c2 = _committer(table, "r2", model="cnn-b")
    c2.add(_write(c2, ["b"], genre="jazz", model="cnn-b"))
    c2.add(_write(c2, ["d"], genre="jazz", model="cnn-b"))
    c2.commit()
    got = read_labels(table).set_index("track_id")
    assert list(got.index) == ["a", "b", "c", "d"]
    assert got.at["a", "genre"] == "rock" and got.at["b", "genre"] == "jazz" and got.at["b", "run_id"] == "r2"
    ice = open_table(table)
    commits = history(ice)
    assert [(x.run.run_id, x.total_records) for x in commits] == [("r1", 3), ("r2", 4)]
    assert commits[1].deleted_records == 3 and commits[1].added_records == 4  # the file of a,b,c rewritten as a,c


def test_commits_every_n_songs_and_refuses_a_track_twice(tmp_path):
    table = locate(str(tmp_path / "labels"))
    c = _committer(table, "r1", every=2, n_todo=5)
    assert c.add(_write(c, ["a"])) is None
    assert c.add(_write(c, ["b"])) is not None  # 2 pending: committed
    assert c.add(_write(c, ["c", "d"])) is not None
    with pytest.raises(CommitError, match=r"produced track\(s\) twice: \['a'\]"):
        c.add(_write(c, ["a", "e"]))
    assert [r.n_rows for r in runs(open_table(table))] == [4]
    assert [x.run.commit for x in history(open_table(table))] == [1, 2]
    assert len(read_labels(table)) == 4


def test_a_commit_that_meets_another_plans_again_and_loses_nothing(tmp_path):
    """Run r2 commits (for real) while r1 is between planning its commit and making it: r1's commit fails on
    the catalog's check, r1 plans again against r2's snapshot, and every track ends up once."""
    table = locate(str(tmp_path / "labels"))
    base = _committer(table, "r0")
    base.add(_write(base, ["a", "b", "c"]))
    base.commit()
    other = _committer(table, "r2")
    other.add(_write(other, ["b", "x"], genre="jazz"))
    state = {"done": False}

    def rewrite_then_let_r2_commit(fn, files):
        out = [fn(f) for f in files]
        if not state["done"]:
            state["done"] = True
            other.commit()
        return out

    c = _committer(table, "r1", rewrite_map=rewrite_then_let_r2_commit)
    c.add(_write(c, ["b", "c", "x"], genre="blues"))
    c.commit()
    assert c.conflicts == 1
    got = read_labels(table).set_index("track_id")
    assert sorted(got.index) == ["a", "b", "c", "x"]  # 0 lost, 0 duplicated
    assert dict(got["run_id"]) == {"a": "r0", "b": "r1", "c": "r1", "x": "r1"}  # the later commit wins
    assert [x.run.run_id for x in history(open_table(table))] == ["r0", "r2", "r1"]
    # the failed attempt's rewritten files were r1's own and are gone; nothing is orphaned
    assert orphan_files(table, older_than_s=0) == []


def test_rollback_and_orphan_files_of_a_dead_run(tmp_path):
    table = locate(str(tmp_path / "labels"))
    c = _committer(table, "r1")
    c.add(_write(c, ["a"]))
    first = c.commit()
    c2 = _committer(table, "r2")
    c2.add(_write(c2, ["a", "b"], genre="jazz"))
    c2.commit()
    dead = _committer(table, "dead")
    written = _write(dead, ["c"])  # a run killed before its commit: its file is referenced by nothing
    assert orphan_files(table, older_than_s=3600) == []  # young: could belong to a run still writing
    orphans = orphan_files(table, older_than_s=0)
    assert [os.path.basename(p) for p in orphans] == [os.path.basename(written.data_files[0].file_path)]
    old = time.time() - 7200
    os.utime(orphans[0], (old, old))
    assert remove_orphan_files(table) == orphans and not os.path.exists(orphans[0])

    rollback(table, first)
    got = read_labels(table)
    assert list(got["track_id"]) == ["a"] and got["genre"].iloc[0] == "rock"
    assert [x.run.run_id for x in history(open_table(table))] == ["r1"]
    assert orphan_files(table, older_than_s=0) == []  # r2's files stay: its snapshot can be rolled forward to


def test_a_killed_backfill_is_resumed_a_finished_one_is_not(tmp_path):
    table = locate(str(tmp_path / "labels"))
    c = _committer(table, "b1", mode="backfill", model="cnn-b", n_todo=4, every=2)
    c.add(_write(c, ["a", "b"], model="cnn-b"))
    ice = open_table(table)
    resumed = resumable_backfill(ice, "cnn-b", None, "fv-x")
    assert resumed.run_id == "b1" and resumed.n_rows == 2 and not resumed.complete
    assert resumable_backfill(ice, "cnn-c", None, "fv-x") is None  # other models: a backfill of its own
    c.add(_write(c, ["c", "d"], model="cnn-b"))
    ice.refresh()
    assert resumable_backfill(ice, "cnn-b", None, "fv-x") is None


def _catalog(ids, curated=None):
    cols = {"track_id": ids, "audio_uri": [f"/a/{t}.flac" for t in ids]}
    if curated is not None:
        cols["curated_genre"] = curated
    return pa.table(cols)


def test_selection_nightly_backfill_resume_and_curation():
    labels = pa.concat_tables([
        _rows(["a"], model="cnn-a"),
        _rows(["b"], model="cnn-a", status="error", genre=None),
        _rows(["c"], model="cnn-old"),
        _rows(["d"], model="cnn-a", status="curated", genre="jazz"),
        _rows(["e"], model="cnn-a", at=datetime(2026, 2, 1, tzinfo=timezone.utc)),
        _rows(["f"], model="cnn-a"),
    ])
    catalog = _catalog(["a", "b", "c", "d", "e", "f", "new"], curated=[None, None, None, "jazz", None, " rock ", None])
    nightly = Selection("nightly", "cnn-a", None, "fv-x")

    def todo(sel, cat=catalog):
        return anti_join(cat, current_labels(labels, sel), "curated_genre")["track_id"].to_pylist()

    # errors retried, other models relabelled, a curated label kept, a newly curated track relabelled
    assert todo(nightly) == ["b", "c", "f", "new"]
    uncurated = _catalog(["a", "d"], curated=[None, None])
    assert todo(nightly, uncurated) == ["d"]  # the curation was taken back: the model's label again
    assert todo(nightly, _catalog(["a", "d"])) == ["d"]  # a catalog without the column: nothing is curated
    since = int(datetime(2026, 1, 15, tzinfo=timezone.utc).timestamp() * 1e6)
    backfill = Selection("backfill", "cnn-a", None, "fv-x", since_us=since)
    assert todo(backfill) == ["a", "b", "c", "d", "f", "new"]  # e was labelled by it (since it began) and stays


def test_curated_rows_keep_the_persons_genre_and_the_models_votes():
    batch = {"track_id": ["a", "b", "c"], "status": ["classified", "unclassified", "error"],
             "genre": ["rock", None, None], "confidence": [0.9, 0.4, float("nan")], "margin": [0.8, 0.1, None],
             "probabilities": [[0.1, 0.9], [0.5, 0.5], [float("nan")] * 2], "n_slices": [3, 3, 0],
             "duration_s": [15.0, 15.0, None], "error": [None, None, "undecodable: bad"],
             "curated_genre": ["jazz", float("nan"), "rock"]}
    rows = label_rows(batch, CLASSES, model_version="m", gan_version=None, feature_version="f", run_id="r",
                      labelled_at=T0, curated_column="curated_genre").to_pylist()
    assert [(r["status"], r["genre"]) for r in rows] == [("curated", "jazz"), ("unclassified", None),
                                                         ("curated", "rock")]
    assert rows[0]["probabilities"] == pytest.approx([0.1, 0.9]) and rows[0]["confidence"] == pytest.approx(0.9)
    assert rows[2]["error"] == "undecodable: bad" and rows[2]["probabilities"] is None


def test_where_the_table_lives_comes_from_output_and_configuration(tmp_path):
    from genre_core.config import ConfigError, read_yaml
    from genre_core.label_table import TableSettings

    local = locate(str(tmp_path / "labels"))
    assert local.catalog["uri"] == f"sqlite:///{tmp_path}/labels/catalog.db"
    assert local.warehouse == f"file://{tmp_path}/labels/warehouse"
    with pytest.raises(ConfigError, match="--table-catalog"):
        locate("s3://bucket/labels")  # no catalog that every run would share
    on_s3 = locate("s3://bucket/labels", catalog_uri=f"sqlite:///{tmp_path}/c.db")
    assert on_s3.warehouse == "s3://bucket/labels" and on_s3.catalog["type"] == "sql"
    cluster = TableSettings.from_yaml_section(read_yaml("configs/label-cluster.yaml")["labels"])
    assert cluster.catalog == {"type": "glue"} and cluster.commit_every == 50_000
    assert locate("s3://bucket/labels", cluster).catalog["type"] == "glue"
    with pytest.raises(ConfigError, match="unknown key"):
        TableSettings.from_yaml_section({"commit_evry": 5})
    # one catalog, two warehouses: the second one is refused rather than written into the first's table
    c = _committer(local, "r1")
    c.add(_write(c, ["a"]))
    c.commit()
    other = locate(str(tmp_path / "elsewhere"), catalog_uri=local.catalog["uri"])
    with pytest.raises(ConfigError, match="not in the warehouse"):
        open_table(other)


def test_a_table_of_an_earlier_release_gains_the_new_columns(tmp_path):
    """A table made without the GAN vote columns: the next run adds them, old rows read them as null."""
    from genre_core.label_table import iceberg_schema

    table = locate(str(tmp_path / "labels"))
    old_schema = iceberg_schema()
    old_names = [f.name for f in old_schema.fields if not f.name.startswith("gan_prob") and f.name != "gan_confidence"]
    os.makedirs(tmp_path / "labels")
    catalog = table.load_catalog()
    catalog.create_namespace_if_not_exists(table.namespace)
    ice = catalog.create_table(table.identifier, schema=old_schema.select(*old_names))
    old_rows = _rows(["a"]).select(old_names)
    ice.append(old_rows.cast(ice.schema().as_arrow()))
    assert "gan_probabilities" not in open_table(table).schema().column_names  # a reader changes nothing
    c = _committer(table, "r2")
    c.add(_write(c, ["b"]))
    c.commit()
    got = read_labels(table)
    assert list(got["track_id"]) == ["a", "b"] and list(got.columns) == list(LABEL_COLUMNS)
    assert got["gan_probabilities"].isna().all() and got["gan_confidence"].isna().all()


def test_a_table_from_before_the_reason_columns_gains_them_and_keeps_every_row(tmp_path):
    """Labels written before reason, vote_share and outside_score existed: a new run adds the columns (old rows read
    them as null) and its rows, with reasons, come in beside the old ones; no row is lost."""
    from pyiceberg.io.pyarrow import pyarrow_to_schema
    from pyiceberg.table.name_mapping import MappedField, NameMapping

    from genre_core.label_table import TABLE_PROPERTIES
    from genre_core.schema import LABELS_SCHEMA

    new = ("reason", "vote_share", "outside_score")
    old_schema = pa.schema([f for f in LABELS_SCHEMA if f.name not in new])
    fields, next_id = [], 1
    for f in old_schema:
        sub = [MappedField(field_id=next_id + 1, names=["element"])] if pa.types.is_list(f.type) else []
        fields.append(MappedField(field_id=next_id, names=[f.name], fields=sub))
        next_id += 1 + len(sub)
    table = locate(str(tmp_path / "labels"))
    os.makedirs(tmp_path / "labels", exist_ok=True)
    catalog = table.load_catalog()
    catalog.create_namespace_if_not_exists(table.namespace)
    ice = catalog.create_table(table.identifier, schema=pyarrow_to_schema(old_schema, name_mapping=NameMapping(fields)),
                               properties=TABLE_PROPERTIES)
    ice.append(_rows(["a", "b"]).select(old_schema.names).cast(old_schema))

    c = _committer(table, "r2", n_todo=2)
    rows = [{"track_id": t, "genre": None, "status": "unclassified", "reason": why, "confidence": 0.4,
             "vote_share": 0.5, "margin": 0.1, "probabilities": [0.5, 0.5], "outside_score": 3.0, "n_slices": 10,
             "duration_s": 30.0, "error": None, "model_version": "cnn-b", "gan_version": None,
             "feature_version": "fv-x", "run_id": "r2", "labelled_at": T0}
            for t, why in (("c", "outside_taxonomy"), ("d", "ambiguous_vote"))]
    c.add(write_part(*c.target, labels_table(rows, CLASSES), "r2"))
    c.commit()
    got = read_labels(table).set_index("track_id")
    assert sorted(got.index) == ["a", "b", "c", "d"]
    assert got.loc[["a", "b"], "reason"].isna().all() and got.loc[["a", "b"], "vote_share"].isna().all()
    assert list(got.loc[["c", "d"], "reason"]) == ["outside_taxonomy", "ambiguous_vote"]
    assert list(got.loc[["c", "d"], "outside_score"]) == [3.0, 3.0]
