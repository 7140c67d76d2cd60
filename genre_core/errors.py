"""Typed per-track errors. A track that fails becomes a label row with ``status=error`` and
``error = f"{exc.kind}: {exc}"``; only configuration and infrastructure errors stop a job."""

from __future__ import annotations


class TrackError(Exception):
    """Base class of every error that concerns one track (never stops a job)."""

    kind = "track_error"

    def describe(self) -> str:
        return f"{self.kind}: {self}"


class MissingObjectError(TrackError):
    kind = "missing_object"


class UnsafePathError(TrackError):
    kind = "unsafe_path"


class DecodeError(TrackError):
    kind = "decode_error"


class EmptyAudioError(TrackError):
    kind = "empty_audio"


class InvalidSamplesError(TrackError):
    """NaN or infinite samples."""

    kind = "invalid_samples"


class SilentAudioError(TrackError):
    kind = "silent_audio"


class TooShortError(TrackError):
    kind = "too_short"
