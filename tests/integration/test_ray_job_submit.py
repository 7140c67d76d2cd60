"""`ray job submit` against a real head node started with `ray start --head`: the labelling job, and training on
Ray Train with one of its workers SIGKILLed mid-epoch."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from training_catalog import train_catalog, train_config

from genre_core.artifacts import read_bundle_meta
from genre_core.label_table import locate, read_labels
from jobs import make_catalog
from jobs.cli import run_job

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head_node():
    """A head node of its own: `ray start --head --block` in a new session, stopped by signalling that session
    only (`ray stop` would stop every Ray cluster of the machine, other test runs' included)."""
    # token authentication on, as on a real cluster, with a token of this test's own
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    gcs, dash = _free_port(), _free_port()
    # every port of its own: a default one (the dashboard agent's 52365, ...) may be held by another Ray on the machine
    ports = [f"--{name}={_free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                      "runtime-env-agent-port", "metrics-export-port")]
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port", str(gcs), "--node-ip-address",
         "127.0.0.1", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--include-dashboard", "true",
         "--disable-usage-stats", *ports],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        _wait_for(head, "Ray runtime started", timeout=300)
        _wait_for_job_agent(f"http://127.0.0.1:{dash}", env, timeout=120)
        yield f"http://127.0.0.1:{dash}", env, head.pid
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            _forget_cluster(gcs)


def _wait_for_job_agent(address: str, env: dict[str, str], timeout: float) -> None:
    """Submit a no-op job until the head's job agent takes it (a fresh head answers "No available agent" at first)."""
    deadline = time.time() + timeout
    while True:
        probe = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", address, "--", "true"], env=env,
                               capture_output=True, text=True, timeout=120)
        if probe.returncode == 0:
            return
        if time.time() > deadline:
            raise RuntimeError(f"the head node's job agent never took a job:\n{probe.stdout[-2000:]}{probe.stderr}")
        time.sleep(2)


def _forget_cluster(gcs_port: int) -> None:
    """Remove Ray's record of the last started cluster if it is ours (`ray stop` would; a killed head does not)."""
    record = Path("/tmp/ray/ray_current_cluster")
    with contextlib.suppress(OSError):
        if record.read_text().strip().endswith(f":{gcs_port}"):
            record.unlink()


def _wait_for(proc: subprocess.Popen, marker: str, timeout: float) -> None:
    """Wait until ``proc`` prints ``marker``; its output is read by a thread (and keeps being drained)."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            seen.append(line)
            if marker in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout):
        raise RuntimeError(f"`ray start --head` did not report {marker!r}:\n{''.join(seen)[-3000:]}")


def test_ray_job_submit_labels_a_catalog(head_node, tmp_path):
    address, env, _ = head_node
    assert run_job(make_catalog, ["--per-genre", "1", "--out", str(tmp_path / "cat")]) == 0
    out = tmp_path / "labels"
    proc = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
         "python", "-m", "jobs.label", "--catalog", str(tmp_path / "cat" / "catalog.parquet"),
         "--output", str(out), "--config", "configs/label-local.yaml"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "committed run" in proc.stdout
    labels = read_labels(locate(str(out)))
    assert len(labels) == 10 and labels["track_id"].is_unique
    assert set(labels["status"]) <= {"classified", "gan_resolved", "unclassified"}


def _train_workers(session: int) -> list[int]:
    """Process ids of the Ray Train workers of the head node whose process session is ``session``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode()
            if title.startswith("ray::RayTrainWorker") and os.getsid(int(proc.name)) == session:
                found.append(int(proc.name))
        except (OSError, UnicodeDecodeError):
            continue
    return found


def test_ray_job_submit_trains_and_a_worker_killed_mid_epoch_resumes_from_its_checkpoint(head_node, tmp_path):
    address, env, session = head_node
    catalog = train_catalog(tmp_path / "cat")
    ckpt, out = tmp_path / "ckpt", tmp_path / "cnn"
    job = subprocess.Popen(
        [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
         "python", "-m", "jobs.train", "cnn", "--catalog", catalog, "--out", str(out), "--config",
         train_config(tmp_path, 3), "--resources", "configs/train-local.yaml", "--checkpoints", str(ckpt)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 400
        # the controller has registered the checkpoint of epoch 1 (a checkpoint still being written when its worker
        # dies is not one: the run would start again from scratch), and epoch 2 runs
        while not list(ckpt.glob("*/checkpoint_manager_snapshot.json")):
            assert job.poll() is None and time.time() < deadline, job.communicate()[0][-4000:]
            time.sleep(0.5)
        workers = _train_workers(session)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        output, _ = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, output[-4000:]
    metrics = read_bundle_meta(str(out))["metrics"]
    assert "resumed from the checkpoint of epoch" in output
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]   # every epoch once, none lost or repeated
    assert len(metrics["resumed_after"]) == 1 and metrics["resumed_after"][0] in (1, 2)
    assert metrics["test"]["n_songs"] == metrics["n_songs"]["test"]
