"""The evaluation report opened in a real headless Chromium, and `labels show --track` on a real labelled run.

One labelling run on a local Ray cluster (labels on S3 through the moto server) with the shipped CNN and a GAN
bundle made for it; the report is built from those labels, from labels of the CNN alone, and with audio gone.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from headless_chromium import CHROMIUM, check_page

from genre_core.artifacts import load_cnn_bundle
from genre_core.label_commit import RunCommitter, RunManifest, write_part
from genre_core.label_table import locate, read_labels
from genre_core.labelling import CNNVoter, label_catalog
from genre_core.report import ReportRequest, build_report
from genre_core.schema import labels_table
from jobs import evaluate, label, labels, make_catalog
from jobs.cli import run_job
from jobs.models import DEFAULT_MODELS

REPO = Path(__file__).resolve().parents[2]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make system-deps`)")
LABELS_URL = "s3://report-test/labels"
GONE = "gone-00000"


@pytest.fixture(scope="module")
def table_catalog(tmp_path_factory) -> str:
    """The SQL catalog (a SQLite file) of the labels table whose warehouse is LABELS_URL."""
    return f"sqlite:///{tmp_path_factory.mktemp('catalog')}/labels.db"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> str:
    """20 rendered songs (one in-domain and one shifted per genre), one song of each style outside the taxonomy
    (genre null) and a track whose audio file is gone."""
    root = tmp_path_factory.mktemp("catalog")
    assert run_job(make_catalog, ["--per-genre", "1", "--seed", "11", "--out", str(root / "default")]) == 0
    assert run_job(make_catalog, ["--per-genre", "1", "--seed", "11", "--preset", "shifted",
                                  "--out", str(root / "shifted")]) == 0
    assert run_job(make_catalog, ["--per-genre", "1", "--seed", "11", "--genres", "outside",
                                  "--out", str(root / "outside")]) == 0
    gone = pd.DataFrame({"track_id": [GONE], "audio_uri": [str(root / "gone.flac")], "genre": ["rock"],
                         "split": ["shifted"]})
    df = pd.concat([pd.read_parquet(root / "default" / "catalog.parquet"),
                    pd.read_parquet(root / "shifted" / "catalog.parquet"),
                    pd.read_parquet(root / "outside" / "catalog.parquet"), gone], ignore_index=True)
    df.to_parquet(root / "catalog.parquet")
    return str(root / "catalog.parquet")


@pytest.fixture(scope="module")
def labelled(s3_endpoint, local_ray, catalog, models_with_gan, table_catalog) -> pd.DataFrame:
    """The 26 tracks labelled by the job (CNN + GAN stage) into S3, the one whose audio is gone included (an
    error row); returns the labels."""
    from genre_core.storage import s3_filesystem

    s3_filesystem().mkdir("report-test")
    assert run_job(label, ["--catalog", catalog, "--output", LABELS_URL, "--table-catalog", table_catalog,
                           "--models", models_with_gan, "--config", "configs/label-local.yaml"]) == 0
    return read_labels(locate(LABELS_URL, catalog_uri=table_catalog))


@pytest.fixture(scope="module")
def reference_labels(catalog, tmp_path_factory) -> tuple[str, pd.DataFrame]:
    """All 26 tracks labelled by the sequential reference labeller with the shipped CNN alone (no GAN stage),
    committed as a run into a local labels table; returns (its warehouse, labels)."""
    voter = CNNVoter(f"{DEFAULT_MODELS}/cnn")
    df = label_catalog(pd.read_parquet(catalog), voter, run_id="reference")
    root = str(tmp_path_factory.mktemp("reference") / "labels")
    committer = RunCommitter(locate(root), RunManifest(
        run_id="reference", mode="backfill", catalog=catalog, model_version=voter.bundle.version, gan_version=None,
        feature_version=voter.bundle.feature_version, classes=voter.classes, n_todo=len(df)))
    committer.add(write_part(*committer.target, labels_table(df, voter.classes), "reference"))
    committer.commit()
    return root, df


@pytest.fixture(scope="module")
def ablation_json(tmp_path_factory, catalog, models_with_gan) -> str:
    """benchmarks/gan_ablation.py run for real on the test catalog, its figures written as JSON."""
    spec = importlib.util.spec_from_file_location("gan_ablation", REPO / "benchmarks" / "gan_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("ablation")
    assert module.main(["--cnn", f"{models_with_gan}/cnn", "--gan", f"{models_with_gan}/gan",
                        "--train-catalog", catalog, "--tune-catalog", catalog, "--eval-catalog", catalog,
                        "--cache-dir", str(out / "cache"),
                        "--workers", "1", "--threads", "1", "--no-record", "--out-json", str(out / "a.json")]) == 0
    return str(out / "a.json")


@needs_chromium
def test_page_check_catches_console_errors_and_broken_images(tmp_path) -> None:
    from matplotlib.figure import Figure

    from genre_core.report.figures import to_png
    from genre_core.report.html import img

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1])
    (tmp_path / "good.html").write_text(f"<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head><body>"
                                        f"{img(to_png(fig), 'ok')}</body></html>")
    good = check_page((tmp_path / "good.html").as_uri())
    assert good.errors == [] and len(good.images) == 1 and good.broken_images == []
    assert good.images[0]["width"] == 96  # 1 inch at the report's 96 dpi

    (tmp_path / "bad.html").write_text(
        "<!DOCTYPE html><html><body><img src='data:image/png;base64,AAAAAAAA' alt='garbage'>"
        "<img src='missing.png' alt='missing'><script>console.error('bad thing'); throw new Error('boom');</script>"
        "</body></html>")
    bad = check_page((tmp_path / "bad.html").as_uri())
    assert [i["alt"] for i in bad.broken_images] == ["garbage", "missing"]
    assert any("bad thing" in e for e in bad.errors) and any("boom" in e for e in bad.errors)
    assert any("missing.png" in e for e in bad.errors)  # the failed load is logged as an error too


@needs_chromium
def test_report_of_a_run_with_gan_stage_opens_cleanly(labelled, catalog, models_with_gan, ablation_json,
                                                      table_catalog, tmp_path) -> None:
    out = tmp_path / "report"
    assert run_job(evaluate, ["--labels", LABELS_URL, "--table-catalog", table_catalog, "--truth", catalog,
                              "--models", models_with_gan,
                              "--ablation", ablation_json, "--gallery", "2", "--timeline", "2",
                              "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    ev = json.loads((out / "evaluation.json").read_text())

    # the headline numbers, recomputed here from the committed labels and the catalog
    truth = pd.read_parquet(catalog)[["track_id", "genre", "style"]].rename(columns={"genre": "truth"})
    assert len(truth) == len(labelled) == 26  # every catalog track has one label, the outside songs' included
    outside, truth = truth[truth["truth"].isna()], truth[truth["truth"].notna()]
    merged = truth.merge(labelled, on="track_id", how="left")
    assert ev["n_songs"] == len(truth) == 21
    forced = [None if not isinstance(p, np.ndarray) else labelled.attrs["classes"][int(np.argmax(p))]
              for p in merged["probabilities"]]
    assert ev["accuracy"] == pytest.approx(np.mean([f == t for f, t in zip(forced, merged["truth"], strict=True)]))
    decided = merged["status"].isin(["classified", "gan_resolved"])
    assert ev["coverage"] == pytest.approx(decided.mean())
    counts = {s: int((merged["status"] == s).sum()) for s in ("classified", "gan_resolved", "unclassified", "error")}
    assert counts["error"] == 1 and merged.set_index("track_id").at[GONE, "status"] == "error"
    assert ev["status_counts"] == {**counts, "missing": 0}
    gan = ev["gan_stage"]
    assert gan["ran"] and gan["n_resolved"] == counts["gan_resolved"] > 0
    assert ev["report_notes"] == []
    out_rows = outside.merge(labelled, on="track_id")
    o = ev["outside_taxonomy"]
    assert o["n_songs"] == 5 and set(o["per_style"]) == {"folk", "latin", "house", "ambient", "gospel"}
    assert o["unclassified"] == int((out_rows["status"] == "unclassified").sum())
    assert o["outside_taxonomy"] == int((out_rows["reason"] == "outside_taxonomy").sum())
    cal = ev["calibration"]  # the shipped bundle is calibrated: every CNN-decided or unclassified song has one
    n_conf = 20 - counts["gan_resolved"]  # a gan_resolved label has no confidence
    assert cal["n_songs"] == n_conf and sum(b["n"] for b in cal["reliability"]) == n_conf and 0 <= cal["ece"] <= 1
    assert "Songs outside the taxonomy" in page and "reliability diagram" in page

    # the page: every section drawn, nothing replaced by a note
    assert "No GAN stage in this run" not in page and "No ablation file given" not in page
    for system in ("forced_argmax", "gan_only", "random_ctrl"):  # rows of the ablation JSON's tables
        assert f"<td>{system}</td>" in page
    check = check_page((out / "report.html").as_uri())
    assert check.errors == []
    # status, confusion, per-genre, curves, reliability, gallery, timeline
    assert len(check.images) == page.count("<img ") == 7
    assert check.broken_images == []
    assert check.requests and all(u.startswith(("file:", "data:")) for u in check.requests)  # nothing external


@needs_chromium
def test_report_without_gan_stage_and_with_audio_gone(catalog, reference_labels, tmp_path) -> None:
    cat = pd.read_parquet(catalog)
    _, labels_df = reference_labels  # the CNN alone: no GAN stage
    assert (labels_df["status"] == "unclassified").any()
    classes = list(load_cnn_bundle(f"{DEFAULT_MODELS}/cnn")[1].classes)
    req = dict(labels=labels_df, truth=cat, classes=classes, cnn_url=f"{DEFAULT_MODELS}/cnn", gallery=2, timeline=3)

    report = build_report(ReportRequest(**req))
    assert "No GAN stage in this run" in report.html  # the GAN section and the gallery say so
    assert "No ablation file given. To get one: python benchmarks/gan_ablation.py" in report.html
    assert report.evaluation["gan_stage"] == {"ran": False}
    assert len(report.songs) >= 3 and report.notes == []  # the gallery's 2 unclassified songs, the timeline's 3
    by_id = labels_df.set_index("track_id")
    for tid, song in report.songs.items():  # the pictures show what the labelling computed
        np.testing.assert_allclose(song.vote_shares, by_id.at[tid, "probabilities"], atol=1e-5)
    (tmp_path / "report.html").write_text(report.html)
    check = check_page((tmp_path / "report.html").as_uri())
    assert check.errors == [] and check.broken_images == []
    assert len(check.images) == report.html.count("<img ") == 7

    # the audio of the unclassified songs is gone and one song has no label: notes, not a failure
    unclassified = set(labels_df.loc[labels_df["status"] == "unclassified", "track_id"])
    moved = cat.assign(audio_uri=[str(tmp_path / "moved" / f"{t}.flac") if t in unclassified else u
                                  for t, u in zip(cat["track_id"], cat["audio_uri"], strict=True)])
    req.update(truth=moved, labels=labels_df[labels_df["track_id"] != cat["track_id"].iloc[0]])
    report = build_report(ReportRequest(**req))
    assert report.evaluation["status_counts"]["missing"] == 1
    assert "the audio of the unclassified songs could not be read" in report.html
    gone = {re.search(r"audio of (\S+) unavailable \(missing_object", n).group(1) for n in report.notes}
    assert gone and gone <= unclassified
    assert len(report.songs) == 3 and not set(report.songs) & unclassified  # the timeline used other songs


def test_labels_show_explains_labels_of_real_runs(labelled, reference_labels, models_with_gan, table_catalog,
                                                 capsys) -> None:
    """Each status explained: classified and gan_resolved from the job's run (CNN + GAN), unclassified and
    error from the reference labeller's run (CNN alone)."""
    _, cnn = load_cnn_bundle(f"{models_with_gan}/cnn")
    reference_root, reference = reference_labels
    on_s3 = ["--table-catalog", table_catalog]
    cases = {"classified": (LABELS_URL, labelled, on_s3), "gan_resolved": (LABELS_URL, labelled, on_s3),
             "unclassified": (reference_root, reference, []), "error": (reference_root, reference, [])}
    rows, texts = {}, {}
    for status, (root, df, extra) in cases.items():
        pick = (df["status"] == status) & ((df["reason"] == "ambiguous_vote") if status == "unclassified" else True)
        row = rows[status] = df[pick].iloc[0]
        assert run_job(labels, ["show", "--output", root, *extra, "--track", row["track_id"],
                                "--models", models_with_gan]) == 0
        out = texts[status] = capsys.readouterr().out
        gan_version = row["gan_version"] or "-"
        assert out.startswith(f"track {row['track_id']}: {status}")
        assert f"models: cnn {row['model_version']}, gan {gan_version}, features {row['feature_version']}" in out
        assert f"run {row['run_id']}" in out
        if status != "error":
            votes = re.findall(r"^\s+(\w+)\s+([01]\.\d{3}) #*$", out, flags=re.MULTILINE)
            shares = [float(v) for _, v in votes]
            assert votes[0][0] == cnn.classes[int(np.argmax(row["probabilities"]))]
            assert len(votes) == len(cnn.classes) and shares == sorted(shares, reverse=True)
            assert sum(shares) == pytest.approx(1.0, abs=0.01)
    c = rows["classified"]
    assert (f"votes were clear: top share {c['vote_share']:.3f} ({c['genre']}) >= tau {cnn.voting.tau:.2f}, "
            f"margin {c['margin']:.3f} >= m {cnn.voting.margin:.2f}") in texts["classified"]
    g = rows["gan_resolved"]
    assert f"-> {g['genre']}" in texts["gan_resolved"] and "votes were ambiguous" in texts["gan_resolved"]
    assert (f"the GAN stage ({g['gan_version']}) translated its slices and the CNN read them as" in
            texts["gan_resolved"])
    assert ("combined votes (0.5 x CNN + 0.5 x GAN, chosen on validation songs)" in texts["gan_resolved"]
            and f"it chose {g['genre']}" in texts["gan_resolved"])
    u = rows["unclassified"]
    assert f"top share {u['vote_share']:.3f}" in texts["unclassified"] and " < " in texts["unclassified"]
    assert "No GAN stage ran for it" in texts["unclassified"]
    assert "missing_object" in texts["error"] and "retries error rows" in texts["error"]

    # every unclassified song is listed with its reason, and the summary counts them by reason
    assert run_job(labels, ["show", "--output", reference_root, "--unclassified"]) == 0
    listed = capsys.readouterr().out.splitlines()
    unclassified = reference[reference["status"] == "unclassified"].sort_values("track_id")
    assert len(listed) == len(unclassified) > 0
    for line, (tid, why) in zip(listed, zip(unclassified["track_id"], unclassified["reason"], strict=True),
                                strict=True):
        assert line.startswith(f"{tid}  {why}  (") and why in ("ambiguous_vote", "outside_taxonomy")
    assert run_job(labels, ["show", "--output", reference_root]) == 0
    assert "unclassified by reason: " in capsys.readouterr().out
    for tid in reference.loc[reference["reason"] == "outside_taxonomy", "track_id"][:1]:
        assert run_job(labels, ["show", "--output", reference_root, "--track", tid, "--models", models_with_gan]) == 0
        text = capsys.readouterr().out
        assert f"track {tid}: unclassified" in text and "reason: outside_taxonomy: " in text and "threshold" in text

    assert run_job(labels, ["show", "--output", reference_root, "--track", "gone-0000"]) == 1
    err = capsys.readouterr().err
    assert f"Did you mean {GONE}" in err and f"genre-job labels show --output {reference_root}" in err
