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
import torch

from genre_core.allocator import keep_freed_memory
from genre_core.artifacts import CNNBundle, load_cnn_bundle
from genre_core.config import FeatureConfig
from genre_core.decoding import DecodeStage, as_column
from genre_core.labelling import CNNVoter
from genre_core.models.gan import GANBundle, Generator, load_gan_bundle
from genre_core.refine import refine_unclassified
from genre_core.schema import STATUS_GAN_RESOLVED, STATUS_UNCLASSIFIED


def load_gan_for(gan_url: str, cnn: CNNBundle, device: str | None = None) -> tuple[Generator, GANBundle]:
    """Load the GAN bundle at ``gan_url``, refusing one trained for another CNN bundle or feature version."""
    return load_gan_bundle(gan_url, cnn_version=cnn.version, feature_version=cnn.feature_version,
                           device=device)  # type: ignore[return-value]


class GANStage:
    """GAN refinement of the unclassified songs of a batch (see :mod:`genre_core.refine` for the rule).

    Rows whose CNN status is not ``unclassified`` pass through unchanged; for the others (their slices translated
    and read back ``batch_slices`` at a time: small on a CPU, large on a GPU) the translated votes
    may turn the row into ``gan_resolved`` with its genre. Adds ``cnn_status`` (the status before this stage)
    and ``gan_input_slices`` (how many slices this stage translated for the row: 0 for every row it did not
    process), and drops the ``slices`` payload. Building one tunes this process's allocator
    (:mod:`genre_core.allocator`).
    """

    def __init__(self, gan_url: str, cnn_url: str, device: str | None = None, batch_slices: int = 16) -> None:
        keep_freed_memory()
        self.cnn, cnn_meta = load_cnn_bundle(cnn_url, device=device)
        self.generator, self.meta = load_gan_for(gan_url, cnn_meta, device)
        self.device = next(self.cnn.parameters()).device
        self.classes = list(cnn_meta.classes)
        self.params = {k: self.meta.refine[k] for k in ("top_k", "threshold", "cost_weight")}
        self.params["vote_weight"] = float(self.meta.refine.get("vote_weight", 0.0))
        self.params["standardize"] = cnn_meta.feature_config.normalization == "per_slice"
        self.params["batch_size"] = batch_slices  # translations / CNN readings per forward pass

    @property
    def version(self) -> str:
        return self.meta.version

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(batch["status"])
        status, genre = list(batch["status"]), list(batch["genre"])
        n_translated = np.zeros(n, dtype=np.int64)
        for i in range(n):
            if status[i] != STATUS_UNCLASSIFIED:
                continue
            slices = torch.as_tensor(np.asarray(batch["slices"][i], np.float32), device=self.device)
            with torch.inference_mode():
                decision = refine_unclassified(status[i], slices, np.asarray(batch["probabilities"][i]),
                                               self.generator, self.cnn, **self.params)
            n_translated[i] = len(slices)
            if decision is not None and decision.resolved:
                status[i], genre[i] = STATUS_GAN_RESOLVED, self.classes[int(decision.genre_index)]
        out = {k: v for k, v in batch.items() if k != "slices"}
        out.update(cnn_status=batch["status"], status=as_column(status), genre=as_column(genre),
                   gan_input_slices=n_translated)
        return out


def label_song_by_song(df: pd.DataFrame, feature_cfg: FeatureConfig, cnn_url: str, gan_url: str | None = None,
                       device: str = "cpu") -> pd.DataFrame:
    """The stages of the labelling job called in this process, one song at a time (what the Ray job must
    reproduce, and the single-process baseline it is measured against). One row per song, indexed by track_id:
    ``status``, ``cnn_status``, ``genre``, ``probabilities`` (the votes; a NaN row when there are none)."""
    decode, voter = DecodeStage(feature_cfg), CNNVoter(cnn_url, device=device)
    gan = GANStage(gan_url, cnn_url, device=device) if gan_url else None
    rows = []
    for tid, uri in zip(df["track_id"], df["audio_uri"], strict=True):
        batch = voter(decode({"track_id": np.array([tid], object), "audio_uri": np.array([uri], object)}))
        if gan is not None:
            batch = gan(batch)
        rows.append({"track_id": tid, "status": batch["status"][0], "cnn_status": batch.get("cnn_status",
                     batch["status"])[0], "genre": batch["genre"][0], "probabilities": batch["probabilities"][0]})
    return pd.DataFrame(rows).set_index("track_id")

