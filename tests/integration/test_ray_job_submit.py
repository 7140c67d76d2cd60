"""`ray job submit` against a real head node started with `ray start --head`."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from genre_core.label_table import locate, read_labels
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
    """A head node of its own: `ray start --head --block` in a new session, stopped by signalling that session
    only (`ray stop` would stop every Ray cluster of the machine, other test runs' included)."""
    # token authentication on, as on a real cluster, with a token of this test's own
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    gcs, dash = _free_port(), _free_port()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port", str(gcs), "--node-ip-address",
         "127.0.0.1", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--include-dashboard", "true",
         "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        _wait_for(head, "Ray runtime started", timeout=300)
        yield f"http://127.0.0.1:{dash}", env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            _forget_cluster(gcs)


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
    assert "committed run" in proc.stdout
    labels = read_labels(locate(str(out)))
    assert len(labels) == 10 and labels["track_id"].is_unique
    assert set(labels["status"]) <= {"classified", "gan_resolved", "unclassified"}
