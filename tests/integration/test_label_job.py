"""The labelling job on a real local Ray cluster, reading and writing S3 (moto server on 127.0.0.1)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from genre_core import storage
from genre_core.artifacts import load_cnn_bundle, save_cnn_bundle
from genre_core.label_runs import orphan_files, runs
from genre_core.label_table import locate, open_table, read_labels
from genre_core.schema import LABEL_COLUMNS, read_parquet
from genre_core.stages import label_song_by_song
from jobs import label, labels, make_catalog
from jobs.cli import run_job
from jobs.models import DEFAULT_MODELS, resolve_models

CONFIG = "configs/label-local.yaml"


@pytest.fixture()
def table_catalog(tmp_path) -> str:
    """The SQL catalog (a SQLite file) of the test's labels table, whose warehouse is on S3."""
    return f"sqlite:///{tmp_path}/labels.db"


def _run(module, *argv: str) -> int:
    return run_job(module, list(argv))


def _table(out: str, catalog: str):
    return locate(out, catalog_uri=catalog)


def latest_labels(out: str, catalog: str):
    return read_labels(_table(out, catalog))


def manifests(out: str, catalog: str):
    return runs(open_table(_table(out, catalog)))


@pytest.fixture(scope="module")
def s3_catalog(s3_endpoint, tmp_path_factory):
    """50 songs rendered into S3: 3 in-domain and 2 shifted per genre (the shifted ones are often ambiguous)."""
    from genre_core.storage import s3_filesystem

    fs = s3_filesystem()
    fs.mkdir("label-job")
    base = "s3://label-job/catalog"
    assert _run(make_catalog, "--per-genre", "3", "--seed", "11", "--out", f"{base}/default") == 0
    assert _run(make_catalog, "--per-genre", "2", "--seed", "11", "--preset", "shifted",
                "--out", f"{base}/shifted") == 0
    df = pd.concat([read_parquet(f"{base}/default/catalog.parquet").to_pandas(),
                    read_parquet(f"{base}/shifted/catalog.parquet").to_pandas()], ignore_index=True)
    return df


def _write_catalog(df: pd.DataFrame, url: str) -> None:
    fs, path = storage.filesystem(url)
    with fs.open(path, "wb") as fh:
        df.to_parquet(fh)


def _assert_same_labels_as_the_reference(labels_url: str, catalog: pd.DataFrame, models,
                                        table_catalog: str) -> pd.DataFrame:
    """The committed labels equal those of the single-process reference, song for song; returns the reference."""
    got = latest_labels(labels_url, table_catalog)
    assert len(got) == len(catalog) and got["track_id"].is_unique
    assert set(got["track_id"]) == set(catalog["track_id"])
    assert list(got.columns) == list(LABEL_COLUMNS)
    ref = label_song_by_song(catalog, models.feature_config, models.cnn_url, models.gan_url)
    got = got.set_index("track_id")
    for tid, r in ref.iterrows():
        assert got.at[tid, "status"] == r["status"], tid
        genre = (got.at[tid, "genre"] if isinstance(got.at[tid, "genre"], str) else None)
        assert genre == (r["genre"] if isinstance(r["genre"], str) else None), tid  # a missing genre may read NaN
        np.testing.assert_allclose(got.at[tid, "probabilities"], r["probabilities"], atol=1e-5)
    return ref


def test_labels_s3_to_s3_match_the_reference_and_gan_sees_only_unclassified(local_ray, s3_catalog,
                                                                             models_with_gan, table_catalog):
    models = resolve_models(models_with_gan)
    assert models.gan_url is not None
    first = s3_catalog.iloc[:40]
    out = "s3://label-job/nightly/labels"
    _write_catalog(first, "s3://label-job/nightly/catalog.parquet")
    assert _run(label, "--catalog", "s3://label-job/nightly/catalog.parquet", "--output", out,
                "--table-catalog", table_catalog, "--config", CONFIG, "--models", models_with_gan) == 0

    ref = _assert_same_labels_as_the_reference(out, first, models, table_catalog)

    n_unclassified_by_cnn = int((ref["cnn_status"] == "unclassified").sum())
    assert n_unclassified_by_cnn > 0, "the test catalog must contain songs the CNN leaves unclassified"
    stats = manifests(out, table_catalog)[-1].stats
    assert stats["cnn_unclassified"] == n_unclassified_by_cnn
    outside = ref["reason"] == "outside_taxonomy"
    # the GAN pool translated the ambiguous songs and no others; a song outside the taxonomy stays unclassified
    assert stats["gan_songs"] == n_unclassified_by_cnn - int(outside.sum())
    assert (ref.loc[outside, "status"] == "unclassified").all()
    assert ref.loc[ref["status"] == "unclassified", "reason"].isin(["ambiguous_vote", "outside_taxonomy"]).all()
    assert (ref["status"] == "gan_resolved").sum() > 0  # threshold 0: it decided them
    assert (ref.loc[ref["cnn_status"] != "unclassified", "status"] == ref.loc[ref["cnn_status"] != "unclassified",
                                                                               "cnn_status"]).all()

    # nightly: 10 new tracks -> exactly those 10 are labelled
    _write_catalog(s3_catalog, "s3://label-job/nightly/catalog.parquet")
    assert _run(label, "--catalog", "s3://label-job/nightly/catalog.parquet", "--output", out,
                "--table-catalog", table_catalog, "--config", CONFIG, "--models", models_with_gan) == 0
    done = manifests(out, table_catalog)
    assert len(done) == 2 and done[-1].n_rows == 10
    after = latest_labels(out, table_catalog)
    assert len(after) == 50 and after["track_id"].is_unique
    new_ids = set(s3_catalog["track_id"].iloc[40:])
    assert set(after.loc[after["run_id"] == done[-1].run_id, "track_id"]) == new_ids


