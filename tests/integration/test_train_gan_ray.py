"""`genre-job train gan` on Ray Train: the pairs computed by Ray Data and written once as Parquet, two DDP workers
(gloo) on a local Ray, a checkpoint every few steps on S3 (moto's server), a worker SIGKILLed mid-run and the group
resuming from the last checkpoint, a rerun resuming too, and the bundle it writes serving the labelling job's GAN
stage."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genre_core.artifacts import CNNBundle, load_cnn_bundle, read_bundle_meta, save_cnn_bundle
from genre_core.config import CNNConfig, VotingConfig, load_config
from genre_core.features import feature_version
from genre_core.models.cnn import SliceCNN
from jobs import make_catalog, train
from jobs.cli import run_job

REPO = Path(__file__).resolve().parents[2]
GENRES = ("blues", "metal")


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory) -> tuple[str, str]:
    """(6 train songs of 4 s with their reference renders, 2 validation songs)."""
    out = tmp_path_factory.mktemp("paired")
    common = ["--genres", ",".join(GENRES), "--seconds", "4", "--workers", "2"]
    assert run_job(make_catalog, ["--per-genre", "3", "--seed", "3", "--reference-soundfont", "fluidr3", *common,
                                  "--out", str(out / "train")]) == 0
    assert run_job(make_catalog, ["--per-genre", "1", "--seed", "7", "--split", "val", *common,
                                  "--out", str(out / "val")]) == 0
    return str(out / "train" / "catalog.parquet"), str(out / "val" / "catalog.parquet")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> str:
    """An untrained slice CNN bundle on configs/test.yaml's small slices, whose votes decide no song (every song
    goes to the GAN stage)."""
    cfg = load_config(str(REPO / "configs" / "test.yaml"))
    fc = cfg.features
    torch.manual_seed(0)
    url = str(tmp_path_factory.mktemp("models") / "cnn")
    save_cnn_bundle(url, SliceCNN(len(GENRES), cfg.cnn, n_mels=fc.n_mels, n_frames=fc.slice_frames), CNNBundle(
        classes=GENRES, feature_config=fc, cnn_config=CNNConfig(channels=cfg.cnn.channels, dropout=cfg.cnn.dropout),
        voting=VotingConfig(tau=0.99, margin=0.5), feature_version=feature_version(fc), n_mels=fc.n_mels,
        n_frames=fc.slice_frames))
    return url


def _kill_a_worker_after_the_first_checkpoint(checkpoints: str, killed: list[int]) -> None:
    """Once the Ray Train controller has registered a checkpoint under ``checkpoints`` (a bucket path), SIGKILL one
    training worker of this test's Ray cluster (found through Ray's state API)."""
    import ray
    from ray.util.state import list_actors

    from genre_core.storage import s3_filesystem

    fs = s3_filesystem()
    deadline = time.time() + 300
    while not fs.glob(f"{checkpoints}/train-gan-*/checkpoint_manager_snapshot.json"):
        if time.time() > deadline:
            return
        time.sleep(0.3)
        fs.invalidate_cache()
    # this test's cluster by its address: another Ray on the machine (a second test run) must not be picked
    address = ray.get_runtime_context().gcs_address
    for actor in list_actors(address=address, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]):
        os.kill(actor.pid, signal.SIGKILL)
        killed.append(actor.pid)
        return


def test_two_workers_checkpoint_every_k_steps_resume_after_a_kill_and_on_a_rerun_and_the_bundle_serves(
        training_ray, s3_bucket, catalogs, cnn, tmp_path, capfd):
    from genre_core.decoding import DecodeStage
    from genre_core.labelling import CNNVoter
    from genre_core.models.gan_bundle import load_gan_bundle
    from genre_core.stages import GANStage, load_gan_for
    from genre_core.storage import s3_filesystem

    catalog, val = catalogs
    out = tmp_path / "models" / "gan"
    args = ["gan", "--cnn", cnn, "--catalog", catalog, "--tune-catalog", val, "--out", str(out), "--steps", "24",
            "--batch-size", "4", "--checkpoint-every", "2", "--resources", str(REPO / "configs" / "train-local.yaml"),
            "--checkpoints", f"s3://{s3_bucket}/ckpt", "--workers", "1", "--threads", "1",
            "--cache-dir", str(tmp_path / "cache")]
    killed: list[int] = []
    killer = threading.Thread(target=_kill_a_worker_after_the_first_checkpoint, args=(f"{s3_bucket}/ckpt", killed))
    killer.start()
    try:
        assert run_job(train, args) == 0
    finally:
        killer.join()
    first = capfd.readouterr().out
    assert len(killed) == 1, "no training worker was running after the first checkpoint"
    metrics = read_bundle_meta(str(out))["metrics"]
    trained = metrics["generators"][-1]  # this run's generator (the bundle holds only it)
    assert len(metrics["generators"]) == 1
    assert metrics["workers"] == 2 and trained["steps_done"] == 24 and [h["step"] for h in trained["history"]] == [24]
    # the worker group restarted from a checkpoint (a step after the first), not from step 0
    assert len(metrics["resumed_at"]) == 1 and metrics["resumed_at"][0] in range(2, 24, 2)
    assert f"resumed from the checkpoint of step {metrics['resumed_at'][0]}" in first
    assert trained["n_train_songs"] == 6 and trained["n_pairs"] >= 6 * 4  # 4 s songs: 5 slices of 0.74 s each
    assert np.isfinite(trained["history"][0]["l1"])
    # the pairs went to Parquet once, beside the checkpoints; a checkpoint every 2 steps (the last two kept)
    fs = s3_filesystem()
    fs.invalidate_cache()  # the same (cached) instance as the killer's, which listed the bucket while it was written
    assert trained["pairs"].startswith(f"s3://{s3_bucket}/ckpt/gan-pairs-")
    assert fs.glob(trained["pairs"][len("s3://"):] + "/*.parquet")
    states = sorted(fs.glob(f"{s3_bucket}/ckpt/train-gan-*/checkpoint_*/state.pt"))  # in the order written
    saved = []
    for path in states:
        with fs.open(path, "rb") as fh:
            saved.append(torch.load(fh, weights_only=True))  # no pickle needed: tensors, numbers, strings
    assert [s["step"] for s in saved][-2:] == [22, 24]  # the last two kept
    # besides them, only checkpoints the kill cut off while Ray Train was registering them (rank 0 had written them,
    # the controller never tracked them, so they are never pruned): written after the step the group resumed from,
    # before it restarted. How many depends on when the controller tears the group down: one usually, two seen once
    orphans = [s["step"] for s in saved[:-2]]
    assert len(orphans) <= 2 and all(metrics["resumed_at"][0] < step < 22 for step in orphans), orphans
    state = saved[-1]
    assert state["step"] == 24 and state["stopped"]
    assert set(state) >= {"generator", "discriminator", "opt_g", "opt_d"}

    assert run_job(train, args) == 0  # the same training again: resumes from its last checkpoint, nothing to do
    again = capfd.readouterr().out
    assert "resumed from the checkpoint of step 24" in again and "training pairs: reading" in again
    assert read_bundle_meta(str(out))["metrics"]["generators"][-1]["steps_done"] == 24

    # the bundle loads for its CNN, and the GAN stage runs on it
    _, cnn_meta = load_cnn_bundle(cnn)
    _, meta = load_gan_for(str(out), cnn_meta)
    assert meta.cnn_version == cnn_meta.version and meta.n_features == cnn_meta.n_mels
    load_gan_bundle(str(out), cnn_version=cnn_meta.version, feature_version=cnn_meta.feature_version)
    songs = pd.read_parquet(val)
    batch = CNNVoter(cnn, device="cpu")(DecodeStage(cnn_meta.feature_config)(
        {"track_id": songs["track_id"].to_numpy(object), "audio_uri": songs["audio_uri"].to_numpy(object)}))
    assert set(batch["status"]) == {"unclassified"}
    labelled = GANStage(str(out), cnn, device="cpu")(batch)
    assert (labelled["gan_input_slices"] > 0).all()
    assert set(labelled["status"]) <= {"gan_resolved", "unclassified"}


def test_with_a_bundle_the_new_one_holds_its_generators_and_one_toward_this_catalogs_reference(
        training_ray, catalogs, cnn, tmp_path, capfd):
    from genre_core.decoding import DecodeStage
    from genre_core.labelling import CNNVoter
    from genre_core.models.gan_bundle import load_gan_models, save_untrained_bundle
    from genre_core.stages import GANStage

    catalog, val = catalogs
    base = save_untrained_bundle(cnn, str(tmp_path / "base"), seed=5)  # one generator, toward "untrained-0"
    out = tmp_path / "pair"
    args = ["gan", "--cnn", cnn, "--catalog", catalog, "--with", base, "--tune-catalog", val, "--out", str(out),
            "--steps", "4", "--batch-size", "4", "--checkpoint-every", "4", "--resources",
            str(REPO / "configs" / "train-local.yaml"), "--checkpoints", str(tmp_path / "ckpt"), "--workers", "1",
            "--threads", "1", "--cache-dir", str(tmp_path / "cache")]
    assert run_job(train, args) == 0
    printed = capfd.readouterr().out
    assert "clean targets through FluidR3_GM.sf2" in printed and "toward untrained-0, FluidR3_GM.sf2" in printed
    _, cnn_meta = load_cnn_bundle(cnn)
    versions = {"cnn_version": cnn_meta.version, "feature_version": cnn_meta.feature_version}
    (old,), _, base_meta = load_gan_models(base, **versions)
    gens, discs, meta = load_gan_models(str(out), **versions)
    assert meta.references == ("untrained-0", "FluidR3_GM.sf2") and base_meta.references == ("untrained-0",)
    for a, b in zip(old.state_dict().values(), gens[0].state_dict().values(), strict=True):
        assert torch.equal(a, b)  # carried over as it was
    assert discs[0] is None and discs[1] is not None  # the untrained base had no discriminator; the new G's is kept
    records = meta.metrics["generators"]
    assert [r["reference"] for r in records] == ["untrained-0", "FluidR3_GM.sf2"] and records[1]["steps_done"] == 4
    assert meta.metrics["with_bundle"] == base_meta.version
    songs = pd.read_parquet(val)
    batch = CNNVoter(cnn, device="cpu")(DecodeStage(cnn_meta.feature_config)(
        {"track_id": songs["track_id"].to_numpy(object), "audio_uri": songs["audio_uri"].to_numpy(object)}))
    stage = GANStage(str(out), cnn, device="cpu")
    assert len(stage.generators) == 2
    assert (stage(batch)["gan_input_slices"] > 0).all()

    # a bundle that already holds a generator toward this reference is refused, before any training
    again = args[:args.index("--with") + 1] + [str(out)] + args[args.index("--with") + 2:]
    again[again.index("--out") + 1] = str(tmp_path / "twice")
    assert run_job(train, again) == 2
    assert "already holds a generator toward FluidR3_GM.sf2" in capfd.readouterr().err
    assert not (tmp_path / "twice").exists()
