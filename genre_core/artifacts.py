"""Model bundles: a directory (local path or s3:// URL) holding ``weights.safetensors`` and ``bundle.json``.

``bundle.json`` carries everything needed to rebuild and trust the model: its kind ("cnn", later "gan"),
a version string, the class list, the configs it was built with, metrics, versions of the data and
features it saw, and the sha256 of the weights file. Loading verifies that hash and reads tensors with
safetensors only: nothing is ever unpickled.

The generic pair :func:`save_bundle` / :func:`load_bundle` works on a flat ``{name: tensor}`` mapping and a
JSON-ready dict, so a GAN bundle reuses them with its own dataclass on top.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from genre_core import storage
from genre_core.calibration import Calibration
from genre_core.config import CNNConfig, FeatureConfig, VotingConfig, from_dict, to_dict
from genre_core.models.cnn import SliceCNN
from genre_core.outside import OutsideRule, stats_from_tensors

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "bundle.json"
CNN_ARCHS = ("slice_cnn", "musicnn")
BUNDLE_FORMAT = 1
OUTSIDE_PREFIX = "outside."  # tensors of the out-of-taxonomy rule's statistics, beside the model's in the weights


class BundleError(RuntimeError):
    """A model bundle is missing, of the wrong kind, corrupted or tampered with."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_version(kind: str, digest: str, created_at: str) -> str:
    """A readable, unique version string: ``<kind>-<UTC timestamp>-<first 8 hex of the weights hash>``."""
    stamp = created_at.replace("-", "").replace(":", "").replace("+00:00", "Z")
    return f"{kind}-{stamp}-{digest[:8]}"


