"""genre_core.models.gan + genre_core.training.gan: shapes, losses, identity property, bundles, tuning."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genre_core.artifacts import BundleError, save_bundle
from genre_core.config import FeatureConfig, VotingConfig
from genre_core.models.gan import (
    Discriminator,
    GANBundle,
    GANBundleMismatch,
    GANLossWeights,
    GANModelConfig,
    Generator,
    discriminator_losses,
    generator_losses,
    load_gan_bundle,
    save_gan_bundle,
)
from genre_core.refine import CandidateEvidence
from genre_core.training.cnn import Song
from genre_core.training.gan import GANTrainConfig, choose_refine_params, refine_tuning_set, train_gan

TINY = GANModelConfig(g_channels=4, g_downsamples=1, g_res_blocks=1, d_channels=8, d_layers=2)
FEATURES = FeatureConfig(n_mels=16, slice_frames=16, slice_hop_frames=16)
CLASSES = ("blues", "jazz", "rock")


def _perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random non-zero weights everywhere (the generator's last layer starts at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


# ---- shapes and basics -----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 1, 32, 32), (5, 32, 32), (2, 1, 32, 16), (3, 1, 32, 8)])
def test_generator_keeps_the_shape(shape: tuple[int, ...]) -> None:
    g = Generator(10, GANModelConfig(g_channels=4, g_res_blocks=1), n_mels=32)
    x = torch.randn(*shape)
    y = g(x, torch.randint(0, 10, (shape[0],)))
    assert y.shape == (shape[0], 1, 32, shape[-1])


def test_generator_accepts_one_hot_and_rejects_bad_conditions() -> None:
    g = _perturbed(Generator(3, TINY, n_mels=16))
    x = torch.randn(2, 1, 16, 16)
    c = torch.tensor([0, 2])
    torch.testing.assert_close(g(x, c), g(x, torch.nn.functional.one_hot(c, 3).float()))
    with pytest.raises(ValueError, match="out of range"):
        g(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="entries for a batch"):
        g(x, torch.tensor([0]))
    with pytest.raises(ValueError, match="expected input"):
        g(torch.randn(2, 1, 8, 16), c)
    odd = torch.randn(2, 1, 16, 15)  # a length the strides do not divide: padded, then cropped back
    out = g(odd, c)
    assert out.shape == odd.shape and not torch.allclose(out, odd)


def test_untrained_generator_is_the_identity_and_condition_matters_once_trained() -> None:
    g = Generator(3, TINY, n_mels=16).eval()
    x = torch.randn(4, 1, 16, 16)
    torch.testing.assert_close(g(x, torch.tensor([0, 1, 2, 0])), x, rtol=0, atol=0)
    g = _perturbed(g)
    assert not torch.allclose(g(x, torch.zeros(4, dtype=torch.long)), g(x, torch.ones(4, dtype=torch.long)))


def test_discriminator_heads_shapes() -> None:
    d = Discriminator(10, GANModelConfig(d_channels=8, d_layers=3), n_mels=32)
    adv, cls = d(torch.randn(4, 1, 32, 16))
    assert adv.shape == (4, 1, 4, 2) and cls.shape == (4, 10)
    adv, cls = d(torch.randn(4, 32, 32))
    assert adv.shape == (4, 1, 4, 4) and cls.shape == (4, 10)


def test_losses_are_finite_and_backpropagate() -> None:
    torch.manual_seed(0)
    g, d = Generator(3, TINY, n_mels=16), Discriminator(3, TINY, n_mels=16)
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
    lg, fake = generator_losses(g, d, x, y, (y + 1) % 3, GANLossWeights())
    assert set(lg) >= {"total", "adv", "cls", "cycle", "identity", "cost"}
    assert all(torch.isfinite(v) for v in lg.values())
    lg["total"].backward()
    assert g.out.weight.grad is not None and g.out.weight.grad.abs().sum() > 0
    g.zero_grad(set_to_none=True)
    ld = discriminator_losses(d, x, y, fake, GANLossWeights())
    ld["total"].backward()
    assert torch.isfinite(ld["total"])
    assert all(p.grad is None for p in g.parameters())  # the discriminator's step never reaches G


# ---- identity property on a tiny trained model -------------------------------------------------------------

def _toy_songs(n_per_class: int = 8, seed: int = 0) -> list[Song]:
    """Three 'genres' = energy in the low, middle or high third of 16 mel bands, plus noise; standardised."""
    rng = np.random.default_rng(seed)
    songs = []
    for g in range(3):
        for i in range(n_per_class):
            x = rng.normal(0, 0.3, (4, 16, 16)).astype(np.float32)
            x[:, 5 * g:5 * g + 6, :] += 2.0
            x = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)
            songs.append(Song(f"{g}-{i}", g, x.astype(np.float32)))
    return songs


@pytest.fixture(scope="module")
def tiny_trained() -> tuple[Generator, Discriminator, list[Song]]:
    torch.set_num_threads(1)
    songs = _toy_songs(8)
    cfg = GANTrainConfig(seed=0, steps=100, batch_size=8, crop_frames=0, lr_g=2e-3, lr_d=2e-3,
                         d_warmup_steps=30, log_every=1000)
    res = train_gan(songs, 3, TINY, cfg, 16, device=torch.device("cpu"), log=lambda _: None)
    assert res.steps_done == 100 and not res.generator.training
    return res.generator, res.discriminator, songs


def test_identity_property_generator_changes_own_genre_least(tiny_trained) -> None:
    g, _, songs = tiny_trained
    x = torch.from_numpy(np.concatenate([s.slices for s in songs])).unsqueeze(1)
    y = torch.from_numpy(np.concatenate([np.full(len(s.slices), s.genre_index) for s in songs]))
    with torch.no_grad():
        own = (g(x, y) - x).abs().mean().item()
        other = (g(x, (y + 1) % 3) - x).abs().mean().item()
    assert own < 0.2, own                     # G(x, c_x) ~ x (in units of the standardised input)
    assert other > 3 * own, (own, other)      # reaching another genre costs much more change


def test_training_is_deterministic_for_a_seed() -> None:
    songs = _toy_songs(4)
    cfg = GANTrainConfig(seed=3, steps=3, batch_size=4, crop_frames=8, d_warmup_steps=2, log_every=1000)
    a = train_gan(songs, 3, TINY, cfg, 16, device=torch.device("cpu"), log=lambda _: None)
    b = train_gan(songs, 3, TINY, cfg, 16, device=torch.device("cpu"), log=lambda _: None)
    for (k, va), vb in zip(a.generator.state_dict().items(), b.generator.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    with pytest.raises(ValueError, match="crop_frames"):
        train_gan(songs, 3, TINY, dataclasses.replace(cfg, crop_frames=7), 16, log=lambda _: None)


# ---- bundle ------------------------------------------------------------------------------------------------

def _meta(**kw) -> GANBundle:
    base = dict(classes=CLASSES, model_config=TINY, cnn_version="cnn-1", feature_version="fv-a",
                feature_config=FEATURES, n_mels=16, n_frames=16,
                refine={"top_k": 2, "cost_weight": 4.0, "threshold": 0.55},
                train_config=GANTrainConfig(seed=7), metrics={"timings": {"train_s": 1.0}})
    base.update(kw)
    return GANBundle(**base)


def test_bundle_round_trip_same_translations(tmp_path: Path) -> None:
    g, d = _perturbed(Generator(3, TINY, n_mels=16)), _perturbed(Discriminator(3, TINY, n_mels=16), 1)
    saved = save_gan_bundle(str(tmp_path / "gan"), g, d, _meta())
    assert saved.version.startswith("gan-") and saved.cnn_version == "cnn-1"
    raw = json.loads((tmp_path / "gan" / "bundle.json").read_text())
    assert raw["kind"] == "gan" and raw["cnn_version"] == "cnn-1" and raw["feature_version"] == "fv-a"
    assert raw["train_config"]["seed"] == 7
    g2, meta, d2 = load_gan_bundle(str(tmp_path / "gan"), cnn_version="cnn-1", feature_version="fv-a",
                                   with_discriminator=True)
    assert not g2.training and not d2.training
    assert meta.refine == {"top_k": 2, "cost_weight": 4.0, "threshold": 0.55}
    assert meta.model_config == TINY and meta.feature_config == FEATURES and meta.classes == CLASSES
    x, c = torch.randn(3, 1, 16, 16), torch.tensor([0, 1, 2])
    with torch.no_grad():
        torch.testing.assert_close(g(x, c), g2(x, c), rtol=0, atol=0)
        torch.testing.assert_close(d(x)[1], d2(x)[1], rtol=0, atol=0)


@pytest.mark.parametrize(("cnn_version", "feature_version", "match"), [
    ("cnn-2", "fv-a", "trained for CNN bundle 'cnn-1'"),
    ("cnn-1", "fv-b", "feature_version is 'fv-a'"),
])
def test_bundle_refuses_another_cnn_or_feature_version(tmp_path: Path, cnn_version: str, feature_version: str,
                                                       match: str) -> None:
    save_gan_bundle(str(tmp_path / "gan"), Generator(3, TINY, n_mels=16), None, _meta())
    with pytest.raises(GANBundleMismatch, match=match):
        load_gan_bundle(str(tmp_path / "gan"), cnn_version=cnn_version, feature_version=feature_version)


def test_bundle_refuses_other_kinds_tampering_and_missing_names(tmp_path: Path) -> None:
    save_bundle(str(tmp_path / "cnn"), "cnn", {"w": torch.zeros(2)}, {"classes": list(CLASSES)})
    with pytest.raises(BundleError, match="kind 'cnn'"):
        load_gan_bundle(str(tmp_path / "cnn"), cnn_version="cnn-1", feature_version="fv-a")
    save_gan_bundle(str(tmp_path / "gan"), Generator(3, TINY, n_mels=16), None, _meta())
    weights = tmp_path / "gan" / "weights.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="integrity"):
        load_gan_bundle(str(tmp_path / "gan"), cnn_version="cnn-1", feature_version="fv-a")
    with pytest.raises(BundleError, match="must name the CNN bundle"):
        save_gan_bundle(str(tmp_path / "x"), Generator(3, TINY, n_mels=16), None, _meta(cnn_version=""))
    with pytest.raises(BundleError, match="no discriminator"):
        save_gan_bundle(str(tmp_path / "g"), Generator(3, TINY, n_mels=16), None, _meta())
        load_gan_bundle(str(tmp_path / "g"), cnn_version="cnn-1", feature_version="fv-a", with_discriminator=True)


# ---- choosing the refine parameters on validation songs --------------------------------------------------

def test_refine_tuning_set_takes_unclassified_then_most_ambiguous() -> None:
    def p(shares: list[float]) -> np.ndarray:
        return np.array([shares])

    probs = [p([0.9, 0.05, 0.05]), p([0.45, 0.4, 0.15]), p([0.7, 0.2, 0.1]), p([0.65, 0.3, 0.05])]
    voting = VotingConfig(tau=0.6, margin=0.2)
    assert refine_tuning_set(probs, voting, min_songs=1) == [1]
    assert refine_tuning_set(probs, voting, min_songs=2) == [1, 3]   # margin 0.35 < 0.5 < 0.85
    assert refine_tuning_set(probs, voting, min_songs=9) == [0, 1, 2, 3]


def _ev(cands: list[int], conf: list[float], cost: list[float]) -> CandidateEvidence:
    reading = np.array(conf, float)  # the CNN's reading of the translations (the score's evidence)
    misleading = reading[::-1].copy()  # P(c | G(x, c)), which the rule must not score with
    return CandidateEvidence(np.array(cands), misleading, np.array(cost, float), np.full(len(cands), 0.3), reading)


def test_choose_refine_params_prefers_the_cost_when_it_separates_and_picks_threshold() -> None:
    # the CNN's confidence always prefers the first candidate, the translation cost points at the truth
    evidence = [_ev([0, 1], [0.6, 0.4], [0.10, 0.30]),   # truth 0
                _ev([1, 2], [0.6, 0.4], [0.40, 0.10]),   # truth 2
                _ev([2, 0], [0.6, 0.4], [0.50, 0.20]),   # truth 0
                _ev([0, 2], [0.6, 0.4], [0.10, 0.20])]   # truth 0
    labels = [0, 2, 0, 0]
    params, sel = choose_refine_params([None] * 4, [None] * 4, labels, None, None, top_ks=(2,),
                                       cost_weights=(0.0, 8.0, 64.0), thresholds=(0.0, 0.6, 0.99),
                                       evidence=evidence)
    assert params["top_k"] == 2 and params["cost_weight"] in (8.0, 64.0)
    assert sel["val_forced_argmax_accuracy"] == 0.5 and sel["val_refine_accuracy_all_decided"] == 1.0
    assert params["threshold"] in (0.0, 0.6)   # every decision right: the lowest threshold deciding all
    assert sel["val_threshold_wrong"] == 0 and sel["val_threshold_coverage"] == 1.0
    # when the cost carries no information, cost_weight 0 (ties to the smaller weight) is kept
    flat = [_ev([0, 1], [0.7, 0.3], [0.2, 0.2]), _ev([1, 0], [0.8, 0.2], [0.2, 0.2])]
    params, _ = choose_refine_params([None] * 2, [None] * 2, [0, 1], None, None, top_ks=(2,),
                                     cost_weights=(0.0, 8.0), evidence=flat)
    assert params["cost_weight"] == 0.0


def test_restoration_losses_target_the_clean_crop() -> None:
    torch.manual_seed(0)
    g, d = Generator(3, TINY, n_mels=16).eval(), Discriminator(3, TINY, n_mels=16)  # untrained G: the identity
    clean, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
    degraded = clean + 0.5
    lg, fake = generator_losses(g, d, degraded, y, (y + 1) % 3, GANLossWeights(), clean=clean)
    torch.testing.assert_close(fake, degraded)
    # G gives the degraded crop back unchanged, so restoration and cycle both miss the clean crop by 0.5
    assert abs(lg["identity"].item() - 0.5) < 1e-6 and abs(lg["cycle"].item() - 0.5) < 1e-6
    plain, _ = generator_losses(g, d, degraded, y, (y + 1) % 3, GANLossWeights())
    assert plain["identity"].item() == 0.0 and plain["cycle"].item() == 0.0


def test_augmented_training_needs_the_band_frequencies() -> None:
    cfg = GANTrainConfig(seed=0, steps=2, batch_size=4, crop_frames=8, d_warmup_steps=0, augment=1.0)
    with pytest.raises(ValueError, match="mel_hz"):
        train_gan(_toy_songs(2), 3, TINY, cfg, 16, device=torch.device("cpu"), log=lambda _: None)
    hz = np.linspace(100.0, 8000.0, 16, dtype=np.float32)
    res = train_gan(_toy_songs(2), 3, TINY, cfg, 16, mel_hz=hz, device=torch.device("cpu"), log=lambda _: None)
    assert res.steps_done == 2 and np.isfinite(res.history[-1]["g_identity"])


def test_log_mel_cache_round_trip(tmp_path: Path) -> None:
    import soundfile as sf

    from jobs.train_gan import cached_log_mels

    cfg = FeatureConfig(n_fft=512, hop_length=256, n_mels=16, slice_frames=16, slice_hop_frames=16)
    rng = np.random.default_rng(0)
    uris = []
    for i, seconds in enumerate((0.5, 0.05)):  # the second one is shorter than a slice
        path = tmp_path / f"s{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(22050 * seconds))).astype(np.float32), 22050)
        uris.append(str(path))
    mels, errors = cached_log_mels(["a", "b"], uris, cfg, str(tmp_path / "cache"))
    assert set(mels) == {"a"} and set(errors) == {"b"} and mels["a"].shape[0] == 16
    again, errors2 = cached_log_mels(["a", "b"], uris, cfg, str(tmp_path / "cache"))
    np.testing.assert_array_equal(again["a"], mels["a"])
    assert errors2 == errors and len(list((tmp_path / "cache").glob("*.npy"))) == 1
