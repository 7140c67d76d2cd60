"""A tiny labelled catalog and a short training config for the Ray Train tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from jobs import make_catalog
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
