"""`genre-job train cnn` on Ray Train: two DDP workers (gloo) fed by Ray Data on a local Ray, a checkpoint every
epoch, and a rerun of the same training resuming from the last one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from genre_core.artifacts import read_bundle_meta
from jobs import make_catalog, train
from jobs.cli import run_job

REPO = Path(__file__).resolve().parents[2]


def train_config(tmp: Path, epochs: int) -> str:
    """configs/test.yaml with ``epochs`` epochs and no early stop before them."""
    cfg = yaml.safe_load((REPO / "configs" / "test.yaml").read_text())
    cfg["train"].update(epochs=epochs, patience=epochs)
    path = tmp / f"train-{epochs}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def train_catalog(out: Path) -> str:
    """36 songs of 10 s (9 per genre: 7 train, 1 val, 1 test)."""
    assert run_job(make_catalog, ["--per-genre", "9", "--genres", "blues,classical,metal,reggae", "--seconds", "10",
                                  "--seed", "3", "--workers", "2", "--out", str(out)]) == 0
    return str(out / "catalog.parquet")


@pytest.fixture(scope="module")
def ray_with_dashboard():
    import ray

    from jobs.label_pipeline import init_ray

    init_ray(num_cpus=2, include_dashboard=True)
    yield
    ray.shutdown()


def test_two_workers_train_checkpoint_every_epoch_and_a_rerun_resumes(ray_with_dashboard, tmp_path, capfd):
    catalog = train_catalog(tmp_path / "cat")
    args = ["cnn", "--catalog", catalog, "--out", str(tmp_path / "cnn"), "--config", train_config(tmp_path, 2),
            "--resources", str(REPO / "configs" / "train-local.yaml"), "--checkpoints", str(tmp_path / "ckpt")]
    assert run_job(train, args) == 0
    metrics = read_bundle_meta(str(tmp_path / "cnn"))["metrics"]
    assert metrics["workers"] == 2 and [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["resumed_after"] == [] and metrics["val"]["n_songs"] == metrics["n_songs"]["val"]
    assert metrics["test"]["n_songs"] == metrics["n_songs"]["test"] > 0
    assert all(h["worker_peak_rss_mb"] > 0 for h in metrics["history"])
    (run,) = (tmp_path / "ckpt").iterdir()
    states = sorted(run.glob("checkpoint_*/state.pt"))
    assert len(states) == 2  # one per epoch (num_to_keep=2)
    state = torch.load(states[-1], weights_only=True)  # no pickle needed: tensors, numbers, strings
    assert len(state["history"]) == 2 and state["stopped"]
    capfd.readouterr()
    assert run_job(train, args) == 0   # the same training again: resumes from its last checkpoint, nothing to do
    assert "resumed from the checkpoint of epoch 2" in capfd.readouterr().out
    assert len(read_bundle_meta(str(tmp_path / "cnn"))["metrics"]["history"]) == 2
