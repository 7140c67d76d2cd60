"""genre_core.explain: the reason of each status, replayed on hand-made label rows."""

from __future__ import annotations

import dataclasses

import numpy as np

from genre_core.artifacts import CNNBundle
from genre_core.config import CNNConfig, FeatureConfig, VotingConfig
from genre_core.explain import explain, unclassified_line
from genre_core.models.gan import GANModelConfig
from genre_core.models.gan_bundle import GANBundle
from genre_core.refine import RefineParams

CLASSES = ["blues", "jazz", "rock"]
CNN = CNNBundle(classes=tuple(CLASSES), feature_config=FeatureConfig(), cnn_config=CNNConfig(),
                voting=VotingConfig(tau=0.85, margin=0.8), feature_version="fv-1", version="cnn-1")
GAN = GANBundle(classes=tuple(CLASSES), references=("FluidR3_GM.sf2",), model_config=GANModelConfig(),
                cnn_version="cnn-1", feature_version="fv-1", feature_config=FeatureConfig(), n_features=128,
                n_frames=128, refine=RefineParams(gan_weight=0.5, threshold=0.6), version="gan-1")


def row(status: str, probs: list[float] | None, genre: str | None = None, gan: str | None = None,
        error: str | None = None, gan_probs: list[float] | None = None) -> dict:
    shares = None if probs is None else np.asarray(probs, np.float32)
    top = sorted(probs or [0.0, 0.0], reverse=True)
    return {"track_id": "t1", "status": status, "genre": genre, "probabilities": shares, "n_slices": 10,
            "vote_share": top[0] if probs else None, "confidence": None,
            "margin": top[0] - top[1] if probs else None, "error": error,
            "model_version": "cnn-1", "gan_version": gan,
            "gan_probabilities": None if gan_probs is None else np.asarray(gan_probs, np.float32),
            "feature_version": "fv-1", "run_id": "r1",
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
    # combined: 0.5 * (0.3, 0.5, 0.2) + 0.5 * (0.2, 0.6, 0.2) = (0.25, 0.55, 0.2): 0.55 < threshold 0.6
    with_gan = explain(row("unclassified", [0.3, 0.5, 0.2], gan="gan-1", gan_probs=[0.2, 0.6, 0.2]), CLASSES, CNN,
                       GAN)
    assert ("the GAN stage (gan-1) translated its slices and the CNN read them as jazz (0.600 of the GAN votes); "
            "combined votes (0.5 x CNN + 0.5 x GAN, chosen on validation songs) give jazz 0.550, lead 0.300, "
            "< threshold 0.60: no genre reached the threshold with a lead, so it stays unclassified; the forced "
            "vote would say jazz") in with_gan
    unknown = explain(row("unclassified", [0.3, 0.5, 0.2], gan="gan-1"), CLASSES, CNN, GAN)
    assert "the GAN stage (gan-1) ran but its votes are not recorded" in unknown


def test_gan_resolved_says_what_it_chose_against_the_vote() -> None:
    # combined: 0.5 * (0.3, 0.5, 0.2) + 0.5 * (0.9, 0.05, 0.05) = (0.6, 0.275, 0.125): blues 0.600 >= 0.60
    text = explain(row("gan_resolved", [0.3, 0.5, 0.2], "blues", gan="gan-1", gan_probs=[0.9, 0.05, 0.05]),
                   CLASSES, CNN, GAN)
    assert text.startswith("track t1: gan_resolved -> blues")
    assert "read them as blues (0.900 of the GAN votes)" in text
    assert "give blues 0.600, lead 0.325, >= threshold 0.60: it chose blues (not the vote's top genre)" in text
    pair = dataclasses.replace(GAN, references=("FluidR3_GM.sf2", "TimGM6mb.sf2"))
    text = explain(row("gan_resolved", [0.3, 0.5, 0.2], "blues", gan="gan-1", gan_probs=[0.9, 0.05, 0.05]),
                   CLASSES, CNN, pair)
    assert ("translated its slices with 2 generators (toward FluidR3_GM.sf2 and TimGM6mb.sf2) and the CNN read "
            "them as blues") in text


def test_bundles_of_other_versions_are_not_used() -> None:
    text = explain(row("classified", [0.05, 0.9, 0.05], "jazz") | {"model_version": "cnn-2"}, CLASSES, CNN)
    assert "tau" in text and "unknown here: pass --models with the bundles the label was made with" in text
    assert "tau 0.85" not in text
    text = explain(row("gan_resolved", [0.3, 0.5, 0.2], "jazz", gan="gan-2", gan_probs=[0.1, 0.8, 0.1]), CLASSES,
                   CNN, GAN)
    assert "(its weight and threshold are unknown here: pass --models with the bundles)" in text


def test_error_rows_give_the_reason_and_what_to_do() -> None:
    text = explain(row("error", None, error="missing_object: /x.flac: file not found"), CLASSES, CNN)
    assert text.splitlines()[1] == ("reason: the track could not be labelled: missing_object: /x.flac: file not "
                                    "found. Fix or replace the audio at its audio_uri; the next nightly run retries "
                                    "error rows")
    assert "votes per genre" not in text


def test_outside_taxonomy_replays_the_rule_and_qualifies_the_confidence() -> None:
    from genre_core.outside import OutsideRule

    cnn = dataclasses.replace(CNN, outside=OutsideRule("feature_distance", 300.0))
    r = row("unclassified", [0.05, 0.9, 0.05]) | {"reason": "outside_taxonomy", "outside_score": 521.4,
                                                 "confidence": 0.98}
    text = explain(r, CLASSES, cnn)
    assert ("reason: outside_taxonomy: its slices look unlike the songs of every genre of the taxonomy: "
            "out-of-taxonomy score (feature_distance) 521.4 > threshold 300") in text
    assert "top share 0.900 (jazz) >= tau 0.85" in text and "the forced vote would say jazz" in text
    assert "were this song of one of its genres" in text
    assert unclassified_line(r, CLASSES) == "t1  outside_taxonomy  (outside score 521.4; forced vote jazz)"
    tags = dataclasses.replace(CNN, outside=OutsideRule("outside_tags", 4.0))
    text = explain(r | {"outside_score": 6.5}, CLASSES, tags)
    assert "outside_taxonomy: the backbone hears a style outside the taxonomy" in text
    assert "out-of-taxonomy score (outside_tags) 6.5 > threshold 4" in text
    weighted = dataclasses.replace(CNN, outside=OutsideRule("outside_tags", 4.0, confidence_weight=1.0))
    text = explain(r | {"outside_score": 4.5, "confidence": 0.8}, CLASSES, weighted)  # log-odds of 0.8: 1.386
    assert ("out-of-taxonomy score (outside_tags 5.886 minus 1 x 1.39, the log-odds of its confidence 0.800) 4.5 > "
            "threshold 4") in text
    split = dataclasses.replace(CNN, outside=OutsideRule("outside_tags", 1.0, 1.0, undecided_threshold=4.0))
    text = explain(r | {"probabilities": [0.4, 0.35, 0.25], "outside_score": 4.5}, CLASSES, split)  # tau 0.85
    assert ("score (outside_tags alone: its votes were ambiguous, there is no label to weigh) 4.5 > threshold 4"
            in text)
    ambiguous = row("unclassified", [0.4, 0.35, 0.25]) | {"reason": "ambiguous_vote", "confidence": 0.41}
    assert explain(ambiguous, CLASSES, CNN).splitlines()[1].startswith("reason: ambiguous_vote: ")
    assert "confidence: 0.410 (calibrated probability that blues is right)" in explain(ambiguous, CLASSES, CNN)
    assert unclassified_line(ambiguous, CLASSES) == "t1  ambiguous_vote  (top share 0.400; forced vote blues)"
