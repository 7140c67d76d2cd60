"""A musicnn genre model saved as a CNN bundle and loaded back: same outputs, backbone named with its sha256."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genre_core.artifacts import CNNBundle, load_cnn_bundle, save_cnn_bundle
from genre_core.config import GENRES, CNNConfig, FeatureConfig, VotingConfig
from genre_core.features import feature_version
from genre_core.models.genre_head import MusicnnGenreModel, new_genre_model

BACKBONE = Path(__file__).resolve().parents[2] / "models" / "backbones" / "musicnn-msd"
FEATURES = FeatureConfig(sample_rate=16000, n_fft=512, hop_length=256, n_mels=96, fmin=0.0, fmax=8000.0,
                         slice_frames=187, slice_hop_frames=187, normalization="none", log_compression="log10_1p")


def test_round_trip_keeps_outputs_prior_and_backbone_record(tmp_path: Path) -> None:
    model, record = new_genre_model(str(BACKBONE), GENRES)
    with torch.no_grad():
        model.head.feature_weight.normal_(0.0, 0.1)  # a head that has moved from its prior
    meta = CNNBundle(classes=GENRES, feature_config=FEATURES, cnn_config=CNNConfig(arch="musicnn"),
                     voting=VotingConfig(), feature_version=feature_version(FEATURES), n_mels=96, n_frames=187,
                     backbone=record)
    save_cnn_bundle(str(tmp_path / "b"), model, meta)
    loaded, loaded_meta = load_cnn_bundle(str(tmp_path / "b"))
    assert isinstance(loaded, MusicnnGenreModel) and loaded.n_classes == len(GENRES)
    x = torch.rand(2, 96, 187) * 4
    model.eval()
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x))
        torch.testing.assert_close(loaded(x.unsqueeze(1)), model(x))  # the channel axis the GAN stage adds
    torch.testing.assert_close(loaded.head.prior, model.head.prior)
    recorded = json.loads((BACKBONE / "backbone.json").read_text())["weights_sha256"]
    assert loaded_meta.backbone["weights_sha256"] == recorded and loaded_meta.backbone["name"] == "musicnn-msd"
    assert loaded_meta.backbone["licence"] == "ISC"


def test_precision_is_the_bundles_and_bf16_stays_close_to_fp32(tmp_path: Path) -> None:
    import pytest

    from genre_core.models.cnn import use_bf16

    cpu = torch.device("cpu")
    assert use_bf16(cpu, "bf16") and not use_bf16(cpu, "fp32")
    assert use_bf16(cpu, "auto") == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    with pytest.raises(ValueError, match="unknown precision"):
        use_bf16(cpu, "fp16")
    model, record = new_genre_model(str(BACKBONE), GENRES, precision="bf16")
    meta = CNNBundle(classes=GENRES, feature_config=FEATURES, cnn_config=CNNConfig(arch="musicnn", precision="bf16"),
                     voting=VotingConfig(), feature_version=feature_version(FEATURES), n_mels=96, n_frames=187,
                     backbone=record)
    save_cnn_bundle(str(tmp_path / "b"), model, meta)
    loaded, _ = load_cnn_bundle(str(tmp_path / "b"))
    assert loaded.precision == "bf16"
    x = torch.rand(4, 96, 187) * 4
    with torch.inference_mode():
        bf16 = loaded.backbone_outputs(x)
        loaded.precision = "fp32"
        fp32 = loaded.backbone_outputs(x)
    assert bf16.dtype == fp32.dtype == torch.float32
    n = loaded.head.n_tags + loaded.head.n_penultimate
    deviation = float((bf16[:, :n] - fp32[:, :n]).abs().max())  # tag logits and penultimate features
    assert 0.0 < deviation < 0.5  # bf16 arithmetic did run, and it reads the patches as fp32 does
    pooled = (bf16[:, n:] - fp32[:, n:]).abs() / loaded.head.pooled_std  # in the head's standardised units
    assert float(pooled.max()) < 0.5


def test_the_gan_features_are_the_front_end_and_the_rest_of_the_network_reads_them() -> None:
    model, _ = new_genre_model(str(BACKBONE), GENRES, precision="fp32")
    with torch.no_grad():
        model.head.pooled_weight.normal_(0.0, 0.05)
    model.eval()
    x = torch.rand(3, 96, 187) * 4
    with torch.inference_mode():
        f = model.gan_features(x.unsqueeze(1))
        assert f.shape == (3, model.n_gan_features, 187) == (3, 561, 187) and f.dtype == torch.float32
        torch.testing.assert_close(model.logits_from_gan_features(f), model(x), atol=1e-4, rtol=1e-4)
    model.eval()  # outside inference mode again: the GAN's losses back-propagate through the rest of the network
    f = f.clone().requires_grad_(True)
    model.logits_from_gan_features(f).sum().backward()
    assert f.grad is not None and float(f.grad.abs().sum()) > 0