def utc_now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def save_bundle(url: str, kind: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``tensors`` (safetensors) and ``meta`` (+ kind, format, created_at, sha256, version) under ``url``.

    The weights are written first and ``bundle.json`` last, so a reader that finds ``bundle.json`` finds the
    weights it describes. Returns the metadata as written.
    """
    blob = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    digest = sha256_hex(blob)
    full = dict(meta)
    full["kind"] = kind
    full["format"] = BUNDLE_FORMAT
    full["created_at"] = full.get("created_at") or utc_now_iso()
    full["weights_sha256"] = digest
    full["version"] = full.get("version") or make_version(kind, digest, full["created_at"])
    storage.makedirs(url)
    storage.write_bytes(storage.join(url, WEIGHTS_FILE), blob)
    storage.write_bytes(storage.join(url, META_FILE), json.dumps(full, indent=2, sort_keys=True).encode())
    return full


def read_bundle_meta(url: str) -> dict[str, Any]:
    """Only the ``bundle.json`` of the bundle at ``url`` (no weights read, nothing verified); BundleError when
    it is missing or not JSON."""
    try:
        return json.loads(storage.read_bytes(storage.join(url, META_FILE)))
    except FileNotFoundError as exc:
        raise BundleError(f"no model bundle at {url}: {META_FILE} not found") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{storage.join(url, META_FILE)} is not valid JSON: {exc}") from exc


def load_bundle(url: str, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a bundle: verify its kind and the weights' sha256, then load the tensors with safetensors."""
    meta = read_bundle_meta(url)
    if kind is not None and meta.get("kind") != kind:
        raise BundleError(f"bundle at {url} is of kind {meta.get('kind')!r}, expected {kind!r}")
    try:
        blob = storage.read_bytes(storage.join(url, WEIGHTS_FILE))
    except FileNotFoundError as exc:
        raise BundleError(f"bundle at {url} has no {WEIGHTS_FILE}") from exc
    digest = sha256_hex(blob)
    if digest != meta.get("weights_sha256"):
        raise BundleError(
            f"weights of bundle {url} fail the integrity check: sha256 {digest} != "
            f"{meta.get('weights_sha256')} recorded in {META_FILE} (file modified or corrupted); refusing to load"
        )
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{WEIGHTS_FILE} of bundle {url} is not a valid safetensors file: {exc}") from exc
    return tensors, meta


@dataclass(frozen=True)
class CNNBundle:
    """Metadata of a CNN bundle (everything in ``bundle.json``)."""

    classes: tuple[str, ...]
    feature_config: FeatureConfig
    cnn_config: CNNConfig
    voting: VotingConfig
    feature_version: str
    catalog_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    n_mels: int = 128
    n_frames: int = 128
    # for cnn_config.arch "musicnn": the backbone the model was built on (name, weights_sha256, source, licence,
    # architecture, tags), as its backbone.json says
    backbone: dict[str, Any] = field(default_factory=dict)
    # fitted on validation songs by `genre-job calibrate` (genre_core.calibration, genre_core.outside); None in a
    # bundle that has not been calibrated: its labels then have no confidence and no out-of-taxonomy rule
    calibration: Calibration | None = None
    outside: OutsideRule | None = None
    version: str = ""
    created_at: str = ""
    weights_sha256: str = ""
    url: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "feature_config": to_dict(self.feature_config),
            "cnn_config": to_dict(self.cnn_config),
            "voting": to_dict(self.voting),
            "feature_version": self.feature_version,
            "catalog_fingerprint": self.catalog_fingerprint,
            "metrics": self.metrics,
            "n_mels": self.n_mels,
            "n_frames": self.n_frames,
            "backbone": self.backbone,
            "calibration": self.calibration.to_json() if self.calibration is not None else None,
            "outside": self.outside.to_json() if self.outside is not None else None,
            "version": self.version,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, meta: dict[str, Any], url: str = "") -> CNNBundle:
        try:
            return cls(
                classes=tuple(meta["classes"]),
                feature_config=from_dict(FeatureConfig, meta["feature_config"], "feature_config"),
                cnn_config=from_dict(CNNConfig, meta["cnn_config"], "cnn_config"),
                voting=from_dict(VotingConfig, meta["voting"], "voting"),
                feature_version=meta["feature_version"],
                catalog_fingerprint=meta.get("catalog_fingerprint", ""),
                metrics=meta.get("metrics", {}),
                n_mels=int(meta["n_mels"]),
                n_frames=int(meta["n_frames"]),
                backbone=dict(meta.get("backbone", {})),
                calibration=Calibration.from_json(meta["calibration"]) if meta.get("calibration") else None,
                # a bundle calibrated before the rule weighed the confidence has no weight (0: the score alone)
                outside=OutsideRule(score=meta["outside"]["score"], threshold=float(meta["outside"]["threshold"]),
                                    confidence_weight=float(meta["outside"].get("confidence_weight", 0.0)),
                                    undecided_threshold=meta["outside"].get("undecided_threshold"),
                                    selection=meta["outside"].get("selection")) if meta.get("outside") else None,
                version=meta["version"],
                created_at=meta["created_at"],
                weights_sha256=meta["weights_sha256"],
                url=url,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise BundleError(f"bundle.json at {url or '?'} is incomplete or invalid: {exc!r}") from exc


def build_cnn_model(meta: CNNBundle) -> nn.Module:
    """An untrained model of the architecture ``meta`` describes (``cnn_config.arch``), ready for its weights."""
    arch = meta.cnn_config.arch
    if arch == "slice_cnn":
        return SliceCNN(len(meta.classes), meta.cnn_config, n_mels=meta.n_mels, n_frames=meta.n_frames)
    if arch == "musicnn":
        from genre_core.models.genre_head import MusicnnGenreModel
        from genre_core.models.musicnn import Musicnn

        if not meta.backbone.get("architecture") or not meta.backbone.get("tags"):
            raise BundleError("a musicnn bundle must name its backbone's architecture and tags in bundle.json")
        backbone = Musicnn(tags=tuple(meta.backbone["tags"]), **meta.backbone["architecture"])
        return MusicnnGenreModel(backbone, torch.zeros(len(meta.classes), backbone.n_tags),
                                 precision=meta.cnn_config.precision)
    raise BundleError(f"unknown cnn_config.arch {arch!r}; allowed: {list(CNN_ARCHS)}")


def save_cnn_bundle(url: str, model: nn.Module, meta: CNNBundle) -> CNNBundle:
    """Save ``model`` with ``meta`` as a CNN bundle at ``url``; returns the metadata with version/hash filled."""
    if len(meta.classes) != model.n_classes:
        raise BundleError(f"{len(meta.classes)} classes in metadata but the model has {model.n_classes} outputs")
    if (meta.n_mels, meta.n_frames) != (model.n_mels, model.n_frames):
        raise BundleError("metadata slice shape differs from the model's")
    tensors = dict(model.state_dict())
    if meta.outside is not None and meta.outside.stats is not None:
        tensors.update({OUTSIDE_PREFIX + k: torch.from_numpy(np.ascontiguousarray(v))
                        for k, v in meta.outside.stats.tensors().items()})
    written = save_bundle(url, "cnn", tensors, meta.to_json())
    return dataclasses.replace(
        meta, version=written["version"], created_at=written["created_at"],
        weights_sha256=written["weights_sha256"], url=storage.absolute(url),
    )


def load_cnn_bundle(url: str, device: str | torch.device | None = None) -> tuple[nn.Module, CNNBundle]:
    """Load a CNN bundle: ``(model in eval mode on device, metadata)``. Verifies the weights' sha256."""
    tensors, raw = load_bundle(url, kind="cnn")
    meta = CNNBundle.from_json(raw, url=storage.absolute(url))
    stats = {k[len(OUTSIDE_PREFIX):]: tensors.pop(k).numpy() for k in list(tensors) if k.startswith(OUTSIDE_PREFIX)}
    if meta.outside is not None and meta.outside.needs_embeddings:
        if not stats:
            raise BundleError(f"bundle {url}: its out-of-taxonomy rule ({meta.outside.score}) needs the training "
                              f"songs' statistics, which its {WEIGHTS_FILE} lacks")
        meta = dataclasses.replace(meta, outside=dataclasses.replace(
            meta.outside, stats=stats_from_tensors(meta.outside.score, stats)))
    model = build_cnn_model(meta)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"weights of bundle {url} do not fit its cnn_config: {exc}") from exc
    if device is not None:
        model.to(device)
    if isinstance(model, SliceCNN) and next(model.parameters()).device.type == "cpu":
        # on a CPU, oneDNN's convolutions and max-pooling run 3x faster on channels-last weights (1 input channel:
        # the slices need no conversion); the outputs differ from the default layout by float rounding only
        model.to(memory_format=torch.channels_last)
    model.eval()
    return model, meta
