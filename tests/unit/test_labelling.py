"""genre_core.labelling (reference labeller), schema helpers and the evaluate job."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import soundfile as sf
import torch

from genre_core.artifacts import CNNBundle, load_cnn_bundle, save_cnn_bundle
from genre_core.calibration import Calibration
from genre_core.config import AudioConfig, CNNConfig, ConfigError, FeatureConfig, VotingConfig
from genre_core.features import feature_version, n_slices_for
from genre_core.inference import slice_outputs
from genre_core.labelling import CNNVoter, label_catalog, label_track
from genre_core.models.cnn import SliceCNN
from genre_core.outside import OutsideRule, fit_feature_stats, fit_tag_stats, song_score
from genre_core.schema import LABEL_COLUMNS, LABELS_SCHEMA, classes_of, labels_table, vote_list

SR = 22050
FEATURES = FeatureConfig(n_fft=512, n_mels=32, slice_frames=32, slice_hop_frames=32)
CLASSES = ("blues", "jazz", "rock")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(0)
    model = SliceCNN(3, CNNConfig(channels=(8, 16)), n_mels=32, n_frames=32).eval()
    url = str(tmp_path_factory.mktemp("bundle"))
    save_cnn_bundle(url, model, CNNBundle(
        classes=CLASSES, feature_config=FEATURES, cnn_config=CNNConfig(channels=(8, 16)),
        voting=VotingConfig(0.4, 0.0), feature_version=feature_version(FEATURES), n_mels=32, n_frames=32))
    return url


def _wav(path: Path, seconds: float, freq: float = 440.0, amp: float = 0.3) -> str:
    t = np.arange(int(SR * seconds)) / SR
    y = (amp * np.sin(2 * np.pi * freq * t) + amp * 0.05 * np.random.default_rng(0).standard_normal(t.size))
    sf.write(path, y.astype(np.float32), SR)
    return str(path)


def test_label_track_row(bundle: str, tmp_path: Path) -> None:
    voter = CNNVoter(bundle, voting=VotingConfig(0.0, 0.0))
    uri = _wav(tmp_path / "a.wav", 4.0)
    row = label_track("t1", uri, voter, run_id="r1")
    assert list(row) == list(LABEL_COLUMNS)
    assert row["status"] == "classified" and row["genre"] in CLASSES and row["error"] is None
    assert row["n_slices"] == n_slices_for(4 * SR, FEATURES)
    assert row["duration_s"] == pytest.approx(4.0)
    assert len(row["probabilities"]) == 3 and sum(row["probabilities"]) == pytest.approx(1.0)
    assert row["vote_share"] == pytest.approx(max(row["probabilities"]))
    assert row["confidence"] is None and row["reason"] is None  # an uncalibrated bundle: no confidence
    assert row["model_version"] == voter.bundle.version and row["run_id"] == "r1"
    assert row["feature_version"] == feature_version(FEATURES) and row["labelled_at"].tzinfo is not None


@pytest.mark.parametrize(("kind", "make"), [
    ("missing_object", lambda p: str(p / "nope.wav")),
    ("decode_error", lambda p: (p / "bad.wav").write_bytes(b"RIFF....not audio at all") and str(p / "bad.wav")),
    ("too_short", lambda p: _wav(p / "short.wav", 0.2)),
    ("silent_audio", lambda p: _wav(p / "silent.wav", 3.0, amp=0.0)),
])
def test_label_track_error_rows(bundle: str, tmp_path: Path, kind: str, make) -> None:  # type: ignore[no-untyped-def]
    voter = CNNVoter(bundle)
    row = label_track("bad", make(tmp_path), voter)
    assert list(row) == list(LABEL_COLUMNS)
    assert row["status"] == "error" and row["error"].startswith(f"{kind}: ")
    assert row["genre"] is None and row["probabilities"] is None and row["n_slices"] == 0


def test_voter_batch_matches_song_by_song(bundle: str) -> None:
    voter = CNNVoter(bundle, batch_slices=5)
    rng = np.random.default_rng(1)
    songs = [rng.standard_normal((n, 32, 32)).astype(np.float32) for n in (3, 7, 1)]
    batch = {"track_id": np.array(["a", "b", "c"]), "slices": songs}
    out = voter(batch)
    assert list(out["track_id"]) == ["a", "b", "c"]
    for i, s in enumerate(songs):
        one = voter({"slices": [s]})
        assert out["status"][i] == one["status"][0] and out["n_slices"][i] == len(s)
        np.testing.assert_allclose(out["probabilities"][i], one["probabilities"][0], rtol=1e-5, atol=1e-6)


def test_voter_passes_error_rows_and_drops_decided_payload(bundle: str) -> None:
    voter = CNNVoter(bundle, voting=VotingConfig(0.0, 0.0), drop_classified_slices=True)
    rng = np.random.default_rng(2)
    batch = {
        "slices": [rng.standard_normal((2, 32, 32)).astype(np.float32), np.zeros((0, 32, 32), np.float32),
                   np.zeros((0, 32, 32), np.float32)],
        "status": np.array(["", "error", ""], dtype=object),
        "error": np.array([None, "decode_error: x", None], dtype=object),
    }
    out = voter(batch)
    assert list(out["status"]) == ["classified", "error", "error"]
    assert out["error"][1] == "decode_error: x" and out["error"][2].startswith("too_short: ")
    assert out["genre_index"].dtype == np.int64 and out["genre_index"][1] == -1
    assert all(len(s) == 0 for s in out["slices"])
    # votes keep one shape in every batch (Ray Data cannot join a block of arrays with one holding None):
    # a [n, n_classes] array with a NaN row for each song without votes, None once in the labels
    assert out["probabilities"].shape == (3, 3) and out["probabilities"].dtype == np.float32
    assert np.isnan(out["probabilities"][1:]).all() and not np.isnan(out["probabilities"][0]).any()
    assert vote_list(out["probabilities"][1]) is None and len(vote_list(out["probabilities"][0])) == 3


def test_label_catalog_and_labels_table(bundle: str, tmp_path: Path) -> None:
    voter = CNNVoter(bundle)
    df = pd.DataFrame({"track_id": ["x", "y", "z"], "audio_uri": [
        _wav(tmp_path / "x.wav", 2.0), str(tmp_path / "missing.wav"), _wav(tmp_path / "z.wav", 3.0, 2000.0)]})
    labels = label_catalog(df, voter, run_id="run-1")
    assert list(labels["track_id"]) == ["x", "y", "z"] and list(labels.columns) == list(LABEL_COLUMNS)
    assert labels.loc[1, "status"] == "error" and (labels["run_id"] == "run-1").all()
    table = labels_table(labels, voter.classes)
    assert table.schema.equals(LABELS_SCHEMA, check_metadata=False)
    assert classes_of(table.schema) == list(CLASSES) and set(table.schema.metadata) == {b"genre_tagger.classes"}
    assert table.column("probabilities").type == pa.list_(pa.float32())


def test_feature_config_mismatch_is_a_config_error(bundle: str, tmp_path: Path) -> None:
    voter = CNNVoter(bundle)
    df = pd.DataFrame({"track_id": ["x"], "audio_uri": [_wav(tmp_path / "x.wav", 2.0)]})
    with pytest.raises(ConfigError, match="differs"):
        label_catalog(df, voter, FeatureConfig())
    # another inference hop is fine
    hop = FeatureConfig(n_fft=512, n_mels=32, slice_frames=32, slice_hop_frames=16)
    out = label_catalog(df, voter, hop, AudioConfig())
    assert out.loc[0, "n_slices"] == n_slices_for(2 * SR, FEATURES, 16)


def test_evaluate_job_both_modes(bundle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import run_module
    from jobs.evaluate import build_parser, run

    cat = pd.DataFrame({
        "track_id": ["a", "b", "c", "d"], "genre": ["blues", "jazz", "rock", "rock"],
        "split": ["test", "test", "test", "train"],
        "audio_uri": [_wav(tmp_path / "a.wav", 2.0, 200), _wav(tmp_path / "b.wav", 2.0, 900),
                      str(tmp_path / "gone.wav"), _wav(tmp_path / "d.wav", 2.0)],
    })
    cat.to_parquet(tmp_path / "cat.parquet")
    out1, lab = tmp_path / "e1.json", tmp_path / "labels.parquet"
    assert run_module(None, build_parser, run, [
        "--catalog", str(tmp_path / "cat.parquet"), "--models", bundle, "--split", "test",
        "--labels-out", str(lab), "--out", str(out1)]) == 0
    r1 = json.loads(out1.read_text())
    assert r1["n_songs"] == 3 and r1["status_counts"]["error"] == 1
    assert r1["confusion"]["classes"] == list(CLASSES)
    assert sum(map(sum, r1["confusion"]["matrix"])) == 2      # the error row has no forced prediction
    out2 = tmp_path / "e2.json"
    assert run_module(None, build_parser, run, [
        "--labels", str(lab), "--truth", str(tmp_path / "cat.parquet"), "--split", "test", "--out", str(out2)]) == 0
    r2 = json.loads(out2.read_text())
    for key in ("accuracy", "coverage", "accuracy_on_classified", "confusion", "per_genre"):
        assert r1[key] == r2[key]
    capsys.readouterr()
    assert run_module(None, build_parser, run, ["--labels", str(lab)]) == 2


def _calibrated(bundle: str, tmp_path: Path, rule: OutsideRule) -> str:
    """The ``bundle``'s model saved with a calibration and an out-of-taxonomy rule (what `genre-job calibrate`
    records), as a new bundle."""
    model, meta = load_cnn_bundle(bundle)
    url = str(tmp_path / "calibrated")
    save_cnn_bundle(url, model, dataclasses.replace(meta, calibration=Calibration(temperature=0.5), outside=rule,
                                                    version="", created_at=""))
    return url


def test_songs_past_the_outside_threshold_stay_unclassified_with_their_reason(bundle: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    songs = [rng.standard_normal((n, 32, 32)).astype(np.float32) * s for n, s in ((4, 1.0), (5, 3.0), (3, 0.5))]
    model, _ = load_cnn_bundle(bundle)
    logits, _ = slice_outputs(model, songs)
    energy = [song_score("energy", z) for z in logits]
    threshold = float(np.median(energy))  # the song of the highest energy score is outside, the others not
    voter = CNNVoter(_calibrated(bundle, tmp_path, OutsideRule("energy", threshold)), voting=VotingConfig(0.0, 0.0),
                     drop_classified_slices=True)
    out = voter({"slices": songs})
    far = int(np.argmax(energy))
    for i, z in enumerate(logits):
        assert out["outside_score"][i] == pytest.approx(energy[i], rel=1e-5)
        top = int(np.argmax(out["probabilities"][i]))
        assert out["confidence"][i] == pytest.approx(Calibration(temperature=0.5).confidence(z, top), rel=1e-4)
        assert out["vote_share"][i] == pytest.approx(out["probabilities"][i].max())
        if i == far:  # whatever its votes say (tau 0 decides every song), it gets no genre
            assert (out["status"][i], out["reason"][i], out["genre"][i]) == ("unclassified", "outside_taxonomy", None)
            assert len(out["slices"][i]) == 0  # never sent on to a GAN stage
        else:
            assert out["status"][i] == "classified" and out["reason"][i] is None and out["genre"][i] in CLASSES
    # a rule that weighs the confidence records, for a song the vote rule decides, the discounted score it compared
    # with its threshold; for an ambiguous song, the score alone, against the undecided threshold
    weighted = _calibrated(bundle, tmp_path / "weighted", OutsideRule("energy", threshold, 0.5,
                                                                     undecided_threshold=max(energy) + 1.0))
    decided = CNNVoter(weighted, voting=VotingConfig(0.0, 0.0))({"slices": songs})
    ambiguous = CNNVoter(weighted, voting=VotingConfig(1.0, 1.0))({"slices": songs})
    for i in range(len(songs)):
        c = np.clip(out["confidence"][i], 1e-6, 1 - 1e-6)
        assert decided["outside_score"][i] == pytest.approx(energy[i] - 0.5 * np.log(c / (1 - c)), rel=1e-4, abs=1e-4)
        assert ambiguous["outside_score"][i] == pytest.approx(energy[i], rel=1e-5)
        assert ambiguous["reason"][i] == "ambiguous_vote"  # no score passes the undecided threshold
    strict = CNNVoter(voter.bundle.url, voting=VotingConfig(1.0, 1.0), drop_classified_slices=True)
    ambiguous = strict({"slices": songs})
    assert [r for i, r in enumerate(ambiguous["reason"]) if i != far] == ["ambiguous_vote"] * 2
    assert all(len(s) for i, s in enumerate(ambiguous["slices"]) if i != far)  # the GAN stage's input


@pytest.mark.parametrize("score", ["feature_distance", "outside_tags"])
def test_a_rule_keeps_its_training_statistics_in_the_bundle(bundle: str, tmp_path: Path, score: str) -> None:
    rng = np.random.default_rng(4)
    train = [rng.standard_normal((3, 128)) for _ in range(12)]
    stats = fit_feature_stats(train, [0, 1, 2] * 4) if score == "feature_distance" else fit_tag_stats(train, [3, 70])
    url = _calibrated(bundle, tmp_path, OutsideRule(score, 5.0, stats=stats))
    _, meta = load_cnn_bundle(url)
    for name, value in stats.tensors().items():
        np.testing.assert_array_equal(meta.outside.stats.tensors()[name], value)
    song = rng.standard_normal((2, 32, 32)).astype(np.float32)
    out = CNNVoter(url)({"slices": [song]})
    model, _ = load_cnn_bundle(bundle)
    _, emb = slice_outputs(model, [song])
    assert out["outside_score"][0] == pytest.approx(song_score(score, np.zeros((2, 1)), emb[0], stats), rel=1e-4)
