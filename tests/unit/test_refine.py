"""genre_core.refine: the GAN re-classification rule and its edge cases, with tiny stand-in models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from genre_core.config import CNNConfig
from genre_core.models.cnn import SliceCNN
from genre_core.models.gan import GANModelConfig, Generator
from genre_core.refine import (
    candidate_evidence,
    decide_from_evidence,
    evidence_from_readings,
    read_translations,
    refine,
    refine_scores,
    refine_unclassified,
    top_candidates,
    translate,
)


class ConstCNN(nn.Module):
    """Reads the same probabilities from any slice."""

    def __init__(self, probs: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.log(torch.tensor(probs)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


class MeanCNN(nn.Module):
    """Reads genre j from a slice whose mean value is j (sharply)."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(dim=1, keepdim=True)
        return -20.0 * (m - torch.arange(self.n_classes, dtype=x.dtype)) ** 2


class ShiftGenerator(nn.Module):
    """G(x, c) = x + shift[c]: translation cost |shift[c]|."""

    def __init__(self, shifts: list[float]) -> None:
        super().__init__()
        self.register_buffer("shifts", torch.tensor(shifts))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return x + self.shifts[c].view(-1, 1, 1, 1)


class SetGenerator(nn.Module):
    """G(x, c) = a slice filled with the value c (what MeanCNN reads as genre c)."""

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x) + c.to(x.dtype).view(-1, 1, 1, 1)


