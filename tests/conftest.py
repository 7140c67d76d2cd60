"""Shared fixtures: a real moto S3 server on 127.0.0.1 (HTTP), a local Ray cluster per module, a few rendered
songs, a models folder with a GAN bundle, repo paths."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """Start moto's S3 server as a separate process on loopback; yield its URL; point AWS env vars at it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except Exception:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto S3 server did not start") from None
            time.sleep(0.2)
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield url
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def s3_bucket(s3_endpoint, request):
    """A fresh, empty bucket on the moto server; yields its name."""
    from genre_core.storage import s3_filesystem

    name = "test-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    fs = s3_filesystem()
    if fs.exists(name):
        fs.rm(name, recursive=True)
    fs.mkdir(name)
    yield name


@pytest.fixture(scope="module")
def local_ray(s3_endpoint):
    """A real local Ray cluster (2 CPUs) for one test module; started after the S3 environment is set, so that
    its workers inherit the endpoint."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)  # always a new cluster of its own
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def training_ray(s3_endpoint):
    """A local Ray (2 CPUs) for one test module that trains, with the dashboard, whose state API Ray Train's
    controller watches; started after the S3 environment is set, so that its workers inherit the endpoint."""
    import ray

    from jobs.label_pipeline import init_ray

    init_ray(num_cpus=2, include_dashboard=True)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def rendered_songs(tmp_path_factory) -> pd.DataFrame:
    """8 songs of 15 s (2 per genre: blues, classical, metal, reggae) rendered with the real FluidSynth into a
    local folder; the catalog as a DataFrame (track_id, audio_uri absolute, genre, ...)."""
    from jobs import make_catalog
    from jobs.cli import run_job

    out = tmp_path_factory.mktemp("songs")
    assert run_job(make_catalog, ["--per-genre", "2", "--genres", "blues,classical,metal,reggae", "--seconds", "15",
                                  "--seed", "3", "--workers", "2", "--out", str(out)]) == 0
    return pd.read_parquet(out / "catalog.parquet")


@pytest.fixture(scope="session")
def models_with_gan(tmp_path_factory) -> str:
    """A models folder: the shipped CNN bundle plus a GAN bundle made for it, with a seeded, untrained generator
    (for tests of where the GAN stage runs and what it receives, not of translation quality)."""
    import shutil

    from genre_core.models.gan_bundle import save_untrained_bundle
    from jobs.models import DEFAULT_MODELS

    root = tmp_path_factory.mktemp("models")
    shutil.copytree(f"{DEFAULT_MODELS}/cnn", root / "cnn")
    save_untrained_bundle(str(root / "cnn"), str(root / "gan"))
    return str(root)
