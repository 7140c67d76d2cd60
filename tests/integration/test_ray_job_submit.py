"""`ray job submit` against a real head node started with `ray start --head`."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from genre_core.label_store import latest_labels
from jobs import make_catalog
from jobs.cli import run_job

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def head_node(tmp_path):
    # token authentication on, as on a real cluster, with a token of this test's own
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    gcs, dash = _free_port(), _free_port()
    subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True)
    subprocess.run(
        [str(BIN / "ray"), "start", "--head", "--num-cpus", "2", "--port", str(gcs), "--node-ip-address",
         "127.0.0.1", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--include-dashboard", "true",
         "--disable-usage-stats"],
        env=env, check=True, capture_output=True, timeout=120,
    )
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=60)


def test_ray_job_submit_labels_a_catalog(head_node, tmp_path):
    address, env = head_node
    assert run_job(make_catalog, ["--per-genre", "1", "--out", str(tmp_path / "cat")]) == 0
    out = tmp_path / "labels"
    proc = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
         "python", "-m", "jobs.label", "--catalog", str(tmp_path / "cat" / "catalog.parquet"),
         "--output", str(out), "--config", "configs/label-local.yaml"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "published run" in proc.stdout
    labels = latest_labels(str(out))
    assert len(labels) == 10 and labels["track_id"].is_unique
    assert set(labels["status"]) <= {"classified", "gan_resolved", "unclassified"}
