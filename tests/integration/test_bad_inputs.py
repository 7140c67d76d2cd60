"""Bad input at the job level, on real files and a real local Ray cluster (2 CPUs).

One labelling run over valid rendered songs mixed with one row per kind of broken input: every catalog row
comes out exactly once, every valid song is labelled, and each bad row is an error with its exact kind. Then:
a few bad rows on S3 (moto server), the same job run again (idempotency), and hostile track_ids, which stay
column values and never become paths.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bad_audio import BadInput, bad_files, encode, song_samples, two_hour_wav, write_bad_inputs

from genre_core import storage
from genre_core.features import n_slices_for
from genre_core.label_runs import history, runs
from genre_core.label_table import locate, open_table, read_labels
from jobs import label
from jobs.cli import run_job
from jobs.models import DEFAULT_MODELS, resolve_models

CONFIG = "configs/label-local.yaml"
CAP_S = 600.0  # AudioConfig.max_duration_s: the longest stretch of a file that is analysed
HOSTILE_IDS = ["../../etc/x", "a/b", "s3://other-bucket/key", " spaced id ", "ünï-код/.."]
DECIDED_OR_NOT = {"classified", "gan_resolved", "unclassified"}
VOLATILE = ["run_id", "labelled_at"]  # the only columns two runs of the same job may differ in


def _job(*argv: str) -> int:
    return run_job(label, list(argv))


def latest_labels(out: str, catalog: str | None = None):
    return read_labels(locate(out, catalog_uri=catalog))


def manifests(out: str, catalog: str | None = None):
    return runs(open_table(locate(out, catalog_uri=catalog)))


def _table_files(files: list[str], prefix: str) -> list[str]:
    """The files of a labels table under ``prefix``, checked to be only the table's: Iceberg metadata, and data
    files whose names are UUIDs (never a track_id); returns the data files' names."""
    data = []
    for f in files:
        rel = f[len(prefix):].lstrip("/")
        assert rel.startswith(("genre_tagger/labels/metadata/", "genre_tagger/labels/data/")), rel
        if "/data/" in rel:
            assert re.fullmatch(r"genre_tagger/labels/data/\d{5}-\d+-[0-9a-f-]{36}\.parquet", rel), rel
            data.append(rel)
    return data


@pytest.fixture(scope="module")
def bad_catalog(rendered_songs, tmp_path_factory) -> dict:
    """A local catalog: 8 valid songs (5 under hostile track_ids), a 2-hour file, and 16 bad rows."""
    base = tmp_path_factory.mktemp("bad-inputs")
    root = base / "audio"
    song = song_samples(rendered_songs["audio_uri"].iloc[0])
    bad = write_bad_inputs(root, song)
    (root / "two-hours.wav").write_bytes(two_hour_wav(song))
    (root / "valid").mkdir()
    valid = {}
    for i, uri in enumerate(rendered_songs["audio_uri"]):
        dst = root / "valid" / Path(uri).name
        shutil.copyfile(uri, dst)
        valid[HOSTILE_IDS[i] if i < len(HOSTILE_IDS) else rendered_songs["track_id"].iloc[i]] = str(dst)
    rows = [*valid.items(), ("long-two-hours", str(root / "two-hours.wav")), *((b.track_id, b.audio_uri) for b in bad)]
    catalog = pd.DataFrame(rows, columns=["track_id", "audio_uri"])
    catalog.to_parquet(base / "catalog.parquet")
    return {"catalog": catalog, "path": str(base / "catalog.parquet"), "root": str(root), "valid": valid,
            "bad": {b.track_id: b for b in bad}, "base": base}


@pytest.fixture(scope="module")
def first_run(local_ray, bad_catalog) -> str:
    out = str(bad_catalog["base"] / "labels")
    assert _job("--catalog", bad_catalog["path"], "--output", out, "--config", CONFIG,
                "--audio-root", bad_catalog["root"]) == 0
    return out


