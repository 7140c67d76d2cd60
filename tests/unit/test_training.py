"""genre_core.training.cnn: song-level split, learning a separable problem, determinism, tau/margin choice; the
train job's refusal of a bad catalog (the job itself on Ray Train: tests/integration/test_train_ray.py)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genre_core.config import CNNConfig, TrainConfig, VotingConfig
from genre_core.inference import slice_probabilities
from genre_core.training import cnn as tr
from genre_core.training.cnn import Song, choose_voting, evaluate_songs, split_by_song, train_cnn

N_MELS = N_FRAMES = 32
FAST = TrainConfig(seed=0, epochs=6, batch_size=32, learning_rate=3e-3, patience=3, val_fraction=0.25)
TINY = CNNConfig(channels=(8, 16), dropout=0.1)


def band_songs(n_per_class: int, n_classes: int = 3, n_slices: int = 6, seed: int = 0,
               prefix: str = "s") -> list[Song]:
    """Songs whose slices carry extra energy in a class-specific mel band (plus noise), standardised."""
    rng = np.random.default_rng(seed)
    band = N_MELS // n_classes
    songs = []
    for k in range(n_classes):
        for j in range(n_per_class):
            x = rng.normal(0, 1, (n_slices, N_MELS, N_FRAMES)).astype(np.float32)
            x[:, k * band:(k + 1) * band, :] += 2.0
            x = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)
            songs.append(Song(f"{prefix}{k}-{j:03d}", k, x.astype(np.float32)))
    return songs


def test_split_is_by_song_stratified_and_deterministic() -> None:
    songs = band_songs(10, n_slices=1)
    train, val = split_by_song(songs, 0.2, seed=1)
    train_ids, val_ids = {s.song_id for s in train}, {s.song_id for s in val}
    assert not train_ids & val_ids
    assert train_ids | val_ids == {s.song_id for s in songs}
    assert sorted(s.genre_index for s in val) == [0, 0, 1, 1, 2, 2]
    assert [s.song_id for s in split_by_song(songs, 0.2, seed=1)[1]] == [s.song_id for s in val]
    assert {s.song_id for s in split_by_song(songs, 0.2, seed=2)[1]} != val_ids


def test_split_edge_cases() -> None:
    one = band_songs(1, n_slices=1)
    assert split_by_song(one, 0.5, 0)[1] == []            # a genre with one song keeps it in train
    with pytest.raises(ValueError, match="unique"):
        split_by_song(one + one[:1], 0.2, 0)


def test_tiny_model_learns_separable_problem_fast() -> None:
    train, val = split_by_song(band_songs(12), FAST.val_fraction, FAST.seed)
    t0 = time.perf_counter()
    res = train_cnn(train, val, 3, TINY, FAST, N_MELS, N_FRAMES, log=lambda s: None)
    assert time.perf_counter() - t0 < 30
    assert res.val_report["song_accuracy"] == 1.0
    assert res.val_report["slice_accuracy"] > 0.9
    assert res.history[res.best_epoch - 1]["val_song_accuracy"] == 1.0
    assert set(res.train_song_ids).isdisjoint(res.val_song_ids)
    test = band_songs(5, seed=99, prefix="t")
    probs = slice_probabilities(res.model, [s.slices for s in test])
    report = evaluate_songs(probs, [s.genre_index for s in test], res.voting)
    assert report["song_accuracy"] > 0.9 and report["slice_accuracy"] > 0.9


def test_training_is_deterministic() -> None:
    train, val = split_by_song(band_songs(6, n_slices=4), 0.25, 0)
    cfg = TrainConfig(seed=3, epochs=2, batch_size=16, patience=5)
    a = train_cnn(train, val, 3, TINY, cfg, N_MELS, N_FRAMES, log=lambda s: None)
    b = train_cnn(train, val, 3, TINY, cfg, N_MELS, N_FRAMES, log=lambda s: None)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and np.array_equal(va.numpy(), vb.numpy())


def test_overlapping_split_is_refused() -> None:
    songs = band_songs(2, n_slices=2)
    with pytest.raises(ValueError, match="both sides"):
        train_cnn(songs, songs[:1], 3, TINY, FAST, N_MELS, N_FRAMES, log=lambda s: None)


def test_voting_is_chosen_on_validation_songs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    train, val = split_by_song(band_songs(8), 0.25, 0)
    seen: dict[str, object] = {}
    real = tr.choose_voting

    def spy(probs, labels, target_accuracy=0.97, **kw):  # type: ignore[no-untyped-def]
        seen["n_rows"] = [len(p) for p in probs]
        seen["labels"] = list(labels)
        return real(probs, labels, target_accuracy, **kw)

    monkeypatch.setattr(tr, "choose_voting", spy)
    res = train_cnn(train, val, 3, TINY, FAST, N_MELS, N_FRAMES, log=lambda s: None)
    assert seen["labels"] == [s.genre_index for s in val]
    assert seen["n_rows"] == [len(s.slices) for s in val]
    assert res.selection["n_val_songs"] == len(val)
    assert res.voting == VotingConfig(res.selection["tau"], res.selection["margin"])


def _probs(top: int, share: float, n_classes: int = 3) -> np.ndarray:
    p = np.full((1, n_classes), (1 - share) / (n_classes - 1))
    p[0, top] = share
    return p


def test_choose_voting_max_coverage_at_target() -> None:
    # 8 confident correct songs (share 0.9), one correct at 0.6, one wrong at 0.5
    probs = [_probs(0, 0.9)] * 8 + [_probs(1, 0.6), _probs(2, 0.5)]
    labels = [0] * 8 + [1, 0]
    voting, sel = choose_voting(probs, labels, target_accuracy=0.95)
    assert sel["target_met"] and sel["val_coverage"] == pytest.approx(0.9)
    assert sel["val_accuracy_on_classified"] == 1.0
    assert 0.5 < voting.tau <= 0.6 or voting.margin > 0.25  # the wrong song is excluded, the 0.6 one kept
    voting, sel = choose_voting(probs, labels, target_accuracy=0.85)  # 9/10 correct suffices: all classified
    assert sel["val_coverage"] == 1.0


def test_choose_voting_target_unreachable() -> None:
    probs = [_probs(1, 0.9), _probs(1, 0.9)]
    voting, sel = choose_voting(probs, [0, 0], target_accuracy=0.97)
    assert not sel["target_met"]
    with pytest.raises(ValueError):
        choose_voting([], [])


def test_evaluate_songs_hand_values() -> None:
    probs = [np.array([[0.8, 0.2], [0.4, 0.6]]), np.array([[0.1, 0.9]]), np.array([[0.55, 0.45]])]
    rep = evaluate_songs(probs, [0, 1, 1], VotingConfig(tau=0.6, margin=0.1))
    assert rep["song_accuracy"] == pytest.approx(2 / 3)      # song 3 votes class 0 (wrong)
    assert rep["slice_accuracy"] == pytest.approx(2 / 4)
    # song 1 shares (0.6, 0.4) and song 2 (0.1, 0.9) pass tau 0.6 / margin 0.1; song 3 (0.55) does not
    assert rep["coverage"] == pytest.approx(2 / 3)
    assert rep["accuracy_on_classified"] == 1.0 and rep["n_classified"] == 2


# ---- the train job ------------------------------------------------------------------------------------

def test_train_job_reports_bad_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import run_module
    from jobs.train import build_parser, run

    cat = tmp_path / "c.parquet"
    pd.DataFrame({"track_id": ["a"], "audio_uri": ["x.wav"]}).to_parquet(cat)
    assert run_module(None, build_parser, run, ["cnn", "--catalog", str(cat), "--out", str(tmp_path / "o")]) == 2
    assert "genre" in capsys.readouterr().err


def test_spec_augment_masks_bands_and_frames() -> None:
    import torch

    x = torch.ones(64, N_MELS, N_FRAMES)
    out = tr.spec_augment(x, torch.Generator().manual_seed(0), max_fraction=0.25)
    assert torch.equal(x, torch.ones_like(x))                    # input untouched
    zero_rows = (out == 0).all(dim=2).sum(dim=1)                 # fully masked mel rows per slice
    zero_cols = (out == 0).all(dim=1).sum(dim=1)                 # fully masked frames per slice
    assert zero_rows.max() <= N_MELS // 4 and zero_cols.max() <= N_FRAMES // 4
    assert zero_rows.sum() > 0 and zero_cols.sum() > 0
    res = train_cnn(*split_by_song(band_songs(4, n_slices=3), 0.25, 0), 3, TINY,
                    TrainConfig(epochs=1, batch_size=16), N_MELS, N_FRAMES, augment=True, log=lambda s: None)
    assert len(res.history) == 1
