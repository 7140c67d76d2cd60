"""Frozen configuration dataclasses, one per concern, loaded from YAML with unknown keys rejected.

A YAML config file has one top-level section per dataclass below (``audio``, ``features``, ``cnn``,
``voting``, ``train``); any section or key may be left out to take the default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

GENRES: tuple[str, ...] = (
    "blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock",
)


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message says which and what is allowed."""


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 22050
    # Longest stretch of a file that is analysed; longer files are cut (bounded memory on huge inputs).
    max_duration_s: float = 600.0


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 20.0
    fmax: float = 11025.0
    slice_frames: int = 128          # 128 * 512 / 22050 = 2.97 s per slice
    slice_hop_frames: int = 128      # hop between slices at inference (no overlap)
    normalization: str = "per_slice"  # "per_slice" standardises each slice; "none" keeps log-mel
    # how mel power becomes a log-mel: "ln" is ln(power + 1e-6) (the from-scratch CNN's); "log10_1p" is
    # log10(1 + 10000 * power), the front end the pretrained musicnn backbone was trained on
    log_compression: str = "ln"

    @property
    def slice_seconds(self) -> float:
        return self.slice_frames * self.hop_length / self.sample_rate


@dataclass(frozen=True)
class CNNConfig:
    # "slice_cnn": the compact CNN trained from scratch (genre_core.models.cnn; channels and dropout below);
    # "musicnn": the pretrained musicnn backbone with a genre head kept close to its tags
    # (genre_core.models.genre_head; backbone below)
    arch: str = "slice_cnn"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.3
    backbone: str = "musicnn-msd"  # a folder of models/backbones/ (or a path to one), for arch "musicnn"
    # arithmetic of the model (the slice CNN in training and inference, the musicnn backbone): "auto" is bf16 where
    # the device computes it natively (a CPU with AVX512-BF16 or AMX, a CUDA card with bf16), else fp32;
    # "fp32" always; "bf16" always (slow where emulated)
    precision: str = "auto"


@dataclass(frozen=True)
class VotingConfig:
    tau: float = 0.6     # minimum share of the votes held by the top genre
    margin: float = 0.2  # minimum gap between the top two genres' shares


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 5
    val_fraction: float = 0.15
    train_slice_hop_frames: int = 64  # overlapping slices as augmentation while training


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    cnn: CNNConfig = field(default_factory=CNNConfig)
    voting: VotingConfig = field(default_factory=VotingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses; unknown keys raise."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in config section '{where or cls.__name__}'; "
            f"allowed: {sorted(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = from_dict(type(default), value, f"{where}.{name}" if where else name)
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def read_yaml(path: str) -> dict[str, Any]:
    """The top-level mapping of a YAML file (empty file: {}); anything else is a ConfigError."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(path: str | None = None) -> Config:
    """Read a YAML config file (or return the defaults when ``path`` is None)."""
    return Config() if path is None else from_dict(Config, read_yaml(path))


def fingerprint(obj: Any, length: int = 12) -> str:
    """A short stable hash of a config dataclass (used e.g. as ``feature_version``)."""
    blob = json.dumps(to_dict(obj), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
