"""`genre-job train cnn` with the musicnn genre model: a new head from the tag prior, then a catalog team's
fine-tuning of that bundle with --from, on real rendered songs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genre_core.artifacts import load_cnn_bundle
from jobs import make_catalog, train
from jobs.cli import run_job

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "musicnn.yaml")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, training_ray) -> Path:
    out = tmp_path_factory.mktemp("catalog")
    # 3 songs per genre of 7 s: two 3 s patches each, so the backbone pass stays short on 2 cores
    assert run_job(make_catalog, ["--per-genre", "3", "--seconds", "7", "--seed", "11", "--workers", "2",
                                  "--out", str(out)]) == 0
    return out / "catalog.parquet"


def test_new_head_then_fine_tuning_from_it(catalog: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_job(train, ["cnn", "--catalog", str(catalog), "--out", str(first), "--config", CONFIG,
                           "--checkpoints", str(tmp_path / "ckpt")]) == 0
    model, meta = load_cnn_bundle(str(first))
    assert meta.cnn_config.arch == "musicnn" and meta.backbone["name"] == "musicnn-msd"
    assert meta.metrics["fine_tuned_from"] is None and meta.metrics["selection"]["l2"] > 0
    # the backbone's outputs were computed once by Ray Data and kept as Parquet beside the checkpoints
    assert list(Path(meta.metrics["backbone_outputs"]).glob("*.parquet"))
    assert run_job(train, ["cnn", "--catalog", str(catalog), "--out", str(second), "--from", str(first),
                           "--checkpoints", str(tmp_path / "ckpt")]) == 0
    tuned, tuned_meta = load_cnn_bundle(str(second))
    assert tuned_meta.metrics["fine_tuned_from"] == meta.version
    assert tuned_meta.feature_config == meta.feature_config
    # the backbone is frozen: bit for bit the one the first bundle was built on
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, tuned.backbone.state_dict()[name]), name
    assert json.loads((second / "bundle.json").read_text())["backbone"]["weights_sha256"] == \
        meta.backbone["weights_sha256"]


def test_more_songs_than_the_driver_may_hold_are_sampled_then_streamed(catalog: Path, tmp_path: Path,
                                                                         capsys) -> None:
    import pandas as pd

    df = pd.read_parquet(catalog)
    df.loc[df.groupby("genre").head(1).index, "split"] = "test"  # a test song per genre, scored as they stream
    df.to_parquet(tmp_path / "catalog.parquet")
    resources = tmp_path / "resources.yaml"
    resources.write_text("resources:\n  head_songs_in_memory: 12\n")  # of the catalog's 30 songs
    out = tmp_path / "streamed"
    assert run_job(train, ["cnn", "--catalog", str(tmp_path / "catalog.parquet"), "--out", str(out), "--config", CONFIG,
                           "--resources", str(resources), "--checkpoints", str(tmp_path / "ckpt")]) == 0
    printed = capsys.readouterr().out
    assert "20 train and val songs > resources.head_songs_in_memory 12" in printed
    assert "refitted on every train song" in printed
    _, meta = load_cnn_bundle(str(out))
    n = meta.metrics["n_songs"]
    assert n["in_memory"] == 12 and n["test"] == 10 and n["train"] + n["val"] == 20
    assert meta.metrics["test"]["n_songs"] == 10  # the test songs were scored as they streamed by
    assert 0.0 <= meta.metrics["test"]["song_accuracy"] <= 1.0 and meta.metrics["selection"]["l2"] > 0


def test_from_refuses_a_bundle_it_cannot_fine_tune(catalog: Path, tmp_path: Path, capsys) -> None:
    from genre_core.artifacts import CNNBundle, save_cnn_bundle
    from genre_core.config import GENRES, CNNConfig, FeatureConfig, VotingConfig
    from genre_core.features import feature_version
    from genre_core.models.cnn import SliceCNN

    slice_cnn, features = str(tmp_path / "slice-cnn"), FeatureConfig()  # an (untrained) from-scratch CNN bundle
    save_cnn_bundle(slice_cnn, SliceCNN(len(GENRES)), CNNBundle(
        classes=GENRES, feature_config=features, cnn_config=CNNConfig(), voting=VotingConfig(),
        feature_version=feature_version(features), n_mels=features.n_mels, n_frames=features.slice_frames))
    assert run_job(train, ["cnn", "--catalog", str(catalog), "--out", str(tmp_path / "x"), "--from",
                           slice_cnn]) == 2
    assert "only a musicnn bundle can be fine-tuned" in capsys.readouterr().err


def test_training_refuses_songs_rendered_with_a_reserved_soundfont(catalog: Path, tmp_path: Path, capsys) -> None:
    import pandas as pd

    df = pd.read_parquet(catalog)
    df.loc[df.index[0], "soundfont"] = "MuseScore_General.sf3"
    df.to_parquet(tmp_path / "catalog.parquet")
    assert run_job(train, ["cnn", "--catalog", str(tmp_path / "catalog.parquet"), "--out", str(tmp_path / "x"),
                           "--config", CONFIG]) == 2
    assert "reserved for held-out evaluation" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
