"""genre_core.models.musicnn: the torch port against the TF outputs recorded at conversion, and load_backbone's
refusals. No TensorFlow needed: the reference input is regenerated from the recipe in backbone.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from genre_core.artifacts import BundleError
from genre_core.models.musicnn import Musicnn, load_backbone

BACKBONES = Path(__file__).resolve().parents[2] / "models" / "backbones"
NAMES = ["musicnn-msd", "musicnn-mtt"]
TOL = 1e-4


def _reference(meta: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input [B, n_mels, n_frames], TF logits, TF penultimate) from backbone.json's ``reference``."""
    ref = meta["reference"]
    x = np.random.default_rng(ref["seed"]).uniform(0.0, 4.0, size=tuple(ref["shape"])).astype(np.float32)
    return (torch.from_numpy(x).transpose(1, 2), torch.tensor(ref["logits"], dtype=torch.float32),
            torch.tensor(ref["penultimate"], dtype=torch.float32))


@pytest.fixture(scope="module", params=NAMES)
def backbone(request: pytest.FixtureRequest) -> tuple[Musicnn, dict]:
    return load_backbone(str(BACKBONES / request.param))


def test_fast_path_matches_tensorflow(backbone: tuple[Musicnn, dict]) -> None:
    model, meta = backbone
    x, logits_tf, pen_tf = _reference(meta)
    assert not model.training
    with torch.inference_mode():
        logits, pen, pooled = model(x)
    assert pooled.shape == (3, 1506)
    assert logits.shape == logits_tf.shape == (3, 50)
    assert pen.shape == pen_tf.shape == (3, 200)
    assert float(logits_tf.abs().max()) > 1.0  # the recorded outputs are not trivially ~0
    assert float((logits - logits_tf).abs().max()) <= TOL
    assert float((pen - pen_tf).abs().max()) <= TOL


def test_reference_path_matches_tensorflow(backbone: tuple[Musicnn, dict]) -> None:
    model, meta = backbone
    x, logits_tf, pen_tf = _reference(meta)
    with torch.inference_mode():
        logits, pen, _ = model.forward_reference(x)
    assert float((logits - logits_tf).abs().max()) <= TOL
    assert float((pen - pen_tf).abs().max()) <= TOL


def test_fast_path_equals_reference_on_other_shapes(backbone: tuple[Musicnn, dict]) -> None:
    """Batch of one, a patch length that is not a multiple of the banded-GEMM block, inputs out of range."""
    model, _ = backbone
    torch.manual_seed(0)
    for x in (torch.rand(1, 96, 187) * 4, torch.rand(2, 96, 61) * 4, torch.randn(5, 96, 187) * 3):
        with torch.inference_mode():
            fast, ref = model(x), model.forward_reference(x)
        torch.testing.assert_close(fast[0], ref[0], atol=TOL, rtol=0)
        torch.testing.assert_close(fast[1], ref[1], atol=TOL, rtol=0)
        torch.testing.assert_close(fast[2], ref[2], atol=TOL, rtol=1e-5)  # pooled features reach the hundreds


def test_tags_and_attributes(backbone: tuple[Musicnn, dict]) -> None:
    model, meta = backbone
    assert (model.n_mels, model.n_frames, model.n_tags) == (96, 187, 50)
    assert isinstance(model.tags, tuple) and model.tags == tuple(meta["tags"])
    assert len(set(model.tags)) == 50
    first = {"musicnn-msd": "rock", "musicnn-mtt": "guitar"}[meta["name"]]
    assert model.tags[0] == first
    assert meta["licence"] == "ISC"
    assert (BACKBONES / meta["name"] / "LICENSE").read_text().count("Permission to use, copy, modify") == 1


def test_wrong_input_shape_is_refused(backbone: tuple[Musicnn, dict]) -> None:
    model, _ = backbone
    with pytest.raises(ValueError, match="expected input"):
        model(torch.rand(2, 187, 96))  # musicnn's own [B, time, mels] layout


def test_fast_tensors_follow_new_weights(backbone: tuple[Musicnn, dict]) -> None:
    """Loading other weights into a model that already ran must not reuse stale fast-path tensors."""
    model, meta = backbone
    x, _, _ = _reference(meta)
    other = Musicnn(model.tags)
    other.eval()
    with torch.inference_mode():
        before = other(x)[0]
    other.load_state_dict(model.state_dict())
    with torch.inference_mode():
        after = other(x)[0]
        expected = model(x)[0]
    torch.testing.assert_close(after, expected, atol=TOL, rtol=0)
    assert float((before - after).abs().max()) > 1e-2


def test_training_mode_runs_reference_and_backpropagates() -> None:
    torch.manual_seed(0)
    model = Musicnn(("a", "b", "c"), n_tags=3).train()
    logits, pen, pooled = model(torch.rand(4, 96, 40) * 4)
    assert logits.shape == (4, 3) and pen.shape == (4, 200) and pooled.shape == (4, 1506)
    logits.sum().backward()
    assert model.timbral74.weight.grad is not None and model.timbral74.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_flipped_byte_is_refused(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    shutil.copytree(BACKBONES / name, target)
    weights = target / "weights.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    weights.write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="sha256"):
        load_backbone(str(target))


def test_missing_files_and_unfit_weights_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "b"
    shutil.copytree(BACKBONES / "musicnn-mtt", target)
    meta = json.loads((target / "backbone.json").read_text())
    meta["tags"] = meta["tags"][:10]  # 50-tag weights do not fit a 10-tag model
    (target / "backbone.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="does not fit"):
        load_backbone(str(target))
    (target / "weights.safetensors").unlink()
    with pytest.raises(BundleError, match="weights.safetensors not found"):
        load_backbone(str(target))
    with pytest.raises(BundleError, match="backbone.json not found"):
        load_backbone(str(tmp_path / "nothing"))


def test_back_end_of_front_end_is_the_network_and_passes_gradients(backbone: tuple[Musicnn, dict]) -> None:
    model, _ = backbone
    model.eval()
    x = torch.rand(2, 96, 187) * 4
    with torch.inference_mode():
        f = model.front_end(x)
        assert f.shape == (2, model.n_front, 187) == (2, 561, 187)
        for a, b in zip(model.back_end(f), model(x), strict=True):
            torch.testing.assert_close(a, b)
    model.eval()  # rebuilds the fast-path tensors outside inference mode, so that autograd may use them
    f = f.clone().requires_grad_(True)
    model.back_end(f)[0].sum().backward()
    assert f.grad is not None and float(f.grad.abs().sum()) > 0
    assert all(p.grad is None for p in model.parameters())  # only the input gets a gradient here
