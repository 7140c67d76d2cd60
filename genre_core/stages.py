"""The labelling pipeline as plain callables over column batches (``dict[str, np.ndarray]``).

``DecodeStage`` (audio -> slices, :mod:`genre_core.decoding`) -> ``CNNVoter`` (slices -> votes, see
:mod:`genre_core.labelling`) -> ``GANStage`` (unclassified songs -> GAN refinement) -> ``LabelFileWriter`` (rows of
the labels schema written as data files of the labels table, :mod:`genre_core.label_writer`). Ray runs them as
actor pools (``jobs/label_pipeline.py``); tests and the sequential reference call them directly. One row is one
song throughout, so voting never needs a shuffle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from genre_core.allocator import keep_freed_memory
from genre_core.artifacts import CNNBundle, load_cnn_bundle
from genre_core.config import FeatureConfig
from genre_core.decoding import DecodeStage, as_column
from genre_core.labelling import CNNVoter
from genre_core.models.gan import Generator
from genre_core.models.gan_bundle import GANBundle, load_gan_bundle
from genre_core.refine import refine_songs
from genre_core.schema import REASON_AMBIGUOUS, STATUS_CLASSIFIED, STATUS_GAN_RESOLVED, STATUS_UNCLASSIFIED


def load_gan_for(gan_url: str, cnn: CNNBundle, device: str | None = None) -> tuple[list[Generator], GANBundle]:
    """Load the GAN bundle at ``gan_url``, refusing one trained for another CNN bundle or feature version."""
    return load_gan_bundle(gan_url, cnn_version=cnn.version, feature_version=cnn.feature_version,
                           device=device)


def no_gan_columns(n: int, n_classes: int) -> dict[str, Any]:
    """The columns :class:`GANStage` adds, for ``n`` rows that no GAN stage processed."""
    return {"gan_probabilities": list(np.full((n, n_classes), np.nan, dtype=np.float32)),
            "gan_confidence": np.full(n, np.nan, dtype=np.float32), "gan_input_slices": np.zeros(n, dtype=np.int64)}


class GANStage:
    """GAN re-classification of the unclassified songs of a batch (the rule: :mod:`genre_core.refine`).

    Rows that are not ``unclassified`` with reason ``ambiguous_vote`` pass through unchanged and never reach the
    models (a song outside the taxonomy stays unclassified); the slices of the others go through the CNN's front
    end, the bundle's generators and the rest of the CNN together, ``batch_slices`` at a time across songs (small
    on a CPU, large on a GPU), and a row may become ``gan_resolved`` with its genre. Adds ``cnn_status`` (the
    status before this stage), ``gan_probabilities`` (the GAN votes: the CNN's mean softmax over the translated
    slices and the generators; a NaN row for every row this stage did not process), ``gan_confidence`` (the
    combined share of the top genre that the decision used; NaN there too) and ``gan_input_slices`` (slices
    translated: 0 for rows it did not process), and drops the ``slices`` payload. A ``gan_resolved`` row has no
    ``confidence``: the calibration is that of the CNN's votes, not of the GAN stage's decisions. Building one tunes
    this process's allocator (:mod:`genre_core.allocator`).
    """

    def __init__(self, gan_url: str, cnn_url: str, device: str | None = None, batch_slices: int = 16) -> None:
        keep_freed_memory()
        self.cnn, cnn_meta = load_cnn_bundle(cnn_url, device=device)
        self.device = next(self.cnn.parameters()).device
        self.generators, self.meta = load_gan_for(gan_url, cnn_meta, self.device)
        self.classes = list(cnn_meta.classes)
        self.batch_slices = batch_slices  # translations / CNN readings per forward pass

    @property
    def version(self) -> str:
        return self.meta.version

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n, n_classes = len(batch["status"]), len(self.classes)
        status, genre, reason = list(batch["status"]), list(batch["genre"]), list(batch["reason"])
        confidence = list(batch["confidence"])
        added = no_gan_columns(n, n_classes)
        gan_probs, gan_conf, n_translated = (added[k] for k in ("gan_probabilities", "gan_confidence",
                                                                  "gan_input_slices"))
        # only songs with an ambiguous vote reach the GAN (pool 1 drops the others' payload); a song outside the
        # taxonomy stays unclassified: no genre of the taxonomy is right for it
        todo = [STATUS_UNCLASSIFIED if reason[i] == REASON_AMBIGUOUS else STATUS_CLASSIFIED for i in range(n)]
        slices = [np.asarray(batch["slices"][i], np.float32) if todo[i] == STATUS_UNCLASSIFIED else None
                  for i in range(n)]
        decisions = refine_songs(todo, slices, [np.asarray(p) for p in batch["probabilities"]], self.generators,
                                 self.cnn, self.meta.refine, batch_size=self.batch_slices)
        for i, decision in enumerate(decisions):
            if decision is None:
                continue
            gan_probs[i] = decision.gan_votes.astype(np.float32)  # one dtype for the column (Arrow tensors)
            gan_conf[i], n_translated[i] = decision.confidence, len(slices[i])
            if decision.resolved:
                status[i], genre[i] = STATUS_GAN_RESOLVED, self.classes[int(decision.genre_index)]
                reason[i] = None
                confidence[i] = None  # calibrated on the CNN's votes, not on the GAN stage's decisions
        out = {k: v for k, v in batch.items() if k != "slices"}
        out.update(cnn_status=batch["status"], status=as_column(status), genre=as_column(genre),
                   reason=as_column(reason), confidence=as_column(confidence), **added)
        return out


def label_song_by_song(df: pd.DataFrame, feature_cfg: FeatureConfig, cnn_url: str, gan_url: str | None = None,
                       device: str = "cpu") -> pd.DataFrame:
    """The stages of the labelling job called in this process, one song at a time (what the Ray job must
    reproduce, and the single-process baseline it is measured against). One row per song, indexed by track_id:
    ``status``, ``cnn_status``, ``reason``, ``genre``, ``probabilities`` (the votes; a NaN row when there are
    none)."""
    decode, voter = DecodeStage(feature_cfg), CNNVoter(cnn_url, device=device)
    gan = GANStage(gan_url, cnn_url, device=device) if gan_url else None
    rows = []
    for tid, uri in zip(df["track_id"], df["audio_uri"], strict=True):
        batch = voter(decode({"track_id": np.array([tid], object), "audio_uri": np.array([uri], object)}))
        if gan is not None:
            batch = gan(batch)
        rows.append({"track_id": tid, "status": batch["status"][0], "cnn_status": batch.get("cnn_status",
                     batch["status"])[0], "reason": batch["reason"][0], "genre": batch["genre"][0],
                     "probabilities": batch["probabilities"][0]})
    return pd.DataFrame(rows).set_index("track_id")

