"""Single-process reference labeller: decode -> slices -> batched CNN -> votes -> one labels row per track.

:class:`CNNVoter` is a plain callable class (model loaded in ``__init__``, ``__call__(batch) -> batch``, no
global state), so the Ray job runs it as an actor and a test calls it directly; :func:`label_track` and
:func:`label_catalog` are the sequential reference the distributed job must reproduce row for row.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import torch

from genre_core.allocator import keep_freed_memory
from genre_core.artifacts import load_cnn_bundle
from genre_core.config import AudioConfig, ConfigError, FeatureConfig, VotingConfig
from genre_core.decoding import as_column, decode_song
from genre_core.errors import TooShortError, TrackError
from genre_core.features import feature_version
from genre_core.inference import slice_outputs, softmax
from genre_core.schema import (
    LABEL_COLUMNS,
    REASON_AMBIGUOUS,
    REASON_OUTSIDE,
    STATUS_CLASSIFIED,
    STATUS_ERROR,
    STATUS_UNCLASSIFIED,
    check_catalog_columns,
    vote_list,
)
from genre_core.voting import decide

VOTE_COLUMNS = ("status", "reason", "genre", "genre_index", "confidence", "vote_share", "margin", "probabilities",
                "outside_score", "n_slices")


class CNNVoter:
    """Batched slice classification and voting for a batch of songs.

    ``__call__`` takes a column batch with ``slices`` (one ``[n_i, n_mels, n_frames]`` array per song) and
    optionally ``status``/``error`` (rows already ``"error"`` keep their error); every other column is carried
    through. It adds the :data:`VOTE_COLUMNS` and ``error`` (a song with no slice becomes a ``too_short``
    error); ``probabilities`` is one ``[n, n_classes]`` float32 array, a NaN row for a song without votes.
    All songs' slices go through the model together in chunks of ``batch_slices``.

    A song is ``classified`` when the vote rule decides it and the bundle's out-of-taxonomy rule
    (:mod:`genre_core.outside`, when the bundle has one) does not turn it away; otherwise ``unclassified`` with
    ``reason`` ``outside_taxonomy`` (its ``outside_score`` passed the rule's threshold, whatever the votes say: for a
    song the vote rule decides, the score weighed against its confidence; for an ambiguous one, the score alone) or
    ``ambiguous_vote``. ``confidence`` is the bundle's calibrated probability that the vote's top genre is right
    (:mod:`genre_core.calibration`; None without a calibration), ``vote_share`` that genre's share of the votes.
    With ``drop_classified_slices`` the payload of every row but the ambiguous ones (the only ones a GAN stage
    reads) is replaced by an empty array. Building one tunes this process's allocator
    (:mod:`genre_core.allocator`).
    """

    def __init__(
        self,
        bundle_url: str,
        device: str | torch.device | None = None,
        voting: VotingConfig | None = None,
        batch_slices: int = 16,
        drop_classified_slices: bool = False,
    ) -> None:
        keep_freed_memory()
        self.model, self.bundle = load_cnn_bundle(bundle_url, device=device)
        self.device = next(self.model.parameters()).device
        self.voting = voting or self.bundle.voting
        self.batch_slices = batch_slices
        self.drop_classified_slices = drop_classified_slices
        self.classes = list(self.bundle.classes)
        self.outside, self.calibration = self.bundle.outside, self.bundle.calibration

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        slices = list(batch["slices"])
        n = len(slices)
        prior = list(batch["status"]) if "status" in batch else [None] * n
        todo = [i for i in range(n) if prior[i] != STATUS_ERROR and len(slices[i]) > 0]
        logits, embeddings = slice_outputs(self.model, [slices[i] for i in todo], self.batch_slices, self.device)
        cols: dict[str, list[Any]] = {c: [None] * n for c in VOTE_COLUMNS}
        cols["status"] = [STATUS_ERROR] * n
        cols["n_slices"] = [0] * n
        cols["genre_index"] = [-1] * n
        cols["probabilities"] = [np.full(len(self.classes), np.nan, np.float32)] * n  # no votes: a NaN row
        errors = list(batch["error"]) if "error" in batch else [None] * n
        for i in range(n):
            if prior[i] != STATUS_ERROR and len(slices[i]) == 0:
                errors[i] = errors[i] or TooShortError("no complete slice").describe()
        for i, z, e in zip(todo, logits, embeddings, strict=True):
            d = decide(softmax(z), self.voting.tau, self.voting.margin)
            confidence = self.calibration.confidence(z, d.top_index) if self.calibration is not None else None
            score = self.outside.song_score(z, e, confidence, d.classified) if self.outside is not None else None
            outside = score is not None and self.outside.is_outside(score, d.classified)
            classified = d.classified and not outside
            cols["status"][i] = STATUS_CLASSIFIED if classified else STATUS_UNCLASSIFIED
            cols["reason"][i] = None if classified else REASON_OUTSIDE if outside else REASON_AMBIGUOUS
            cols["genre_index"][i] = int(d.genre_index) if classified else -1
            errors[i] = None
            cols["genre"][i] = self.classes[d.genre_index] if classified else None
            cols["confidence"][i] = confidence
            cols["vote_share"][i] = float(d.top_share)
            cols["margin"][i] = float(d.margin)
            cols["probabilities"][i] = np.asarray(d.probabilities, dtype=np.float32)
            cols["outside_score"][i] = score
            cols["n_slices"][i] = int(d.n_slices)
        out = dict(batch)
        for c in VOTE_COLUMNS:
            out[c] = as_column(cols[c])
        out["probabilities"] = np.stack(cols["probabilities"]) if n else np.zeros((0, len(self.classes)), np.float32)
        out["error"] = as_column(errors)
        if self.drop_classified_slices:
            empty = np.zeros((0, self.bundle.n_mels, self.bundle.n_frames), np.float32)
            out["slices"] = as_column([s if reason == REASON_AMBIGUOUS else empty
                                     for s, reason in zip(slices, cols["reason"], strict=True)])
        return out


def check_feature_config(feature_cfg: FeatureConfig, bundle_cfg: FeatureConfig) -> None:
    """Raise ConfigError unless ``feature_cfg`` computes the same spectrograms as the model was trained on
    (only the inference hop between slices may differ)."""
    if dataclasses.replace(feature_cfg, slice_hop_frames=bundle_cfg.slice_hop_frames) != bundle_cfg:
        raise ConfigError(
            f"feature config {feature_cfg} differs from the one the model was trained with ({bundle_cfg})"
        )


def _now() -> datetime:
    return datetime.now(timezone.utc)


def label_track(
    track_id: str,
    audio_uri: str,
    voter: CNNVoter,
    feature_cfg: FeatureConfig | None = None,
    audio_cfg: AudioConfig | None = None,
    *,
    root: str | None = None,
    run_id: str = "",
    gan_version: str | None = None,
    labelled_at: datetime | None = None,
) -> dict[str, Any]:
    """Label one track: a dict with exactly the LABELS_SCHEMA columns.

    A :class:`TrackError` (missing, undecodable, silent, too short, ...) becomes a row with
    ``status="error"`` and ``error=exc.describe()``; any other exception propagates (a bug or an
    infrastructure failure must stop the job, not hide in the labels).
    """
    feature_cfg = feature_cfg or voter.bundle.feature_config
    check_feature_config(feature_cfg, voter.bundle.feature_config)
    audio_cfg = audio_cfg or AudioConfig(sample_rate=feature_cfg.sample_rate)
    row: dict[str, Any] = {c: None for c in LABEL_COLUMNS}
    row.update(track_id=track_id, model_version=voter.bundle.version, gan_version=gan_version,
               feature_version=feature_version(feature_cfg), run_id=run_id,
               labelled_at=labelled_at or _now(), n_slices=0)
    try:
        slices, duration = decode_song(audio_uri, feature_cfg, audio_cfg, root)
        row["duration_s"] = float(duration)
    except TrackError as exc:
        row.update(status=STATUS_ERROR, error=exc.describe())
        return row
    out = voter({"slices": [slices]})
    for c in (*VOTE_COLUMNS, "error"):
        if c in row:
            row[c] = out[c][0]
    row["probabilities"] = vote_list(row["probabilities"])
    row["n_slices"] = int(row["n_slices"])
    return row


def label_catalog(
    df: pd.DataFrame,
    voter: CNNVoter,
    feature_cfg: FeatureConfig | None = None,
    audio_cfg: AudioConfig | None = None,
    *,
    root: str | None = None,
    run_id: str | None = None,
    gan_version: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Label every catalog row sequentially; returns a DataFrame with the LABELS_SCHEMA columns, one row
    per input row, in input order."""
    check_catalog_columns(list(df.columns))
    feature_cfg = feature_cfg or voter.bundle.feature_config
    check_feature_config(feature_cfg, voter.bundle.feature_config)
    run_id = run_id or uuid.uuid4().hex[:12]
    rows = []
    for k, (tid, uri) in enumerate(zip(df["track_id"], df["audio_uri"], strict=True), start=1):
        rows.append(label_track(str(tid), str(uri), voter, feature_cfg, audio_cfg, root=root,
                                run_id=run_id, gan_version=gan_version))
        if progress is not None:
            progress(k, len(df))
    return pd.DataFrame(rows, columns=list(LABEL_COLUMNS))
