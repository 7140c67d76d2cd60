"""`genre-job train cnn` on Ray Train: two DDP workers (gloo) fed by Ray Data on a local Ray, a checkpoint every
epoch on S3 (moto's server), and a rerun of the same training resuming from the last one."""

from __future__ import annotations

from pathlib import Path

import torch
from training_catalog import train_catalog, train_config

from genre_core.artifacts import read_bundle_meta
from jobs import train
from jobs.cli import run_job

REPO = Path(__file__).resolve().parents[2]


def test_two_workers_train_checkpoint_every_epoch_and_a_rerun_resumes(training_ray, s3_bucket, tmp_path, capfd):
    from genre_core.storage import s3_filesystem

    catalog = train_catalog(tmp_path / "cat")
    args = ["cnn", "--catalog", catalog, "--out", str(tmp_path / "cnn"), "--config", train_config(tmp_path, 2),
            "--resources", str(REPO / "configs" / "train-local.yaml"), "--checkpoints", f"s3://{s3_bucket}/ckpt"]
    assert run_job(train, args) == 0
    metrics = read_bundle_meta(str(tmp_path / "cnn"))["metrics"]
    assert metrics["workers"] == 2 and [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["resumed_after"] == [] and metrics["val"]["n_songs"] == metrics["n_songs"]["val"]
    assert metrics["test"]["n_songs"] == metrics["n_songs"]["test"] > 0
    assert all(h["worker_peak_private_mb"] > 0 and h["worker_peak_rss_mb"] > 0 for h in metrics["history"])
    fs = s3_filesystem()
    states = sorted(fs.glob(f"{s3_bucket}/ckpt/*/checkpoint_*/state.pt"))
    assert len(states) == 2  # one per epoch (num_to_keep=2)
    with fs.open(states[-1], "rb") as fh:
        state = torch.load(fh, weights_only=True)  # no pickle needed: tensors, numbers, strings
    assert len(state["history"]) == 2 and state["stopped"]
    capfd.readouterr()
    assert run_job(train, args) == 0   # the same training again: resumes from its last checkpoint, nothing to do
    assert "resumed from the checkpoint of epoch 2" in capfd.readouterr().out
    assert len(read_bundle_meta(str(tmp_path / "cnn"))["metrics"]["history"]) == 2
