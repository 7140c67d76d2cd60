"""The torch port of musicnn against the TensorFlow model's recorded outputs (no TensorFlow needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from genre_core.artifacts import BundleError
from genre_core.models.musicnn import load_backbone

BACKBONES = Path(__file__).resolve().parents[2] / "models" / "backbones"


@pytest.mark.parametrize("name", ["musicnn-msd", "musicnn-mtt"])
def test_port_matches_the_tensorflow_outputs(name: str) -> None:
    model, meta = load_backbone(str(BACKBONES / name))
    ref = meta["reference"]
    x = np.random.default_rng(ref["seed"]).uniform(0.0, 4.0, size=tuple(ref["shape"])).astype(np.float32)
    with torch.inference_mode():
        logits, penultimate = model(torch.from_numpy(x).transpose(1, 2).contiguous())  # [B, time, mels] -> ours
    assert logits.shape == (3, 50) and penultimate.shape == (3, 200) and len(model.tags) == 50
    assert np.abs(logits.numpy() - np.asarray(ref["logits"])).max() <= 1e-4
    assert np.abs(penultimate.numpy() - np.asarray(ref["penultimate"])).max() <= 1e-4
    assert meta["licence"] == "ISC" and (BACKBONES / name / "LICENSE").read_text().strip()


def test_weights_with_another_sha256_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "musicnn-msd"
    shutil.copytree(BACKBONES / "musicnn-msd", target)
    blob = bytearray((target / "weights.safetensors").read_bytes())
    blob[-1] ^= 0x01
    (target / "weights.safetensors").write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="integrity"):
        load_backbone(str(target))
    with pytest.raises(BundleError, match="not found"):
        load_backbone(str(tmp_path / "nowhere"))


def test_wrong_input_shape_is_named() -> None:
    model, _ = load_backbone(str(BACKBONES / "musicnn-msd"))
    with pytest.raises(ValueError, match=r"\[B, 96, 187\]"):
        model(torch.zeros(1, 187, 96))
