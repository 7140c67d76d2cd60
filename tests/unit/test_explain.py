"""genre_core.explain: the reason of each status, replayed on hand-made label rows."""

from __future__ import annotations

import numpy as np

from genre_core.artifacts import CNNBundle
from genre_core.config import CNNConfig, FeatureConfig, VotingConfig
from genre_core.explain import explain
from genre_core.models.gan import GANBundle, GANModelConfig

CLASSES = ["blues", "jazz", "rock"]
CNN = CNNBundle(classes=tuple(CLASSES), feature_config=FeatureConfig(), cnn_config=CNNConfig(),
                voting=VotingConfig(tau=0.85, margin=0.8), feature_version="fv-1", version="cnn-1")
GAN = GANBundle(classes=tuple(CLASSES), model_config=GANModelConfig(), cnn_version="cnn-1", feature_version="fv-1",
                feature_config=FeatureConfig(), n_mels=128, n_frames=128,
                refine={"top_k": 2, "threshold": 0.6, "cost_weight": 1.0}, version="gan-1")


def row(status: str, probs: list[float] | None, genre: str | None = None, gan: str | None = None,
        error: str | None = None) -> dict:
    shares = None if probs is None else np.asarray(probs, np.float32)
    top = sorted(probs or [0.0, 0.0], reverse=True)
    return {"track_id": "t1", "status": status, "genre": genre, "probabilities": shares, "n_slices": 10,
            "confidence": top[0] if probs else None, "margin": top[0] - top[1] if probs else None, "error": error,
            "model_version": "cnn-1", "gan_version": gan, "feature_version": "fv-1", "run_id": "r1",
            "labelled_at": "2026-11-25"}


def test_classified_names_the_thresholds_it_passed() -> None:
    text = explain(row("classified", [0.05, 0.9, 0.05], "jazz"), CLASSES, CNN)
    lines = text.splitlines()
    assert lines[0] == "track t1: classified -> jazz"
    assert lines[1] == ("reason: its slices' votes were clear: top share 0.900 (jazz) >= tau 0.85, "
                        "margin 0.850 >= m 0.80")
    assert [ln.split()[0] for ln in lines[3:6]] == ["jazz", "blues", "rock"]  # largest share first
    assert lines[3].endswith("#" * 36) and lines[-2:] == ["models: cnn cnn-1, gan -, features fv-1",
                                                          "run r1, labelled 2026-11-25"]


def test_unclassified_without_and_with_a_gan_stage() -> None:
    no_gan = explain(row("unclassified", [0.3, 0.5, 0.2]), CLASSES, CNN)
    assert "top share 0.500 (jazz) < tau 0.85, margin 0.200 < m 0.80. No GAN stage ran for it" in no_gan
    assert "the forced vote would say jazz" in no_gan
    with_gan = explain(row("unclassified", [0.3, 0.5, 0.2], gan="gan-1"), CLASSES, CNN, GAN)
    assert ("the GAN stage (gan-1; top_k 2, threshold 0.6, cost_weight 1.0, chosen on validation songs) translated "
            "its slices to the candidates jazz, blues, but no candidate reached the refine threshold") in with_gan


def test_gan_resolved_says_what_it_chose_against_the_vote() -> None:
    text = explain(row("gan_resolved", [0.3, 0.5, 0.2], "blues", gan="gan-1"), CLASSES, CNN, GAN)
    assert text.startswith("track t1: gan_resolved -> blues")
    assert "and chose blues (not the vote's top genre jazz)" in text


def test_bundles_of_other_versions_are_not_used() -> None:
    text = explain(row("classified", [0.05, 0.9, 0.05], "jazz") | {"model_version": "cnn-2"}, CLASSES, CNN)
    assert "tau" in text and "unknown here: pass --models with the bundles the label was made with" in text
    assert "tau 0.85" not in text
    text = explain(row("gan_resolved", [0.3, 0.5, 0.2], "jazz", gan="gan-2"), CLASSES, CNN, GAN)
    assert "gan-2; its refine parameters are unknown here" in text


def test_error_rows_give_the_reason_and_what_to_do() -> None:
    text = explain(row("error", None, error="missing_object: /x.flac: file not found"), CLASSES, CNN)
    assert text.splitlines()[1] == ("reason: the track could not be labelled: missing_object: /x.flac: file not "
                                    "found. Fix or replace the audio at its audio_uri; the next nightly run retries "
                                    "error rows")
    assert "votes per genre" not in text
