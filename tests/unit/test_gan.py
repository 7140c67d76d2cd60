"""genre_core.models.gan (networks), genre_core.models.gan_bundle (I/O) and genre_core.training.gan (paired
training, the refine parameters chosen on validation songs)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genre_core.artifacts import BundleError, save_bundle
from genre_core.config import CNNConfig, FeatureConfig, VotingConfig
from genre_core.models.cnn import SliceCNN
from genre_core.models.gan import GANModelConfig, Generator, PatchDiscriminator
from genre_core.models.gan_bundle import (
    GANBundle,
    GANBundleMismatch,
    load_gan_bundle,
    load_gan_models,
    save_gan_bundle,
)
from genre_core.refine import RefineParams
from genre_core.training.gan import (
    GANLossWeights,
    GANTrainConfig,
    GANTrainLoop,
    Pairs,
    choose_refine_params,
    frozen,
    generator_losses,
    memory_batches,
    refine_tuning_set,
    train_gan,
)

TINY = GANModelConfig(g_channels=8, g_res_blocks=1, g_kernel=3, d_channels=8, d_layers=2)
FEATURES = FeatureConfig(n_mels=16, slice_frames=16, slice_hop_frames=16)
CLASSES = ("blues", "jazz", "rock")


def _perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random non-zero weights everywhere (the generator's last layer starts at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _cnn(n_frames: int = 16) -> SliceCNN:
    """A slice CNN on 16 mel bands: its GAN features are the slices themselves ([B, 16, T])."""
    torch.manual_seed(0)
    return SliceCNN(3, CNNConfig(channels=(4, 8), dropout=0.0, precision="fp32"), n_mels=16,
                    n_frames=n_frames).eval()


# ---- networks ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [16, 15, 187])
def test_untrained_generator_is_the_identity_at_any_length(frames: int) -> None:
    g = Generator(TINY, n_features=16).eval()
    f = torch.randn(3, 16, frames)
    torch.testing.assert_close(g(f), f, rtol=0, atol=0)
    g = _perturbed(g)
    y = g(f)
    assert y.shape == f.shape and not torch.allclose(y, f)
    torch.testing.assert_close(g.delta(f), y - f)


def test_generator_and_discriminator_refuse_other_shapes() -> None:
    with pytest.raises(ValueError, match="odd"):
        Generator(GANModelConfig(g_kernel=4), n_features=16)
    with pytest.raises(ValueError, match="expected GAN features"):
        Generator(TINY, n_features=16)(torch.randn(2, 8, 16))
    with pytest.raises(ValueError, match="expected GAN features"):
        Generator(TINY, n_features=16)(torch.randn(2, 1, 16, 16))
    out = PatchDiscriminator(TINY, n_features=16)(torch.randn(2, 16, 32))
    assert out.shape == (2, 1, 8)  # a logit per stretch of frames: 32 / 2 / 2


def test_the_cnn_reads_its_gan_features_as_it_reads_the_slices() -> None:
    cnn = _cnn()
    x = torch.randn(4, 1, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(cnn.logits_from_gan_features(cnn.gan_features(x)), cnn(x))
    assert cnn.gan_features(x).shape == (4, cnn.n_gan_features, 16)


# ---- losses and training -------------------------------------------------------------------------------------

def test_losses_are_zero_for_the_identity_on_clean_slices_and_see_the_degradation() -> None:
    cnn, g, d = _cnn(), Generator(TINY, n_features=16).eval(), PatchDiscriminator(TINY, n_features=16)
    y = torch.randn(4, 16, 16)
    losses, fake = generator_losses(g, d, cnn, y, y, GANLossWeights())
    torch.testing.assert_close(fake, y)
    assert losses["l1"].item() == 0.0 and losses["identity"].item() == 0.0 and abs(losses["reading"].item()) < 1e-6
    losses, _ = generator_losses(g, d, cnn, y + 0.5, y, GANLossWeights())
    assert abs(losses["l1"].item() - 0.5) < 1e-6 and losses["reading"].item() > 0


def _band_pairs(n: int = 64, frames: int = 16) -> Pairs:
    """Inputs = clean targets with the low bands boosted and the high ones cut: what G must learn to undo."""
    rng = np.random.default_rng(0)
    clean = torch.from_numpy(rng.standard_normal((n, 16, frames)).astype(np.float32))
    tilt = torch.linspace(1.0, -1.0, 16).view(1, 16, 1)
    return Pairs(inputs=(clean + tilt).half(), targets=clean.half())  # stored in float16, trained in float32


def test_train_gan_learns_to_undo_a_degradation_with_the_cnn_frozen() -> None:
    pairs, cnn = _band_pairs(), _cnn()
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    cfg = GANTrainConfig(seed=0, steps=80, batch_size=8, lr_g=2e-3, lr_d=2e-3, log_every=1000)
    res = train_gan(pairs, cnn, TINY, cfg, log=lambda _: None)
    assert res.steps_done == 80 and not res.generator.training
    x, y = pairs.inputs.float(), pairs.targets.float()
    with torch.no_grad():
        after = (res.generator(x) - y).abs().mean().item()
    start = (x - y).abs().mean().item()
    assert after < 0.5 * start, (start, after)
    for k, v in cnn.state_dict().items():  # the CNN is never trained
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(p.requires_grad for p in cnn.parameters())  # and its parameters are given back as they were
    again = train_gan(pairs, cnn, TINY, cfg, log=lambda _: None)  # deterministic for a seed on CPU
    for a, b in zip(res.generator.parameters(), again.generator.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_train_gan_refuses_bad_inputs() -> None:
    pairs, cnn = _band_pairs(8), _cnn()
    with pytest.raises(ValueError, match="eval mode"):
        train_gan(pairs, cnn.train(), TINY, GANTrainConfig(steps=1), log=lambda _: None)
    with pytest.raises(ValueError, match="pairs disagree"):
        train_gan(Pairs(pairs.inputs, pairs.targets[:4]), cnn.eval(), TINY, GANTrainConfig(steps=1),
                  log=lambda _: None)
    with pytest.raises(ValueError, match="no training pairs"):
        train_gan(Pairs(pairs.inputs[:0], pairs.targets[:0]), cnn, TINY, GANTrainConfig(steps=1), log=lambda _: None)


def test_a_loop_resumed_from_its_state_trains_on_as_if_never_stopped() -> None:
    """What a Ray Train worker does after a restart: a new loop loads the checkpoint's state (through
    torch.save / torch.load(weights_only=True)) and takes the next batches; G and D end as in one run."""
    import io

    pairs, cnn = _band_pairs(), _cnn()
    cfg = GANTrainConfig(seed=0, steps=12, batch_size=8, lr_g=2e-3, lr_d=2e-3, log_every=4, decay_from=0.5)
    with frozen(cnn) as device:
        whole = GANTrainLoop(cnn, 16, TINY, cfg, device, log=lambda _: None)
        whole.run(memory_batches(pairs, 8, seed=1), until=cfg.steps)
        batches = memory_batches(pairs, 8, seed=1)
        first = GANTrainLoop(cnn, 16, TINY, cfg, device, log=lambda _: None)
        first.run(batches, until=6)
        buf = io.BytesIO()
        torch.save(first.state_dict(), buf)
        buf.seek(0)
        resumed = GANTrainLoop(cnn, 16, TINY, dataclasses.replace(cfg, seed=5), device, log=lambda _: None)
        resumed.load_state_dict(torch.load(buf, weights_only=True))
        assert resumed.step == 6 and not resumed.stopped
        resumed.run(batches, until=100)
    assert resumed.step == whole.step == 12 and resumed.stopped and whole.stopped
    assert [h["step"] for h in resumed.history] == [h["step"] for h in whole.history] == [4, 8, 12]
    for a, b in ((whole.g, resumed.g), (whole.d, resumed.d)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)
    assert resumed.history[-1]["l1"] == pytest.approx(whole.history[-1]["l1"], abs=1e-12)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_g_and_d_train_in_the_precision_of_the_frozen_cnn(precision: str) -> None:
    pairs, cnn = _band_pairs(), _cnn()
    cnn.cfg = dataclasses.replace(cnn.cfg, precision=precision)
    seen: list[torch.dtype] = []
    cfg = GANTrainConfig(steps=2, batch_size=4, log_every=1)
    with frozen(cnn) as device:
        loop = GANTrainLoop(cnn, 16, TINY, cfg, device, log=lambda _: None)
        for net in (loop.g, loop.d):  # the dtype each network's first convolution computes in
            first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv1d))
            first.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        loop.run(memory_batches(pairs, 4, seed=0), until=2)
    assert loop.bf16 == (precision == "bf16") and loop.step == 2
    assert set(seen) == {torch.bfloat16 if precision == "bf16" else torch.float32}
    assert all(p.dtype == torch.float32 for p in loop.g.parameters())  # the weights themselves stay float32
    assert np.isfinite(loop.history[-1]["total"])


def test_max_minutes_stops_the_loop_and_records_the_last_figures() -> None:
    pairs, cnn = _band_pairs(), _cnn()
    cfg = GANTrainConfig(steps=50, batch_size=4, max_minutes=0.0, log_every=1000)
    with frozen(cnn) as device:
        loop = GANTrainLoop(cnn, 16, TINY, cfg, device, log=lambda _: None)
        loop.run(memory_batches(pairs, 4, seed=0), until=10)
    assert loop.step == 1 and loop.stopped and [h["step"] for h in loop.history] == [1]


# ---- refine parameters on validation songs ---------------------------------------------------------------------

def test_refine_tuning_set_takes_unclassified_then_most_ambiguous() -> None:
    def p(shares: list[float]) -> np.ndarray:
        return np.array([shares])

    probs = [p([0.9, 0.05, 0.05]), p([0.45, 0.4, 0.15]), p([0.7, 0.2, 0.1]), p([0.65, 0.3, 0.05])]
    voting = VotingConfig(tau=0.6, margin=0.2)
    assert refine_tuning_set(probs, voting, min_songs=1) == [1]
    assert refine_tuning_set(probs, voting, min_songs=2) == [1, 3]
    assert refine_tuning_set(probs, voting, min_songs=9) == [0, 1, 2, 3]


def test_choose_refine_params_follows_the_evidence() -> None:
    rng = np.random.default_rng(0)
    labels = list(rng.integers(0, 3, 40))
    onehot = np.eye(3)
    wrong_cnn = [0.5 * onehot[(t + 1) % 3] + 0.5 / 3 for t in labels]     # the CNN's votes lean to a wrong genre
    right_gan = [0.8 * onehot[t] + 0.2 / 3 for t in labels]               # the GAN votes read the truth
    params, sel = choose_refine_params(wrong_cnn, right_gan, labels)
    assert sel["forced_vote_accuracy"] == 0.0 and sel["forced_accuracy_by_weight"][str(params.gan_weight)] == 1.0
    assert 0.0 < params.gan_weight < 0.5  # the smallest weight that turns every vote: the CNN's is kept where it can be
    assert sel["threshold_scores"][str(params.threshold)][2] == 0  # every decision right: nothing wrong
    noise = [rng.dirichlet(np.ones(3)) for _ in labels]                     # GAN votes that carry nothing
    right_cnn = [0.4 * onehot[t] + 0.6 / 3 for t in labels]
    params, _ = choose_refine_params(right_cnn, noise, labels)
    assert params.gan_weight <= 0.5  # the CNN keeps the last word where the translation adds nothing
    assert params == RefineParams(params.gan_weight, params.threshold)
    with pytest.raises(ValueError, match="same"):
        choose_refine_params(right_cnn, noise[:3], labels)


# ---- bundle -------------------------------------------------------------------------------------------------

def _meta(**kw) -> GANBundle:
    base = dict(classes=CLASSES, references=("FluidR3_GM.sf2",), model_config=TINY, cnn_version="cnn-1",
                feature_version="fv-a", feature_config=FEATURES, n_features=16, n_frames=16,
                refine=RefineParams(0.4, 0.55), train_config=GANTrainConfig(seed=7),
                metrics={"timings": {"train_s": 1.0}})
    base.update(kw)
    return GANBundle(**base)


def test_bundle_round_trip_same_translations(tmp_path: Path) -> None:
    g, d = _perturbed(Generator(TINY, n_features=16)), _perturbed(PatchDiscriminator(TINY, n_features=16), 1)
    saved = save_gan_bundle(str(tmp_path / "gan"), [g], [d], _meta())
    assert saved.version.startswith("gan-") and saved.cnn_version == "cnn-1"
    raw = json.loads((tmp_path / "gan" / "bundle.json").read_text())
    assert raw["kind"] == "gan" and raw["refine"] == {"gan_weight": 0.4, "threshold": 0.55}
    assert raw["train_config"]["seed"] == 7 and raw["references"] == ["FluidR3_GM.sf2"]
    (g2,), meta = load_gan_bundle(str(tmp_path / "gan"), cnn_version="cnn-1", feature_version="fv-a")
    assert not g2.training and meta.refine == RefineParams(0.4, 0.55)
    assert meta.model_config == TINY and meta.feature_config == FEATURES and meta.classes == CLASSES
    f = torch.randn(3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(g(f), g2(f), rtol=0, atol=0)


def test_bundle_of_two_generators_keeps_each_with_its_reference_and_discriminator(tmp_path: Path) -> None:
    g0, g1 = _perturbed(Generator(TINY, n_features=16)), _perturbed(Generator(TINY, n_features=16), 2)
    d1 = _perturbed(PatchDiscriminator(TINY, n_features=16), 3)
    meta = _meta(references=("FluidR3_GM.sf2", "TimGM6mb.sf2"))
    save_gan_bundle(str(tmp_path / "gan"), [g0, g1], [None, d1], meta)
    gens, discs, loaded = load_gan_models(str(tmp_path / "gan"), cnn_version="cnn-1", feature_version="fv-a")
    assert loaded.references == ("FluidR3_GM.sf2", "TimGM6mb.sf2") and discs[0] is None
    f = torch.randn(2, 16, 16)
    with torch.no_grad():
        for a, b in ((g0, gens[0]), (g1, gens[1]), (d1, discs[1])):
            torch.testing.assert_close(a(f), b(f), rtol=0, atol=0)
        assert not torch.allclose(gens[0](f), gens[1](f))  # two generators, not one saved twice
    with pytest.raises(BundleError, match="one of each per generator"):
        save_gan_bundle(str(tmp_path / "x"), [g0, g1], [None, None], _meta())  # two generators, one reference
    with pytest.raises(BundleError, match="one of each per generator"):
        save_gan_bundle(str(tmp_path / "x"), [], [], _meta(references=()))
    save_bundle(str(tmp_path / "short"), "gan", {"generator.0.inp.weight": torch.zeros(1)}, meta.to_json())
    with pytest.raises(BundleError, match="no weights of generator 1|does not fit"):
        load_gan_bundle(str(tmp_path / "short"), cnn_version="cnn-1", feature_version="fv-a")


@pytest.mark.parametrize(("cnn_version", "feature_version", "match"), [
    ("cnn-2", "fv-a", "trained for CNN bundle 'cnn-1'"),
    ("cnn-1", "fv-b", "feature_version is 'fv-a'"),
])
def test_bundle_refuses_another_cnn_or_feature_version(tmp_path: Path, cnn_version: str, feature_version: str,
                                                       match: str) -> None:
    save_gan_bundle(str(tmp_path / "gan"), [Generator(TINY, n_features=16)], [None], _meta())
    with pytest.raises(GANBundleMismatch, match=match):
        load_gan_bundle(str(tmp_path / "gan"), cnn_version=cnn_version, feature_version=feature_version)


def test_bundle_refuses_other_kinds_tampering_old_designs_and_missing_names(tmp_path: Path) -> None:
    save_bundle(str(tmp_path / "cnn"), "cnn", {"w": torch.zeros(2)}, {"classes": list(CLASSES)})
    with pytest.raises(BundleError, match="kind 'cnn'"):
        load_gan_bundle(str(tmp_path / "cnn"), cnn_version="cnn-1", feature_version="fv-a")
    save_gan_bundle(str(tmp_path / "gan"), [Generator(TINY, n_features=16)], [None], _meta())
    weights = tmp_path / "gan" / "weights.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="integrity"):
        load_gan_bundle(str(tmp_path / "gan"), cnn_version="cnn-1", feature_version="fv-a")
    old = _meta().to_json()
    old["refine"] = {"top_k": 2, "cost_weight": 4.0, "threshold": 0.55}  # the conditional translator's rule
    old["n_mels"] = old.pop("n_features")  # and its generator on log-mel slices
    save_bundle(str(tmp_path / "old"), "gan", {"generator.w": torch.zeros(1)}, old)
    with pytest.raises(BundleError, match="older design"):
        load_gan_bundle(str(tmp_path / "old"), cnn_version="cnn-1", feature_version="fv-a")
    with pytest.raises(BundleError, match="must name the CNN bundle"):
        save_gan_bundle(str(tmp_path / "x"), [Generator(TINY, n_features=16)], [None], _meta(cnn_version=""))


def test_log_mel_cache_round_trip(tmp_path: Path) -> None:
    import soundfile as sf

    from jobs.mel_cache import cached_log_mels

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


def _wav(path: Path, seconds: float, seed: int) -> str:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(22050 * seconds))).astype(np.float32), 22050)
    return str(path)


def test_pair_stages_align_the_two_renders_and_take_them_to_gan_features(tmp_path: Path) -> None:
    from genre_core.artifacts import CNNBundle, save_cnn_bundle
    from genre_core.features import feature_version
    from genre_core.training.data import PairFeatures, PairSlices

    cfg = FeatureConfig(n_fft=512, hop_length=256, n_mels=16, slice_frames=16, slice_hop_frames=16)
    batch = {"track_id": np.array(["a", "b", "c"], object),
             "audio_uri": np.array([_wav(tmp_path / "a.wav", 1.0, 0), _wav(tmp_path / "b.wav", 0.05, 1),
                                    str(tmp_path / "missing.wav")], object),
             "reference_uri": np.array([_wav(tmp_path / "a-ref.wav", 0.8, 2), _wav(tmp_path / "b-ref.wav", 1.0, 3),
                                        _wav(tmp_path / "c-ref.wav", 1.0, 4)], object)}
    rows = PairSlices(cfg, hop_frames=8)(batch)  # b: shorter than a slice; c: its input does not decode
    frames = 1 + int(22050 * 0.8) // 256  # the frames both renders of a have
    n = 1 + (frames - 16) // 8
    assert list(rows["track_id"]) == ["a"] * n and rows["x"].shape == rows["y"].shape == (n, 16, 16)
    url = str(tmp_path / "cnn")
    save_cnn_bundle(url, _cnn(), CNNBundle(classes=CLASSES, feature_config=cfg, cnn_config=CNNConfig(channels=(4, 8)),
                                           voting=VotingConfig(), feature_version=feature_version(cfg), n_mels=16,
                                           n_frames=16))
    out = PairFeatures(url, device="cpu", batch_slices=3)(rows)
    assert set(out) == {"track_id", "inputs", "targets"} and out["inputs"].dtype == np.float16
    # the slice CNN's GAN features are its slices: float16 copies of them
    np.testing.assert_array_equal(out["inputs"], rows["x"].astype(np.float16))
    np.testing.assert_array_equal(out["targets"], rows["y"].astype(np.float16))
