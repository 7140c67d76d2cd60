"""genre_core.artifacts: bundle round trip, integrity check, no unpickling, kinds, S3."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from genre_core import artifacts
from genre_core.artifacts import (
    BundleError,
    CNNBundle,
    load_bundle,
    load_cnn_bundle,
    save_bundle,
    save_cnn_bundle,
)
from genre_core.config import CNNConfig, FeatureConfig, VotingConfig
from genre_core.models.cnn import SliceCNN

CLASSES = ("blues", "jazz", "rock")
FEATURES = FeatureConfig(n_mels=32, slice_frames=32, slice_hop_frames=32)


def _model(seed: int = 0) -> SliceCNN:
    torch.manual_seed(seed)
    model = SliceCNN(len(CLASSES), CNNConfig(channels=(8, 16)), n_mels=32, n_frames=32)
    with torch.no_grad():  # non-trivial BN statistics so that buffers matter in the round trip
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return model.eval()


def _meta() -> CNNBundle:
    return CNNBundle(
        classes=CLASSES, feature_config=FEATURES, cnn_config=CNNConfig(channels=(8, 16)),
        voting=VotingConfig(tau=0.55, margin=0.15), feature_version="fv-test", catalog_fingerprint="abc",
        metrics={"test": {"song_accuracy": 0.9}}, n_mels=32, n_frames=32,
    )


def test_round_trip_same_outputs(tmp_path: Path) -> None:
    model = _model()
    saved = save_cnn_bundle(str(tmp_path / "b"), model, _meta())
    assert saved.version.startswith("cnn-") and len(saved.weights_sha256) == 64
    loaded, meta = load_cnn_bundle(str(tmp_path / "b"))
    assert not loaded.training
    assert meta.classes == CLASSES and meta.voting == VotingConfig(0.55, 0.15)
    assert meta.feature_config == FEATURES and meta.cnn_config == CNNConfig(channels=(8, 16))
    assert meta.metrics == {"test": {"song_accuracy": 0.9}} and meta.version == saved.version
    for name, tensor in model.state_dict().items():  # every weight and buffer, bit for bit
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)
    # on a CPU the loaded model runs channels-last (3x faster): the same outputs as the saved one in that layout,
    # to float rounding in the default one
    assert loaded.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(5, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loaded(x), model.to(memory_format=torch.channels_last)(x), rtol=0, atol=0)
    raw = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert raw["kind"] == "cnn" and raw["classes"] == list(CLASSES)
    assert {"feature_config", "cnn_config", "voting", "metrics", "catalog_fingerprint", "feature_version",
            "created_at", "weights_sha256", "version"} <= set(raw)


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    save_cnn_bundle(str(tmp_path), _model(), _meta())
    weights = tmp_path / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="integrity check"):
        load_cnn_bundle(str(tmp_path))


def test_weights_swapped_from_another_bundle_are_refused(tmp_path: Path) -> None:
    save_cnn_bundle(str(tmp_path / "a"), _model(0), _meta())
    save_cnn_bundle(str(tmp_path / "b"), _model(1), _meta())
    (tmp_path / "a" / "weights.safetensors").write_bytes((tmp_path / "b" / "weights.safetensors").read_bytes())
    with pytest.raises(BundleError, match="sha256"):
        load_cnn_bundle(str(tmp_path / "a"))


def test_pickles_in_the_bundle_are_never_unpickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    save_cnn_bundle(str(tmp_path), model, _meta())
    torch.save(model.state_dict(), tmp_path / "model.pt")           # a pickle-based checkpoint lying around
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"x": 1}))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded, _ = load_cnn_bundle(str(tmp_path))
    x = torch.randn(2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), loaded(x))


def test_pickle_renamed_as_weights_is_refused(tmp_path: Path) -> None:
    save_cnn_bundle(str(tmp_path), _model(), _meta())
    blob = pickle.dumps({"evil": 1})
    (tmp_path / "weights.safetensors").write_bytes(blob)
    meta = json.loads((tmp_path / "bundle.json").read_text())
    meta["weights_sha256"] = artifacts.sha256_hex(blob)   # attacker also fixes the hash
    (tmp_path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="not a valid safetensors"):
        load_cnn_bundle(str(tmp_path))


def test_missing_and_wrong_kind(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no model bundle"):
        load_cnn_bundle(str(tmp_path / "nothing"))
    save_bundle(str(tmp_path / "g"), "gan", {"w": torch.zeros(2)}, {"classes": []})
    with pytest.raises(BundleError, match="kind 'gan'"):
        load_cnn_bundle(str(tmp_path / "g"))


def test_generic_bundle_round_trip(tmp_path: Path) -> None:
    tensors = {"g.weight": torch.arange(6.0).reshape(2, 3), "d.bias": torch.ones(4, dtype=torch.float16)}
    written = save_bundle(str(tmp_path), "gan", tensors, {"note": "x", "version": "gan-v1"})
    assert written["version"] == "gan-v1"
    got, meta = load_bundle(str(tmp_path), kind="gan")
    assert meta["note"] == "x" and meta["kind"] == "gan"
    for k, v in tensors.items():
        assert torch.equal(got[k], v)


def test_metadata_must_match_model(tmp_path: Path) -> None:
    meta = _meta()
    bad = CNNBundle(**{**meta.__dict__, "classes": ("a", "b")})
    with pytest.raises(BundleError, match="classes"):
        save_cnn_bundle(str(tmp_path), _model(), bad)


def test_s3_round_trip(s3_bucket: str) -> None:
    model = _model(3)
    url = f"s3://{s3_bucket}/models/cnn-1"
    save_cnn_bundle(url, model, _meta())
    loaded, meta = load_cnn_bundle(url)
    assert meta.url == url
    x = torch.randn(3, 32, 32)
    with torch.no_grad():  # the loaded model runs channels-last on a CPU (see test_round_trip_same_outputs)
        np.testing.assert_array_equal(model.to(memory_format=torch.channels_last)(x).numpy(), loaded(x).numpy())