def test_a_decode_pool_of_its_own_labels_the_same(local_ray, s3_catalog, models_with_gan, tmp_path, table_catalog):
    """The layout of the GPU cluster (decode actors feeding separate CNN actors), here on CPU shares."""
    config = tmp_path / "separate-pools.yaml"
    config.write_text("resources:\n  decode: {concurrency: 2, num_cpus: 0.25, in_cnn_actors: false}\n"
                      "  cnn: {concurrency: 1, num_cpus: 0.25, batch_size: 4, device: cpu}\n"
                      "  gan: {concurrency: 1, num_cpus: 0.5, device: cpu}\n")
    catalog = s3_catalog.iloc[30:50]  # the shifted songs: unclassified ones reach the GAN pool
    _write_catalog(catalog, "s3://label-job/separate/catalog.parquet")
    out = "s3://label-job/separate/labels"
    assert _run(label, "--catalog", "s3://label-job/separate/catalog.parquet", "--output", out,
                "--table-catalog", table_catalog, "--config", str(config), "--models", models_with_gan) == 0
    models = resolve_models(models_with_gan)
    ref = _assert_same_labels_as_the_reference(out, catalog, models, table_catalog)
    n_ambiguous = int(((ref["cnn_status"] == "unclassified") & (ref["reason"] != "outside_taxonomy")).sum())
    assert manifests(out, table_catalog)[-1].stats["gan_songs"] == n_ambiguous > 0


def test_backfill_with_a_new_model_is_invisible_until_committed(local_ray, s3_catalog, tmp_path, table_catalog,
                                                                capsys):
    out = "s3://label-job/backfill/labels"
    cat = "s3://label-job/backfill/catalog.parquet"
    _write_catalog(s3_catalog.iloc[:12], cat)
    assert _run(label, "--catalog", cat, "--output", out, "--table-catalog", table_catalog, "--config", CONFIG) == 0
    old = resolve_models(DEFAULT_MODELS)

    # a new model version: the same weights saved again as a new bundle (new version string)
    model, meta = load_cnn_bundle(old.cnn_url)
    new_models = tmp_path / "models"
    save_cnn_bundle(str(new_models / "cnn"), model, dataclasses.replace(meta, created_at="", version=""))
    new = resolve_models(str(new_models))
    assert new.cnn_version != old.cnn_version and new.gan_url is None

    # a run whose workers wrote all its data files but that died before committing is invisible to readers
    from genre_core.catalog_files import catalog_files
    from genre_core.label_selection import Selection
    from jobs import label_pipeline
    from jobs.label_plan import plan_run

    table = _table(out, table_catalog)
    plan = plan_run(catalog_files(cat), table, Selection("backfill", new.cnn_version, None, new.feature_version,
                                                        since_us=2**62), None)
    ice = open_table(table)
    writer = {"metadata": ice.metadata, "io": ice.io, "classes": new.classes, "curated_column": None,
              "versions": {"model_version": new.cnn_version, "gan_version": None,
                           "feature_version": new.feature_version, "run_id": "crashed"}}
    written = label_pipeline.build_dataset(plan, new, label.load_resources(CONFIG), None, writer).take_all()
    assert sum(int(w["n"]) for w in written) == 12
    assert (latest_labels(out, table_catalog)["model_version"] == old.cnn_version).all()

    assert _run(label, "--catalog", cat, "--output", out, "--table-catalog", table_catalog, "--config", CONFIG,
                "--mode", "backfill", "--models", str(new_models)) == 0
    latest = latest_labels(out, table_catalog)
    assert len(latest) == 12 and (latest["model_version"] == new.cnn_version).all()
    assert [m.n_rows for m in manifests(out, table_catalog)] == [12, 12]
    # the dead run's files were left alone by the next run; the maintenance command removes them
    assert len(orphan_files(table, older_than_s=0)) == 1
    capsys.readouterr()
    assert _run(labels, "clean", "--output", out, "--table-catalog", table_catalog, "--older-than", "0") == 0
    assert "1 orphan file(s) removed" in capsys.readouterr().out
    assert orphan_files(table, older_than_s=0) == [] and len(latest_labels(out, table_catalog)) == 12


def test_dry_run_and_bad_catalog(local_ray, s3_catalog, capsys, table_catalog):
    cat = "s3://label-job/dry/catalog.parquet"
    _write_catalog(s3_catalog.iloc[:5], cat)
    out = "s3://label-job/dry/labels"
    assert _run(label, "--catalog", cat, "--output", out, "--table-catalog", table_catalog, "--dry-run") == 0
    assert "5 to label" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError):
        latest_labels(out, table_catalog)
    dup = pd.concat([s3_catalog.iloc[:3], s3_catalog.iloc[:1]])
    _write_catalog(dup, cat)
    assert _run(label, "--catalog", cat, "--output", out, "--table-catalog", table_catalog) == 2
    assert "duplicate track_id" in capsys.readouterr().err
    # an S3 warehouse without a catalog shared by the runs is refused before any work
    assert _run(label, "--catalog", cat, "--output", out) == 2
    assert "--table-catalog" in capsys.readouterr().err
