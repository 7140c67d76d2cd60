"""genre_core.report.evaluation and .html: the report's figures on a hand-made run, and escaping."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from genre_core.report.evaluation import clean, evaluate
from genre_core.report.html import Section, page, table

CLASSES = ["a", "b", "c"]
TRUTH = pd.DataFrame({"track_id": ["t1", "t2", "t3", "t4", "t5", "t6"], "genre": ["a", "a", "b", "b", "c", "c"]})


def labels(gan: str | None = "gan-1") -> pd.DataFrame:
    rows = [  # t6 has no label row ("missing")
        ("t1", "classified", "a", [0.9, 0.05, 0.05], None),
        ("t2", "gan_resolved", "a", [0.4, 0.5, 0.1], None),    # the GAN stage overruled the vote (b), rightly
        ("t3", "unclassified", None, [0.3, 0.4, 0.3], None),   # the forced vote (b) would have been right
        ("t4", "error", None, None, "decode_error: not audio"),
        ("t5", "classified", "c", [0.1, 0.1, 0.8], None),
    ]
    df = pd.DataFrame(rows, columns=["track_id", "status", "genre", "probabilities", "error"])
    return df.assign(gan_version=gan, model_version="cnn-1", feature_version="fv-1", run_id="r1",
                     labelled_at=pd.Timestamp("2026-11-25", tz="UTC"))


def test_headline_numbers_and_status_breakdown() -> None:
    ev = evaluate(labels(), TRUTH, CLASSES)
    assert ev["n_songs"] == 6
    assert ev["accuracy"] == pytest.approx(3 / 6)  # forced: t1 a, t3 b, t5 c right; t2 b, t4 none, t6 missing
    assert ev["coverage"] == pytest.approx(3 / 6) and ev["accuracy_on_classified"] == 1.0
    assert ev["status_counts"] == {"classified": 2, "gan_resolved": 1, "unclassified": 1, "error": 1, "missing": 1}
    by_status = {r["status"]: r for r in ev["status_breakdown"]}
    assert by_status["classified"]["right"] == 2 and by_status["gan_resolved"]["right"] == 1
    assert by_status["unclassified"]["right"] == 1 and by_status["error"]["error_kinds"] == {"decode_error": 1}
    assert ev["confusion"]["matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert ev["runs"]["run_ids"] == ["r1"] and ev["runs"]["model_versions"] == ["cnn-1"]


def test_what_the_gan_stage_changed() -> None:
    gan = evaluate(labels(), TRUTH, CLASSES)["gan_stage"]
    # on t2 and t3 (left unclassified by the CNN): forced vote right on t3 only, GAN right on t2 only
    assert gan == {"ran": True, "gan_versions": ["gan-1"], "n_cnn_unclassified": 2, "n_resolved": 1,
                   "n_still_unclassified": 1, "n_resolved_right": 1, "n_changed_from_vote": 1,
                   "accuracy_forced_vote": 0.5, "accuracy_gan": 0.5, "wrong_to_right": 1, "right_to_wrong": 1,
                   "mcnemar_p": 1.0}
    no_gan = labels(gan=None)
    no_gan = no_gan[no_gan["status"] != "gan_resolved"]
    assert evaluate(no_gan, TRUTH, CLASSES)["gan_stage"] == {"ran": False}


def test_coverage_curves_replay_the_thresholds_on_the_votes() -> None:
    curves = evaluate(labels(), TRUTH, CLASSES)["coverage_curves"]
    top = curves["top_share"]
    i = top["threshold"].index(0.5)
    assert top["n_decided"][i] == 3 and top["coverage"][i] == pytest.approx(3 / 6)  # t1 0.9, t2 0.5, t5 0.8
    assert top["accuracy"][i] == pytest.approx(2 / 3)  # t2's forced vote (b) is wrong
    gap = curves["margin"]
    j = gap["threshold"].index(0.7)
    assert gap["n_decided"][j] == 2 and gap["accuracy"][j] == 1.0  # t1 (0.85) and t5 (0.7)
    assert top["n_decided"][0] == 4  # threshold 0: every song with votes
    assert top["n_decided"][-1] == 0 and math.isnan(top["accuracy"][-1])  # threshold 1: no song is that sure


def test_clean_makes_strict_json_and_bad_inputs_are_refused() -> None:
    ev = evaluate(labels(), TRUTH, CLASSES)
    json.dumps(clean(ev), allow_nan=False)  # NaN (e.g. precision of a genre never predicted) -> null
    with pytest.raises(ValueError, match="more than one row for track"):
        evaluate(pd.concat([labels(), labels().iloc[:1]]), TRUTH, CLASSES)
    with pytest.raises(ValueError, match="no genre column"):
        evaluate(labels(), TRUTH.drop(columns="genre"), CLASSES)
    with pytest.raises(ValueError, match="no song with a genre"):
        evaluate(labels(), TRUTH.iloc[:0], CLASSES)


def test_html_escapes_every_value() -> None:
    html = page("<t>", "a & b", [Section("s", "x<y", table(["<h>"], [["<script>alert(1)</script>", 1.5]]))])
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<title>&lt;t&gt;</title>" in html and "a &amp; b" in html and '<td class="n">1.5</td>' in html
