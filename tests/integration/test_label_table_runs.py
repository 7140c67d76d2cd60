"""The labels table with real readers and real runs: a second reader (pyiceberg and Ray's read_iceberg) sees a
run's rows only after its commit, on a local warehouse and on S3 (moto server); a nightly run and a backfill
that overlap on one table, as separate processes, both finish with every track labelled once; curated genres
are kept through nightly and backfill runs."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from genre_core.artifacts import load_cnn_bundle, save_cnn_bundle
from genre_core.label_commit import RunCommitter, RunManifest, write_part
from genre_core.label_runs import orphan_files, runs
from genre_core.label_table import locate, open_table, read_labels
from genre_core.schema import labels_table
from jobs import label, labels
from jobs.cli import run_job
from jobs.models import DEFAULT_MODELS, resolve_models

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["blues", "classical"]
SMALL = """resources:
  decode: {in_cnn_actors: true, songs_per_block: 2}
  cnn: {concurrency: 1, num_cpus: 0.5, num_gpus: 0, device: cpu}
  rows_per_file: 2
  torch_threads: 1
labels:
  commit_every: 2
"""


def _rows(ids, run_id):
    return labels_table([{"track_id": t, "genre": "blues", "status": "classified", "confidence": 0.9, "margin": 0.8,
                          "probabilities": [0.9, 0.1], "n_slices": 3, "duration_s": 15.0, "error": None,
                          "model_version": "m", "gan_version": None, "feature_version": "f", "run_id": run_id,
                          "labelled_at": pd.Timestamp("2026-01-01", tz="UTC")} for t in ids], CLASSES)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_second_reader_sees_a_runs_rows_only_after_its_commit(where, local_ray, s3_endpoint, tmp_path, request):
    import ray
    from pyiceberg.catalog.sql import SqlCatalog

    if where == "s3":
        from genre_core.storage import s3_filesystem

        bucket = "readers-" + where
        fs = s3_filesystem()
        if not fs.exists(bucket):
            fs.mkdir(bucket)
        table = locate(f"s3://{bucket}/labels", catalog_uri=f"sqlite:///{tmp_path}/labels.db")
    else:
        table = locate(str(tmp_path / "labels"))
    committer = RunCommitter(table, RunManifest("r1", "nightly", "c", "m", None, "f", CLASSES, n_todo=3),
                             log=lambda _: None)
    committer.add(write_part(*committer.target, _rows(["a", "b"], "r1"), "r1"))
    committer.add(write_part(*committer.target, _rows(["c"], "r1"), "r1"))

    # other readers: a pyiceberg catalog of their own on the same SQLite file, and Ray Data on the cluster
    props = {k: v for k, v in table.catalog.items() if k != "name"}
    other = SqlCatalog(table.catalog["name"], **props).load_table(table.identifier)  # a SQL catalog is named

    def ray_rows() -> list[str]:
        ds = ray.data.read_iceberg(table_identifier=table.identifier, catalog_kwargs=table.ray_catalog_kwargs())
        return sorted(r["track_id"] for r in ds.take_all())

    assert other.scan().to_arrow().num_rows == 0 and ray_rows() == []  # written, not committed: invisible
    committer.commit()
    other.refresh()
    assert sorted(other.scan().to_arrow().column("track_id").to_pylist()) == ["a", "b", "c"]
    assert ray_rows() == ["a", "b", "c"]
    summary = other.current_snapshot().summary.additional_properties
    assert '"run_id": "r1"' in summary["genre_tagger.run"] and summary["genre_tagger.run-id"] == "r1"


def _start(argv: list[str], log: Path, ray_tmp: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(REPO)}
    with open(log, "wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "jobs.label", "--num-cpus", "2", *argv], cwd=REPO, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _new_model(tmp_path: Path) -> str:
    """The shipped CNN saved again as a new bundle (a new model version, the same weights)."""
    model, meta = load_cnn_bundle(f"{DEFAULT_MODELS}/cnn")
    save_cnn_bundle(str(tmp_path / "models-b" / "cnn"), model, dataclasses.replace(meta, created_at="", version=""))
    return str(tmp_path / "models-b")


def test_an_overlapping_nightly_and_backfill_both_finish_with_every_track_once(rendered_songs, tmp_path):
    """A backfill with a new model starts; once its first commit is in, a nightly run with the old model starts
    over the same catalog and the same table. Both finish; every track's label is one of theirs, 0 lost and 0
    duplicated; neither deleted the other's files."""
    songs = rendered_songs[["track_id", "audio_uri"]]
    catalog = pd.concat([songs.assign(track_id=songs["track_id"] + f"-{k}") for k in range(2)], ignore_index=True)
    catalog.to_parquet(tmp_path / "catalog.parquet")
    (tmp_path / "small.yaml").write_text(SMALL)
    out = tmp_path / "labels"
    common = ["--catalog", str(tmp_path / "catalog.parquet"), "--output", str(out), "--config",
              str(tmp_path / "small.yaml")]
    procs = []
    ray_tmps = [tempfile_dir() for _ in range(2)]
    try:
        procs.append(_start([*common, "--mode", "backfill", "--models", _new_model(tmp_path)],
                            tmp_path / "backfill.log", ray_tmps[0]))
        table = locate(str(out))
        deadline = time.monotonic() + 300
        while not runs_or_none(table):
            assert procs[0].poll() is None, (tmp_path / "backfill.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the backfill committed nothing in 300 s"
            time.sleep(0.05)
        procs.append(_start([*common, "--mode", "nightly"], tmp_path / "nightly.log", ray_tmps[1]))
        for p, name in zip(procs, ("backfill", "nightly"), strict=True):
            p.wait(timeout=600)
            assert p.returncode == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    finally:
        for p in procs:
            _end(p)
        for d in ray_tmps:
            subprocess.run(["rm", "-rf", d], check=False)
    done = {m.mode: m for m in runs(open_table(table))}
    assert set(done) == {"backfill", "nightly"}
    assert done["backfill"].n_rows == done["backfill"].n_todo == len(catalog)
    assert done["nightly"].n_rows == done["nightly"].n_todo > 0  # it began while the backfill was going
    got = read_labels(table)
    assert len(got) == len(catalog) and got["track_id"].is_unique  # 0 duplicated
    assert set(got["track_id"]) == set(catalog["track_id"])  # 0 lost
    assert set(got["run_id"]) <= {done["backfill"].run_id, done["nightly"].run_id}
    assert orphan_files(table, older_than_s=0) == []  # every file either run wrote is in the table's history
    logs = (tmp_path / "backfill.log").read_text() + (tmp_path / "nightly.log").read_text()
    conflicts = sum(int(n) for n in re.findall(r"(\d+) commit conflict\(s\) retried", logs))
    print(f"overlapping runs: backfill {done['backfill'].n_rows} tracks in {done['backfill'].commit} commits, "
          f"nightly {done['nightly'].n_rows} in {done['nightly'].commit}; {conflicts} conflict(s) retried")


def tempfile_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="gt", dir="/tmp")


