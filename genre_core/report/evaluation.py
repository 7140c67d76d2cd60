"""Labels against ground truth, song by song: the figures of the evaluation report (no plotting here).

:func:`merge_with_truth` lines up one labels row per truth song (a song without a label row is ``missing``);
:func:`evaluate` computes everything the report shows from that table: the standard song-level summary
(:func:`genre_core.metrics.summarize`: accuracy of the forced vote, coverage, accuracy on decided songs,
confusion, per-genre precision/recall), the status breakdown (unclassified songs by reason), the coverage-accuracy
curves over the vote thresholds, what the GAN stage changed, the calibration of ``confidence`` (ECE, reliability
diagram) and, for songs of styles outside the taxonomy in the truth, how many stay unclassified. The result is a
JSON-ready dict (NaN stays NaN; see :func:`clean`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from genre_core.calibration import expected_calibration_error, reliability
from genre_core.metrics import coverage_accuracy_curve, flip_counts, mcnemar_exact, summarize
from genre_core.schema import (
    DECIDED_STATUSES,
    REASON_OUTSIDE,
    REASONS,
    STATUS_CURATED,
    STATUS_ERROR,
    STATUS_GAN_RESOLVED,
    STATUS_UNCLASSIFIED,
    STATUSES,
    vote_shares,
)

MISSING = "missing"          # status of a truth song that has no label row
CURVE_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 4)


def forced_predictions(probabilities: pd.Series, classes: list[str]) -> list[str | None]:
    """Argmax genre per row over the vote shares (None where a row has none, e.g. an error row)."""
    out: list[str | None] = []
    for p in probabilities:
        shares = vote_shares(p)
        out.append(None if shares is None else classes[int(shares.argmax())])
    return out


def merge_with_truth(labels: pd.DataFrame, truth: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """One row per truth song with a genre: the truth columns ``track_id, truth`` (and ``audio_uri`` when the
    truth has it), the label columns, ``status`` (``"missing"`` without a label row), ``decided`` (the genre
    assigned, None unless classified/gan_resolved) and ``forced`` (argmax of the votes, None without votes).
    Raises ValueError when the labels hold a track twice or the truth has no ``genre`` column or no song."""
    if "genre" not in truth.columns:
        raise ValueError("the truth catalog has no genre column (a catalog from `genre-job make-catalog` has one)")
    keep = ["track_id", "genre"] + (["audio_uri"] if "audio_uri" in truth.columns else [])
    truth = truth.loc[truth["genre"].notna(), keep].astype({"track_id": str}).rename(columns={"genre": "truth"})
    if truth.empty:
        raise ValueError("the truth catalog has no song with a genre to evaluate against (check --split)")
    labels = labels.astype({"track_id": str})
    if labels["track_id"].duplicated().any():
        dup = sorted(labels.loc[labels["track_id"].duplicated(), "track_id"].unique())[:10]
        raise ValueError(f"the labels hold more than one row for track(s) {dup}; pass the labels root written by "
                         "`genre-job label` (its latest label per track is used), not the folder of every run")
    merged = truth.merge(labels.rename(columns={"genre": "label"}), on="track_id", how="left")
    merged["status"] = merged["status"].where(merged["status"].notna(), MISSING)
    decided = [g if s in DECIDED_STATUSES and isinstance(g, str) else None
               for g, s in zip(merged["label"], merged["status"], strict=True)]
    # object columns keep None as None (a string column would turn it into NaN)
    merged["decided"] = pd.Series(decided, index=merged.index, dtype=object)
    merged["forced"] = pd.Series(forced_predictions(merged["probabilities"], classes), index=merged.index,
                                 dtype=object)
    return merged.reset_index(drop=True)


def _top_share_and_margin(probabilities: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    top, gap = [], []
    for p in probabilities:
        shares = vote_shares(p)
        if shares is None:
            top.append(np.nan)
            gap.append(np.nan)
        else:
            s = np.sort(shares)[::-1]
            top.append(s[0])
            gap.append(s[0] - s[1] if len(s) > 1 else s[0])
    return np.asarray(top, dtype=np.float64), np.asarray(gap, dtype=np.float64)


def coverage_curves(merged: pd.DataFrame) -> dict[str, Any]:
    """Coverage and accuracy of the forced vote when a song is decided only if its top vote share (resp. its
    margin to the runner-up) reaches a threshold, swept over 0..1; songs without votes are never decided."""
    correct = [f is not None and f == t for f, t in zip(merged["forced"], merged["truth"], strict=True)]
    top, gap = _top_share_and_margin(merged["probabilities"])
    return {"top_share": coverage_accuracy_curve(correct, top, CURVE_THRESHOLDS),
            "margin": coverage_accuracy_curve(correct, gap, CURVE_THRESHOLDS)}


def status_breakdown(merged: pd.DataFrame) -> list[dict[str, Any]]:
    """Per status (classified, gan_resolved, unclassified, error, missing): songs, share, how many are right
    (the assigned genre for decided songs; the forced vote for unclassified ones) and, for errors, the kinds."""
    n = len(merged)
    rows = []
    for status in (*STATUSES, MISSING):
        part = merged[merged["status"] == status]
        if status == STATUS_CURATED and part.empty:
            continue  # a catalog without curated genres: no row for them
        row: dict[str, Any] = {"status": status, "songs": int(len(part)), "share": len(part) / n if n else math.nan}
        if status in DECIDED_STATUSES:
            row["right"] = int((part["decided"] == part["truth"]).sum())
            row["right_means"] = "assigned genre is the true one"
        elif status == STATUS_CURATED:
            row["right"] = int((part["label"] == part["truth"]).sum())
            row["right_means"] = "the genre a person set is the true one (the model's votes are beside it)"
        elif status == STATUS_UNCLASSIFIED:
            row["right"] = int((part["forced"] == part["truth"]).sum())
            row["right_means"] = "the forced vote (argmax) would be right"
            reasons = part["reason"] if "reason" in part else pd.Series([None] * len(part), dtype=object)
            row["reasons"] = {r: int((reasons == r).sum()) for r in REASONS}
            if reasons.isna().any():
                row["reasons"]["not recorded"] = int(reasons.isna().sum())
        if status == STATUS_ERROR:
            kinds = part["error"].fillna("unknown").astype(str).str.split(":", n=1).str[0]
            row["error_kinds"] = {str(k): int(v) for k, v in kinds.value_counts().sort_index().items()}
        rows.append(row)
    return rows


def gan_stage_summary(merged: pd.DataFrame) -> dict[str, Any]:
    """What the GAN stage changed, on the songs the CNN left unclassified (status unclassified or gan_resolved
    after the stage): how many it decided, how often its genre differs from the forced vote, and the paired
    comparison with the forced vote (accuracy, flips, exact McNemar p; an undecided song counts as not right).
    ``{"ran": False}`` when no label of this run came through a GAN stage."""
    gan_versions = sorted({str(v) for v in merged.get("gan_version", pd.Series(dtype=object)).dropna()})
    resolved = merged["status"] == STATUS_GAN_RESOLVED
    if not gan_versions and not resolved.any():
        return {"ran": False}
    subset = merged[merged["status"].isin([STATUS_UNCLASSIFIED, STATUS_GAN_RESOLVED])]
    forced_ok = (subset["forced"] == subset["truth"]).to_numpy(bool)
    gan_ok = (subset["decided"] == subset["truth"]).to_numpy(bool)
    is_resolved = (subset["status"] == STATUS_GAN_RESOLVED).to_numpy(bool)
    changed = is_resolved & (subset["decided"] != subset["forced"]).to_numpy(bool)
    n = len(subset)
    flips = flip_counts(forced_ok, gan_ok)
    return {
        "ran": True, "gan_versions": gan_versions, "n_cnn_unclassified": n,
        "n_resolved": int(is_resolved.sum()), "n_still_unclassified": int(n - is_resolved.sum()),
        "n_resolved_right": int((gan_ok & is_resolved).sum()),
        "n_changed_from_vote": int(changed.sum()),
        "accuracy_forced_vote": float(forced_ok.mean()) if n else math.nan,
        "accuracy_gan": float(gan_ok.mean()) if n else math.nan,
        "wrong_to_right": flips["wrong_to_right"], "right_to_wrong": flips["right_to_wrong"],
        "mcnemar_p": mcnemar_exact(forced_ok, gan_ok)["p_value"],
    }


def calibration_summary(merged: pd.DataFrame) -> dict[str, Any]:
    """How well ``confidence`` (the calibrated probability that the vote's top genre is right) matches how often it
    is right, over the songs that have one: ECE and the reliability diagram's bins. ``{"n_songs": 0}`` when no
    label has a confidence (a model bundle without calibration, or labels made before it)."""
    conf = pd.to_numeric(merged.get("confidence", pd.Series(dtype=float)), errors="coerce")
    has = conf.notna() & merged["forced"].notna()
    if not has.any():
        return {"n_songs": 0}
    right = (merged.loc[has, "forced"] == merged.loc[has, "truth"]).to_numpy(bool)
    c = conf[has].to_numpy(np.float64)
    decided = merged.loc[has, "status"].isin(DECIDED_STATUSES).to_numpy(bool)
    return {"n_songs": int(has.sum()), "ece": expected_calibration_error(c, right),
            "reliability": reliability(c, right),
            "n_decided": int(decided.sum()), "ece_decided": expected_calibration_error(c[decided], right[decided]),
            "mean_confidence": float(c.mean()), "accuracy": float(right.mean())}


def outside_summary(labels: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """The truth's songs of styles outside the taxonomy (``genre`` null, ``style`` set, as `genre-job make-catalog
    --genres outside` writes them): per style, how many are unclassified (for either reason), how many for the
    out-of-taxonomy rule, and how many were given a genre (always wrong). ``{"n_songs": 0}`` when there are none."""
    if "style" not in truth.columns or "genre" not in truth.columns:
        return {"n_songs": 0}
    out = truth.loc[truth["genre"].isna() & truth["style"].notna(), ["track_id", "style"]].astype({"track_id": str})
    if out.empty:
        return {"n_songs": 0}
    cols = [c for c in ("track_id", "status", "reason") if c in labels.columns]
    merged = out.merge(labels[cols].astype({"track_id": str}), on="track_id", how="left")
    merged["status"] = merged["status"].where(merged["status"].notna(), MISSING)
    reason = merged["reason"] if "reason" in merged else pd.Series([None] * len(merged), dtype=object)
    merged["outside_rule"] = (merged["status"] == STATUS_UNCLASSIFIED) & (reason == REASON_OUTSIDE)

    def row(part: pd.DataFrame) -> dict[str, Any]:
        n = len(part)
        uncl = int((part["status"] == STATUS_UNCLASSIFIED).sum())
        return {"songs": n, "unclassified": uncl, "unclassified_share": uncl / n,
                "outside_taxonomy": int(part["outside_rule"].sum()),
                "given_a_genre": int(part["status"].isin(DECIDED_STATUSES).sum())}

    return {"n_songs": len(merged), **row(merged),
            "per_style": {str(k): row(g) for k, g in merged.groupby("style", sort=True)}}


def run_info(merged: pd.DataFrame) -> dict[str, Any]:
    """Which runs and model versions the evaluated labels come from."""
    def values(col: str) -> list[str]:
        return sorted({str(v) for v in merged[col].dropna()}) if col in merged.columns else []

    stamps = pd.to_datetime(merged["labelled_at"], utc=True).dropna() if "labelled_at" in merged else []
    return {"run_ids": values("run_id"), "model_versions": values("model_version"),
            "gan_versions": values("gan_version"), "feature_versions": values("feature_version"),
            "labelled_from": str(stamps.min()) if len(stamps) else None,
            "labelled_to": str(stamps.max()) if len(stamps) else None}


def evaluate(labels: pd.DataFrame, truth: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """Song-level evaluation of ``labels`` against ``truth`` (track_id, genre): see the module docstring."""
    report = evaluate_merged(merge_with_truth(labels, truth, classes), classes)
    report["outside_taxonomy"] = outside_summary(labels, truth)
    return report


def evaluate_merged(merged: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """:func:`evaluate` of a table made by :func:`merge_with_truth`."""
    report = summarize(merged["truth"].tolist(), _strings_or_none(merged["forced"]),
                       _strings_or_none(merged["decided"]), classes)
    breakdown = status_breakdown(merged)
    report["status_counts"] = {r["status"]: r["songs"] for r in breakdown}
    report["status_breakdown"] = breakdown
    report["coverage_curves"] = coverage_curves(merged)
    report["gan_stage"] = gan_stage_summary(merged)
    report["calibration"] = calibration_summary(merged)
    report["runs"] = run_info(merged)
    return report


def _strings_or_none(values: pd.Series) -> list[str | None]:
    return [v if isinstance(v, str) else None for v in values]


def clean(obj: Any) -> Any:
    """NaN -> None, numpy scalars -> Python, so that a report is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    return obj
