"""genre-job calibrate on real rendered songs with the shipped musicnn model: what it writes into the new bundle,
and that the labeller then applies it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from genre_core.artifacts import load_cnn_bundle
from genre_core.labelling import CNNVoter, label_catalog
from genre_core.outside import CONFIDENCE_WEIGHTS, ELIGIBLE, SCORES
from genre_core.schema import vote_shares
from genre_core.voting import decide
from jobs import calibrate, make_catalog
from jobs.cli import run_job
from jobs.models import DEFAULT_MODELS


def test_calibrate_writes_a_new_bundle_that_the_labeller_applies(rendered_songs, tmp_path, capsys) -> None:
    train = tmp_path / "train.parquet"
    rendered_songs.to_parquet(train)  # 8 songs of 4 genres, split train
    genres = ",".join(sorted(set(rendered_songs["genre"])))
    assert run_job(make_catalog, ["--per-genre", "1", "--genres", genres, "--seconds", "10", "--seed", "5",
                                  "--split", "val", "--out", str(tmp_path / "val")]) == 0
    assert run_job(make_catalog, ["--per-genre", "2", "--genres", "folk,house", "--seconds", "10", "--seed", "5",
                                  "--out", str(tmp_path / "outside")]) == 0
    source = f"{DEFAULT_MODELS}/cnn"
    out = tmp_path / "calibrated"
    argv = ["--cnn", source, "--catalog", str(train), "--catalog", str(tmp_path / "val" / "catalog.parquet"),
            "--outside", str(tmp_path / "outside" / "catalog.parquet"), "--out", str(out), "--workers", "1"]
    assert run_job(calibrate, argv) == 0
    printed = capsys.readouterr().out
    assert "| score | confidence weight | AUROC |" in printed and "out-of-taxonomy rule: " in printed

    old_model, old = load_cnn_bundle(source)
    new_model, new = load_cnn_bundle(str(out))
    assert new.version != old.version  # a recalibrated bundle still names the bundle its weights were trained in
    assert new.metrics["calibrated_from"] == old.metrics.get("calibrated_from", old.version) != old.version
    for key, value in old_model.state_dict().items():  # the model itself is copied unchanged
        torch.testing.assert_close(new_model.state_dict()[key], value, rtol=0, atol=0)
    assert new.calibration.n_songs == 4 and new.calibration.temperature > 0
    rule = new.outside
    assert rule.score in ELIGIBLE and list(dict.fromkeys(r["score"] for r in rule.selection["table"])) == list(SCORES)
    assert {r["confidence_weight"] for r in rule.selection["table"]} == set(CONFIDENCE_WEIGHTS)
    assert rule.selection["n_val_inside"] == 4 and rule.selection["n_val_outside"] == 2  # val splits only
    assert (rule.stats is not None) == (rule.score in ("feature_distance", "outside_tags"))
    alone = next(r for r in rule.selection["table"] if r["score"] == rule.score and r["confidence_weight"] == 0.0)
    assert rule.undecided_threshold == alone["threshold"]  # songs with ambiguous votes: the score alone
    json.dumps(json.loads((out / "bundle.json").read_text()))  # plain JSON

    tests = pd.read_parquet(tmp_path / "outside" / "catalog.parquet").query("split == 'test'")
    rows = label_catalog(tests, CNNVoter(str(out)))
    for _, r in rows.iterrows():
        assert r["outside_score"] is not None and 0.0 <= r["confidence"] <= 1.0
        decided = decide(vote_shares(r["probabilities"])[None, :], new.voting.tau, new.voting.margin).classified
        assert (r["reason"] == "outside_taxonomy") == rule.is_outside(r["outside_score"], decided)
        if r["status"] == "unclassified":
            assert r["reason"] in ("outside_taxonomy", "ambiguous_vote") and pd.isna(r["genre"])
    assert np.isfinite(rows["vote_share"].astype(float)).all()

    # the test songs of a catalog never choose anything; a catalog without validation songs is refused
    assert run_job(calibrate, [*argv[:4], "--outside", str(tmp_path / "outside" / "catalog.parquet"),
                               "--out", str(tmp_path / "x")]) == 2
    assert "no val songs" in capsys.readouterr().err