def runs_or_none(table):
    try:
        return open_table(table).current_snapshot() is not None
    except Exception:  # not created yet, or being created this very moment
        return False


def _end(proc: subprocess.Popen) -> None:
    """SIGKILL what is left of a job's session (its Ray processes), as tests/integration/test_faults.py does."""
    from test_faults import _end_session

    _end_session(proc.pid)


def test_curated_genres_are_kept_through_nightly_and_backfill(local_ray, rendered_songs, tmp_path, capsys):
    models = resolve_models(DEFAULT_MODELS)
    cat = rendered_songs[["track_id", "audio_uri"]].copy()
    ids = list(cat["track_id"])
    cat["curated_genre"] = [None] * len(cat)
    cat.loc[0, "curated_genre"] = "jazz"          # a genre the model does not even know
    cat.loc[1, "curated_genre"] = "classical"
    path, out = tmp_path / "catalog.parquet", str(tmp_path / "labels")
    cat.to_parquet(path)
    job = ["--catalog", str(path), "--output", out, "--config", "configs/label-local.yaml"]
    table = locate(out)

    def curated() -> dict[str, str]:
        df = read_labels(table)
        assert len(df) == len(cat) and df["track_id"].is_unique
        return dict(zip(df.loc[df["status"] == "curated", "track_id"], df.loc[df["status"] == "curated", "genre"],
                        strict=True))

    assert run_job(label, job) == 0
    assert curated() == {ids[0]: "jazz", ids[1]: "classical"}
    row = read_labels(table).set_index("track_id").loc[ids[0]]
    assert len(row["probabilities"]) == len(models.classes) and row["model_version"] == models.cnn_version
    assert run_job(label, [*job, "--mode", "backfill"]) == 0  # every track relabelled, the curated ones kept
    assert curated() == {ids[0]: "jazz", ids[1]: "classical"}
    assert runs(open_table(table))[-1].status_counts["curated"] == 2

    cat.loc[1, "curated_genre"] = None            # the editor took it back
    cat.loc[2, "curated_genre"] = "metal"         # and curated another one
    cat.to_parquet(path)
    assert run_job(label, job) == 0
    assert runs(open_table(table))[-1].n_rows == 2  # nightly: only the two whose curation changed
    assert curated() == {ids[0]: "jazz", ids[2]: "metal"}
    capsys.readouterr()
    assert run_job(labels, ["show", "--output", out, "--track", ids[0]]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"track {ids[0]}: curated -> jazz") and "a person set its genre (jazz" in text
