"""The first stage of the labelling pipeline: audio -> log-mel slices for a batch of songs.

Kept free of torch (and of every model) so that the processes that only decode start fast and stay small.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genre_core.allocator import keep_freed_memory
from genre_core.audio import load_audio
from genre_core.config import AudioConfig, FeatureConfig
from genre_core.errors import TooShortError, TrackError
from genre_core.features import song_slices, warm_up
from genre_core.schema import STATUS_ERROR


class DecodeStage:
    """Decode, resample, slice and log-mel each song of a batch (CPU work; one Ray actor call per batch).

    Adds ``slices`` (``[n, n_mels, n_frames]`` float32 per song), ``duration_s``, ``status`` (``"error"`` or
    ``"pending"``) and ``error``. A :class:`TrackError` costs only its own track; anything else is a bug or an
    infrastructure failure and propagates. Building one tunes this process's allocator (:mod:`genre_core.allocator`).
    """

    def __init__(self, feature_cfg: FeatureConfig, audio_cfg: AudioConfig | None = None,
                 root: str | None = None) -> None:
        self.feature_cfg = feature_cfg
        self.audio_cfg = audio_cfg or AudioConfig(sample_rate=feature_cfg.sample_rate)
        self.root = root
        keep_freed_memory()
        warm_up(feature_cfg)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        empty = np.zeros((0, self.feature_cfg.n_mels, self.feature_cfg.slice_frames), np.float32)
        slices, durations, statuses, errors = [], [], [], []
        for uri in batch["audio_uri"]:
            duration, song, status, error = None, empty, "pending", None
            try:
                song, duration = decode_song(str(uri), self.feature_cfg, self.audio_cfg, self.root)
            except TrackError as exc:
                song, status, error = empty, STATUS_ERROR, exc.describe()
            slices.append(song)
            durations.append(duration)
            statuses.append(status)
            errors.append(error)
        out = dict(batch)
        out.update(slices=as_column(slices), duration_s=as_column(durations), status=as_column(statuses),
                   error=as_column(errors))
        return out


def decode_song(uri: str, feature_cfg: FeatureConfig, audio_cfg: AudioConfig,
                root: str | None = None) -> tuple[np.ndarray, float]:
    """One song's log-mel slices and decoded duration (s); a :class:`TrackError` (naming ``uri``) when the song
    cannot be decoded or gives no complete slice."""
    audio = load_audio(uri, audio_cfg, root=root)
    duration = len(audio) / audio_cfg.sample_rate
    try:
        song = song_slices(audio, feature_cfg)
    except TooShortError as exc:
        raise TooShortError(f"{uri}: {exc}") from exc
    if len(song) == 0:
        raise TooShortError(f"{uri}: no complete {feature_cfg.slice_seconds:.2f} s slice")
    return song, duration


def as_column(values: list[Any]) -> np.ndarray:
    """A 1-D numpy column; ragged or None-holding values become an object array (Ray's numpy batch format)."""
    if values and all(isinstance(v, (int, np.integer)) for v in values):
        return np.asarray(values, dtype=np.int64)
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr
