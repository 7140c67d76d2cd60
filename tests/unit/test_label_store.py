"""Staging, publishing and reading labels on a local folder (the same code runs on s3://)."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest

from genre_core.label_store import Manifest, PublishError, RunWriter, latest_labels, manifests, remove_unpublished
from genre_core.schema import labels_table

CLASSES = ["jazz", "rock"]


def _rows(ids, genre="rock", run_id="r1", model="cnn-a"):
    return labels_table([{
        "track_id": t, "genre": genre, "status": "classified", "confidence": 0.9, "margin": 0.8,
        "probabilities": [0.1, 0.9], "n_slices": 10, "duration_s": 30.0, "error": None, "model_version": model,
        "gan_version": None, "feature_version": "fv-x", "run_id": run_id,
        "labelled_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
    } for t in ids], CLASSES)


def _writer(out, run_id, model="cnn-a"):
    return RunWriter(str(out), Manifest(run_id=run_id, mode="nightly", catalog="c", model_version=model,
                                        gan_version=None, feature_version="fv-x", classes=CLASSES))


def test_a_run_is_invisible_until_published_then_plain_parquet(tmp_path):
    w = _writer(tmp_path, "r1")
    w.write_part(_rows(["a", "b"]))
    w.write_part(_rows(["c"]))
    assert latest_labels(str(tmp_path)).empty and manifests(str(tmp_path)) == []
    m = w.publish({"a", "b", "c"})
    assert m.n_rows == 3 and m.status_counts == {"classified": 3}
    assert m.files == ["labels/run-r1/part-00000.parquet", "labels/run-r1/part-00001.parquet"]
    assert not (tmp_path / "_staging" / "r1").exists()
    plain = pq.read_table(tmp_path / "labels").to_pandas()  # any Parquet reader, no Hive partition clash
    assert sorted(plain["track_id"]) == ["a", "b", "c"]
    latest = latest_labels(str(tmp_path))
    assert list(latest["track_id"]) == ["a", "b", "c"] and latest.attrs["classes"] == CLASSES


def test_latest_label_per_track_across_runs(tmp_path):
    w = _writer(tmp_path, "r1")
    w.write_part(_rows(["a", "b"], genre="rock"))
    w.publish({"a", "b"})
    w = _writer(tmp_path, "r2", model="cnn-b")
    w.write_part(_rows(["b"], genre="jazz", run_id="r2", model="cnn-b"))
    w.publish({"b"})
    latest = latest_labels(str(tmp_path)).set_index("track_id")
    assert len(latest) == 2
    assert latest.at["a", "genre"] == "rock" and latest.at["b", "genre"] == "jazz"
    assert latest.at["b", "model_version"] == "cnn-b"


def test_duplicates_and_missing_tracks_are_never_published(tmp_path):
    w = _writer(tmp_path, "r1")
    w.write_part(_rows(["a", "b"]))
    with pytest.raises(PublishError, match="twice"):
        w.write_part(_rows(["b"]))
    with pytest.raises(PublishError, match="1 track\\(s\\) missing"):
        w.publish({"a", "b", "c"})
    assert manifests(str(tmp_path)) == []


def test_remove_unpublished_keeps_published_runs(tmp_path):
    w = _writer(tmp_path, "good")
    w.write_part(_rows(["a"]))
    w.publish({"a"})
    dead = _writer(tmp_path, "dead")
    dead.write_part(_rows(["a"]))
    (tmp_path / "labels" / "run-orphan").mkdir()  # a publish that died after copying, before the marker
    removed = remove_unpublished(str(tmp_path))
    assert len(removed) == 2
    assert (tmp_path / "labels" / "run-good").exists() and not (tmp_path / "_staging" / "dead").exists()
    assert list(latest_labels(str(tmp_path))["track_id"]) == ["a"]