def _null(value) -> bool:
    """A null read back from Parquet: None, or NaN in a pandas string column."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def _assert_error_rows(labels: pd.DataFrame, bad: dict[str, BadInput]) -> None:
    for tid, b in bad.items():
        row = labels.loc[tid]
        assert row["status"] == "error", (tid, row["status"], row["error"])
        assert row["error"].startswith(f"{b.kind}: "), (tid, row["error"])
        assert b.detail in row["error"], (tid, row["error"])
        assert _null(row["genre"]) and row["n_slices"] == 0 and _null(row["probabilities"])


def _assert_labelled(row: pd.Series, seconds: float) -> None:
    assert row["status"] in DECIDED_OR_NOT and _null(row["error"])
    assert (not _null(row["genre"])) == (row["status"] in ("classified", "gan_resolved"))
    assert row["duration_s"] == pytest.approx(seconds, abs=0.01)
    features = resolve_models(DEFAULT_MODELS).feature_config  # songs are decoded at the model's sample rate
    assert row["n_slices"] == n_slices_for(int(round(seconds * features.sample_rate)), features)
    assert np.sum(row["probabilities"]) == pytest.approx(1.0, abs=1e-4)


def test_one_run_over_every_bad_input_labels_valid_songs_and_names_each_fault(bad_catalog, first_run):
    catalog, bad, valid = bad_catalog["catalog"], bad_catalog["bad"], bad_catalog["valid"]
    assert len(catalog) == 25 and len(bad) == 16
    run = manifests(first_run)[0]
    assert run.n_rows == 25 and run.status_counts["error"] == 16
    assert sum(run.status_counts.get(s, 0) for s in DECIDED_OR_NOT) == 9

    labels = latest_labels(first_run)
    assert len(labels) == 25 and labels["track_id"].is_unique
    assert set(labels["track_id"]) == set(catalog["track_id"])
    labels = labels.set_index("track_id")
    for tid in valid:
        _assert_labelled(labels.loc[tid], 15.0)
    # the 2-hour file is labelled from its first 600 s only (a cap, read as a stream: the rest is never read)
    _assert_labelled(labels.loc["long-two-hours"], CAP_S)
    _assert_error_rows(labels, bad)


def test_hostile_track_ids_stay_values_and_never_become_paths(bad_catalog, first_run):
    labels = latest_labels(first_run)
    assert set(HOSTILE_IDS) <= set(labels["track_id"])
    files = sorted(str(p.relative_to(first_run)) for p in Path(first_run).rglob("*") if p.is_file())
    assert files[0] == "catalog.db"
    assert len(_table_files([f for f in files[1:]], "warehouse")) == 1  # one data file of 25 rows, UUID-named
    # nothing was written next to the output or the catalog either
    assert sorted(p.name for p in bad_catalog["base"].iterdir()) == ["audio", "catalog.parquet", "labels",
                                                                     "outside.flac"]


def test_the_same_job_run_twice_commits_the_same_labels(bad_catalog, first_run, tmp_path):
    out = str(tmp_path / "labels")  # a table of its own (an Iceberg table's files name their absolute paths)
    for mode in ("nightly", "backfill"):
        assert _job("--catalog", bad_catalog["path"], "--output", out, "--config", CONFIG, "--mode", mode,
                    "--audio-root", bad_catalog["root"]) == 0
    first, again = manifests(out)
    assert first.n_rows == again.n_rows == 25 and first.status_counts == again.status_counts
    snapshots = {c.run.run_id: c.snapshot_id for c in history(open_table(locate(out)))}

    def table(m):  # the table as the run's (last) commit left it: every row is that run's
        df = read_labels(locate(out), snapshot_id=snapshots[m.run_id])
        assert (df["run_id"] == m.run_id).all() and len(df) == 25
        return df.drop(columns=VOLATILE)

    pd.testing.assert_frame_equal(table(first), table(again), check_exact=False, atol=1e-5)

    # nightly: tracks labelled with these models are skipped, error rows are retried and fail the same way
    assert _job("--catalog", bad_catalog["path"], "--output", out, "--config", CONFIG,
                "--audio-root", bad_catalog["root"]) == 0
    runs = manifests(out)
    assert len(runs) == 3 and runs[-1].n_rows == 16 and runs[-1].status_counts == {"error": 16}
    latest = latest_labels(out).drop(columns=VOLATILE)
    assert len(latest) == 25 and latest["track_id"].is_unique
    pd.testing.assert_frame_equal(latest, table(first), check_exact=False, atol=1e-5)


def test_bad_rows_on_s3_get_the_same_reasons(local_ray, s3_bucket, rendered_songs, tmp_path):
    fs = storage.s3_filesystem()
    song = song_samples(rendered_songs["audio_uri"].iloc[0])
    root = f"s3://{s3_bucket}/audio"
    files = bad_files(song)
    picked = ["corrupt.flac", "truncated.wav", "empty.flac", "notes.txt", "ac3-in.wav", "nan.wav"]
    bad = {}
    for name in picked:
        data, kind, detail = files[name]
        fs.pipe(f"{root}/{name}", data)
        bad[f"bad-{name}"] = BadInput(f"bad-{name}", f"{root}/{name}", kind, detail)
    fs.pipe(f"{root}/valid.flac", encode(song, "FLAC"))
    fs.pipe(f"s3://{s3_bucket}/secret.flac", encode(song, "FLAC"))
    for b in [BadInput("bad-missing", f"{root}/missing.flac", "missing_object", "not found"),
              BadInput("bad-dotdot", f"{root}/../secret.flac", "unsafe_path", "'..' segments are not allowed"),
              BadInput("bad-outside", f"s3://{s3_bucket}/secret.flac", "unsafe_path", "outside root")]:
        bad[b.track_id] = b
    catalog = pd.DataFrame([("a/b", f"{root}/valid.flac"), *((b.track_id, b.audio_uri) for b in bad.values())],
                           columns=["track_id", "audio_uri"])
    with fs.open(f"{s3_bucket}/catalog.parquet", "wb") as fh:
        catalog.to_parquet(fh)
    out = f"s3://{s3_bucket}/labels"
    table_catalog = f"sqlite:///{tmp_path}/labels.db"
    assert _job("--catalog", f"s3://{s3_bucket}/catalog.parquet", "--output", out, "--table-catalog", table_catalog,
                "--config", CONFIG, "--audio-root", root) == 0

    labels = latest_labels(out, table_catalog)
    assert len(labels) == 10 and labels["track_id"].is_unique and set(labels["track_id"]) == set(catalog["track_id"])
    labels = labels.set_index("track_id")
    _assert_labelled(labels.loc["a/b"], 15.0)
    _assert_error_rows(labels, bad)
    assert len(_table_files(sorted(fs.find(out)), f"{s3_bucket}/labels")) == 1