class CleanUpGenerator(nn.Module):
    """G(x, c) = x - offset for every target: removes a recording offset and changes nothing else."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return x - self.offset


def identity(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return x


VOTES = np.array([0.05, 0.40, 0.35, 0.20])  # candidates in vote order: 1, 2, 3, 0


def _slices(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_top_candidates_vote_order_and_ties_to_lower_index() -> None:
    assert top_candidates(VOTES, 3).tolist() == [1, 2, 3]
    assert top_candidates(np.array([0.3, 0.3, 0.4]), 2).tolist() == [2, 0]


def test_cost_weight_zero_follows_the_cnn_on_translated_slices() -> None:
    cnn = ConstCNN([0.1, 0.2, 0.6, 0.1]).eval()   # prefers genre 2 although the votes prefer 1
    d = refine(_slices(), VOTES, ShiftGenerator([0, 0, 0, 0]).eval(), cnn, top_k=2, threshold=0.0, cost_weight=0.0)
    assert d.status == "gan_resolved" and d.genre_index == 2
    assert d.evidence.candidates.tolist() == [1, 2]
    np.testing.assert_allclose(d.evidence.confidence, [0.2, 0.6], rtol=1e-6)
    np.testing.assert_allclose(d.scores, [0.25, 0.75], rtol=1e-6)
    assert d.confidence == pytest.approx(0.75)


def test_large_cost_weight_picks_the_genre_reached_with_least_change() -> None:
    cnn = ConstCNN([0.25, 0.25, 0.25, 0.25]).eval()
    gen = ShiftGenerator([0.0, 0.8, 0.1, 0.5]).eval()  # genre 2 needs the least change
    d = refine(_slices(), VOTES, gen, cnn, top_k=3, threshold=0.5, cost_weight=20.0, standardize=False)
    np.testing.assert_allclose(d.evidence.cost, [0.8, 0.1, 0.5], rtol=1e-6)
    assert d.genre_index == 2 and d.resolved
    assert d.scores.sum() == pytest.approx(1.0)
    # q = softmax(-20 * cost): the share of genre 2 is ~1
    assert d.scores[1] == pytest.approx(1 / (1 + np.exp(-14) + np.exp(-8)), rel=1e-6)


def test_confidence_is_read_from_each_candidates_own_translation() -> None:
    cnn = MeanCNN(4).eval()
    x = torch.full((2, 8, 8), 2.2)   # closest to genre 2 of the candidates 1 and 2
    ev = candidate_evidence(x, VOTES, SetGenerator().eval(), cnn, top_k=2, standardize=False)
    np.testing.assert_allclose(ev.confidence, [1.0, 1.0], atol=1e-6)  # every translation reads as its target
    np.testing.assert_allclose(ev.cost, [1.2, 0.2], rtol=1e-5)
    d = decide_from_evidence(ev, threshold=0.9, cost_weight=5.0)
    assert d.genre_index == 2 and d.confidence > 0.99


def test_reading_averages_over_every_target_so_reaching_any_genre_says_nothing() -> None:
    # a generator that turns any slice into a perfect slice of the target genre fools the CNN every time:
    # conf_c = P(c | G(x, c)) = 1 for every candidate, and the reading (over all targets) is flat, 1/4
    cnn = MeanCNN(4).eval()
    ev = candidate_evidence(torch.full((2, 8, 8), 2.2), VOTES, SetGenerator().eval(), cnn, top_k=3,
                            standardize=False)
    np.testing.assert_allclose(ev.confidence, 1.0, atol=1e-6)
    np.testing.assert_allclose(ev.reading, 0.25, atol=1e-6)
    d = decide_from_evidence(ev, threshold=0.0, cost_weight=0.0, vote_weight=1.0)
    assert d.genre_index == 1   # nothing learnt from the translation: the votes decide


def test_reading_of_cleaned_slices_can_overrule_the_votes() -> None:
    # the slices read as genre 3 (mean 2.6) because of a recording offset of +0.6; a generator that removes
    # the offset for every target makes the CNN read genre 2, which wins although genre 3 had more votes
    cnn = MeanCNN(4).eval()
    votes = np.array([0.05, 0.10, 0.40, 0.45])
    readings = read_translations(torch.full((3, 8, 8), 2.6), CleanUpGenerator(0.6).eval(), cnn, 4,
                                 standardize=False)
    assert readings.probs.shape == (4, 4) and readings.cost.shape == (4,)
    np.testing.assert_allclose(readings.probs[:, 2], 1.0, atol=1e-6)   # every translation reads as genre 2
    ev = evidence_from_readings(readings, votes, top_k=2)
    assert ev.candidates.tolist() == [3, 2]
    np.testing.assert_allclose(ev.cost, 0.6, rtol=1e-6)
    assert decide_from_evidence(ev, threshold=0.9, cost_weight=0.0, vote_weight=1.0).genre_index == 2


def test_vote_weight_keeps_part_of_the_original_votes() -> None:
    cnn = ConstCNN([0.1, 0.2, 0.6, 0.1]).eval()   # reads genre 2 (3x genre 1); the votes prefer 1 (0.40/0.35)
    d = refine(_slices(), VOTES, identity, cnn, top_k=2, threshold=0.0, cost_weight=0.0, vote_weight=0.0)
    assert d.genre_index == 2
    # s = w log v + log r: genre 1 wins once w * log(0.40 / 0.35) > log(0.6 / 0.2), i.e. w > 8.23
    d = refine(_slices(), VOTES, identity, cnn, top_k=2, threshold=0.0, cost_weight=0.0, vote_weight=9.0)
    assert d.genre_index == 1 and d.vote_weight == 9.0
    shares = np.array([0.40, 0.35]) / 0.75
    s = 9.0 * np.log(shares) + np.log([0.2, 0.6])
    np.testing.assert_allclose(d.scores, np.exp(s) / np.exp(s).sum(), rtol=1e-6)
    with pytest.raises(ValueError, match="vote shares"):
        refine_scores(np.array([0.5, 0.5]), np.zeros(2), 0.0, None, 1.0)


def test_threshold_leaves_the_song_unclassified_but_reports_the_best() -> None:
    cnn = ConstCNN([0.1, 0.45, 0.35, 0.1]).eval()
    d = refine(_slices(), VOTES, identity, cnn, top_k=2, threshold=0.6, cost_weight=0.0)
    assert d.scores.max() == pytest.approx(0.5625)   # 0.45 / (0.45 + 0.35) < 0.6
    assert d.status == "unclassified" and d.genre_index is None and not d.resolved
    assert d.best_index == 1
    d = refine(_slices(), VOTES, identity, cnn, top_k=2, threshold=0.56, cost_weight=0.0)
    assert d.resolved and d.genre_index == 1


def test_exact_tie_is_never_decided() -> None:
    cnn = ConstCNN([0.1, 0.4, 0.4, 0.1]).eval()
    d = refine(_slices(), VOTES, ShiftGenerator([0, 0.3, 0.3, 0]).eval(), cnn, top_k=2, threshold=0.0,
               cost_weight=3.0)
    assert d.status == "unclassified" and d.best_index == 1


def test_top_k_one_decides_the_top_vote_and_other_genres_are_never_chosen() -> None:
    cnn = ConstCNN([0.90, 0.02, 0.05, 0.03]).eval()  # the CNN loves genre 0, which has the fewest votes
    d = refine(_slices(), VOTES, identity, cnn, top_k=1, threshold=1.0, cost_weight=0.0)
    assert d.genre_index == 1 and d.scores.tolist() == [1.0]
    d = refine(_slices(), VOTES, identity, cnn, top_k=3, threshold=0.0, cost_weight=0.0)
    assert d.genre_index == 2   # the best of the candidates 1, 2, 3; never 0


def test_identity_translation_reduces_to_forced_argmax_of_the_votes() -> None:
    torch.manual_seed(0)
    cnn = SliceCNN(4, CNNConfig(channels=(4, 8)), n_mels=16, n_frames=16).eval()
    x = torch.randn(6, 16, 16)
    x = (x - x.mean(dim=(1, 2), keepdim=True)) / x.std(dim=(1, 2), unbiased=False, keepdim=True)
    with torch.no_grad():
        votes = torch.softmax(cnn(x), dim=-1).mean(dim=0).numpy()
    d = refine(x, votes, identity, cnn, top_k=3, threshold=0.0, cost_weight=7.0)
    assert d.genre_index == int(np.argmax(votes))
    np.testing.assert_allclose(d.evidence.confidence, np.sort(votes)[::-1][:3], rtol=1e-4)
    np.testing.assert_allclose(d.evidence.cost, 0.0, atol=0)


def test_real_generator_batched_across_candidates_and_chunks_agree() -> None:
    torch.manual_seed(1)
    g = Generator(4, GANModelConfig(g_channels=4, g_downsamples=1, g_res_blocks=1), n_mels=16)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.1 * torch.randn_like(p))
    g.eval()
    cnn = SliceCNN(4, CNNConfig(channels=(4, 8)), n_mels=16, n_frames=16).eval()
    x = torch.randn(5, 16, 16)
    y = translate(x, np.array([3, 0]), g)
    assert y.shape == (2, 5, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(y[0], g(x.unsqueeze(1), torch.full((5,), 3)))
    a = refine(x, VOTES, g, cnn, top_k=3, threshold=0.0, cost_weight=2.0)
    b = refine(x, VOTES, g, cnn, top_k=3, threshold=0.0, cost_weight=2.0, batch_size=2)
    np.testing.assert_allclose(a.evidence.confidence, b.evidence.confidence, rtol=1e-5)
    np.testing.assert_allclose(a.evidence.cost, b.evidence.cost, rtol=1e-5)
    assert a.genre_index == b.genre_index


def test_pure_inputs_and_models_are_not_changed() -> None:
    torch.manual_seed(2)
    cnn = SliceCNN(4, CNNConfig(channels=(4, 8)), n_mels=16, n_frames=16).eval()
    state = {k: v.clone() for k, v in cnn.state_dict().items()}
    x = torch.randn(4, 16, 16)
    x0, votes0 = x.clone(), VOTES.copy()
    refine(x, VOTES, ShiftGenerator([0.1, 0.2, 0.3, 0.4]).eval(), cnn, top_k=2, threshold=0.5, cost_weight=1.0)
    assert torch.equal(x, x0) and np.array_equal(VOTES, votes0)
    assert all(torch.equal(v, state[k]) for k, v in cnn.state_dict().items())


def test_classified_and_error_songs_are_never_touched() -> None:
    cnn = ConstCNN([0.1, 0.2, 0.6, 0.1]).eval()
    for status in ("classified", "error", "gan_resolved"):
        assert refine_unclassified(status, _slices(), VOTES, identity, cnn, 2, 0.0, 0.0) is None
    d = refine_unclassified("unclassified", _slices(), VOTES, identity, cnn, 2, 0.0, 0.0)
    assert d is not None and d.genre_index == 2


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"slices": torch.zeros(0, 8, 8)}, "zero slices"),
    ({"slices": torch.full((2, 8, 8), float("nan"))}, "NaN"),
    ({"slices": torch.zeros(2, 2, 8, 8)}, "slices must be"),
    ({"vote_probs": np.array([0.5, -0.1, 0.3, 0.3])}, "non-negative"),
    ({"vote_probs": np.zeros(4)}, "not all zero"),
    ({"vote_probs": np.array([1.0])}, "n_classes >= 2"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": 5}, "top_k"),
    ({"threshold": 1.5}, "threshold"),
    ({"cost_weight": -1.0}, "cost_weight"),
    ({"cost_weight": float("inf")}, "cost_weight"),
    ({"vote_weight": -0.5}, "vote_weight"),
])
def test_invalid_inputs_are_rejected(kwargs: dict, match: str) -> None:
    args = {"slices": _slices(), "vote_probs": VOTES, "generator": identity,
            "cnn": ConstCNN([0.25] * 4).eval(), "top_k": 2, "threshold": 0.5, "cost_weight": 1.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        refine(**args)


def test_models_in_training_mode_are_refused() -> None:
    cnn = ConstCNN([0.25] * 4)  # nn.Module defaults to training mode
    with pytest.raises(ValueError, match="training mode"):
        refine(_slices(), VOTES, identity, cnn, top_k=2, threshold=0.5, cost_weight=1.0)
    with pytest.raises(ValueError, match="training mode"):
        refine(_slices(), VOTES, ShiftGenerator([0] * 4), cnn.eval(), top_k=2, threshold=0.5, cost_weight=1.0)


def test_refine_scores_is_a_stable_softmax_and_floors_zero_confidence() -> None:
    q = refine_scores(np.array([[0.0, 1e-300, 0.5]]), np.array([[0.0, 0.0, 1000.0]]), 1.0)
    assert np.isfinite(q).all() and q.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(q[0, :2], [0.5, 0.5])
