"""genre_core.refine: the GAN stage's rule (GAN votes, combination with the CNN votes, threshold), batched across
songs, with small real models (a SliceCNN, the Generator) and readable stand-ins for the CNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from genre_core.config import CNNConfig
from genre_core.models.cnn import SliceCNN
from genre_core.models.gan import GANModelConfig, Generator
from genre_core.refine import RefineParams, decide, gan_votes, refine_songs, vote_shares


class MeanCNN(nn.Module):
    """Reads genre j from a slice whose mean value is j (sharply); its GAN features are the slice's mel bands."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.n_classes = n_classes

    def gan_features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] if x.dim() == 4 else x

    def logits_from_gan_features(self, f: torch.Tensor) -> torch.Tensor:
        m = f.flatten(1).mean(dim=1, keepdim=True)
        return -20.0 * (m - torch.arange(self.n_classes, dtype=f.dtype)) ** 2

    def bf16_on(self, device: torch.device) -> bool:
        return False  # exact arithmetic: these tests read means to the unit


class Shift(nn.Module):
    """G(f) = f + shift: moves every slice's mean by ``shift``; counts the slices it is given."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift, self.seen = shift, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return x + self.shift


def _song(mean: float, n: int = 3) -> np.ndarray:
    return np.full((n, 8, 6), mean, dtype=np.float32)


def test_vote_shares_and_bad_votes() -> None:
    np.testing.assert_allclose(vote_shares(np.array([1.0, 3.0])), [0.25, 0.75])
    for bad in (np.array([1.0]), np.array([-1.0, 2.0]), np.array([0.0, 0.0]), np.array([np.nan, 1.0])):
        with pytest.raises(ValueError):
            vote_shares(bad)


def test_gan_votes_read_the_translated_slices() -> None:
    cnn = MeanCNN(4).eval()
    g = gan_votes([_song(1.0), _song(0.0, n=5)], [Shift(2.0).eval()], cnn)
    assert [int(np.argmax(v)) for v in g] == [3, 2]  # the CNN read G(x) = x + 2, not x
    assert all(abs(v.sum() - 1) < 1e-6 for v in g)


def test_gan_votes_of_several_generators_average_their_readings() -> None:
    cnn = MeanCNN(4).eval()
    songs = [_song(1.0), _song(-0.5, n=5)]
    g1, g2 = Shift(2.0).eval(), Shift(-1.0).eval()
    both = gan_votes(songs, [g1, g2], cnn, batch_size=3)
    one, two = gan_votes(songs, [g1], cnn), gan_votes(songs, [g2], cnn)
    for b, a1, a2 in zip(both, one, two, strict=True):
        np.testing.assert_allclose(b, (a1 + a2) / 2, atol=1e-12)
        assert not np.allclose(a1, a2)  # the two generators read differently: the mean is not either alone
    assert g1.seen == g2.seen == 2 * 8  # each generator translated every slice once in each call it took part in
    with pytest.raises(ValueError, match="at least one generator"):
        gan_votes(songs, [], cnn)


def test_combined_votes_threshold_and_ties() -> None:
    v, g = np.array([0.5, 0.3, 0.2]), np.array([0.0, 1.0, 0.0])
    d = decide(v, g, RefineParams(gan_weight=0.5, threshold=0.0))
    np.testing.assert_allclose(d.combined, [0.25, 0.65, 0.10])
    assert d.resolved and d.genre_index == 1 and d.confidence == pytest.approx(0.65)
    assert d.margin == pytest.approx(0.40)
    assert decide(v, g, RefineParams(0.0, 0.0)).genre_index == 0  # weight 0: the CNN's forced vote
    d = decide(v, g, RefineParams(0.5, threshold=0.7))
    assert not d.resolved and d.genre_index is None and d.best_index == 1  # below its threshold: stays unclassified
    tie = decide(np.array([0.5, 0.5]), np.array([0.5, 0.5]), RefineParams(0.5, 0.0))
    assert tie.status == "unclassified"  # no lead, no decision
    with pytest.raises(ValueError, match="must be in"):
        RefineParams(gan_weight=1.5)
    with pytest.raises(ValueError, match="GAN vote shares"):
        decide(v, np.array([0.5, 0.5]), RefineParams())


def test_identity_generator_at_threshold_zero_is_the_forced_vote() -> None:
    torch.manual_seed(0)
    cnn = SliceCNN(3, CNNConfig(channels=(4, 8), dropout=0.0, precision="fp32"), n_mels=16, n_frames=12).eval()
    identity = Generator(GANModelConfig(g_channels=8, g_res_blocks=1), n_features=cnn.n_gan_features).eval()
    rng = np.random.default_rng(0)
    songs = [rng.standard_normal((int(rng.integers(1, 5)), 16, 12)).astype(np.float32) for _ in range(6)]
    with torch.inference_mode():
        probs = [torch.softmax(cnn(torch.from_numpy(s).unsqueeze(1)), -1).numpy() for s in songs]
    votes = [p.sum(axis=0) for p in probs]
    out = refine_songs(["unclassified"] * 6, songs, votes, [identity], cnn, RefineParams(gan_weight=0.7))
    assert [d.genre_index for d in out] == [int(np.argmax(v)) for v in votes]
    for d, p in zip(out, probs, strict=True):
        np.testing.assert_allclose(d.gan_votes, p.mean(axis=0), atol=1e-5)


def test_only_unclassified_songs_reach_the_models_and_others_are_never_changed() -> None:
    cnn, g = MeanCNN(4).eval(), Shift(1.0).eval()
    statuses = ["classified", "unclassified", "error", "unclassified", "gan_resolved"]
    songs = [_song(0.0, n) for n in (2, 3, 4, 5, 6)]
    votes = [np.array([0.4, 0.3, 0.2, 0.1])] * 5
    out = refine_songs(statuses, songs, votes, [g], cnn, RefineParams(gan_weight=1.0))
    assert [d is None for d in out] == [True, False, True, False, True]
    assert g.seen == 3 + 5  # one G pass per slice of the unclassified songs, and none for the others
    assert out[1].genre_index == out[3].genre_index == 1
    with pytest.raises(ValueError, match="statuses"):
        refine_songs(statuses[:2], songs, votes, [g], cnn, RefineParams())


def test_batching_across_songs_does_not_change_the_votes() -> None:
    torch.manual_seed(1)
    cnn = SliceCNN(3, CNNConfig(channels=(4, 8), dropout=0.0, precision="fp32"), n_mels=16, n_frames=12).eval()
    gen = Generator(GANModelConfig(g_channels=8, g_res_blocks=1), n_features=cnn.n_gan_features)
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.1 * torch.randn_like(p))  # a generator that changes its input
    gen.eval()
    rng = np.random.default_rng(2)
    songs = [rng.standard_normal((n, 16, 12)).astype(np.float32) for n in (1, 4, 2, 7)]
    one_by_one = [gan_votes([s], [gen], cnn, batch_size=1)[0] for s in songs]
    together = gan_votes(songs, [gen], cnn, batch_size=5)
    for a, b in zip(one_by_one, together, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_models_in_training_mode_and_bad_slices_are_refused() -> None:
    cnn = MeanCNN(3)
    with pytest.raises(ValueError, match="training mode"):
        gan_votes([_song(0.0)], [Shift(0.0).eval()], cnn)  # nn.Module starts in training mode
    with pytest.raises(ValueError, match="zero slices"):
        gan_votes([np.zeros((0, 8, 6), np.float32)], [Shift(0.0).eval()], cnn.eval())
    with pytest.raises(ValueError, match="NaN"):
        gan_votes([np.full((1, 8, 6), np.nan, np.float32)], [Shift(0.0).eval()], cnn.eval())
