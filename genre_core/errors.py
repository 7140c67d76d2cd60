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


class WrongExtensionError(TrackError):
    """The name's extension is not an audio one, or names another format than the content holds."""

    kind = "wrong_extension"


class UnsupportedCodecError(TrackError):
    """A recognised container or codec that the decoder cannot read (MP4/AAC, WMA, unknown WAV codec, ...)."""

    kind = "unsupported_codec"
