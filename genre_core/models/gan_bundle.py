"""GAN bundles (kind ``"gan"``, through the generic helpers of :mod:`genre_core.artifacts`): safetensors weights
of the generator (and the discriminator, to resume or inspect training) plus ``bundle.json`` naming the CNN
bundle version and the feature_version the generator was trained for, and the refine parameters chosen on
validation songs (:class:`genre_core.refine.RefineParams`). Loading for another CNN bundle or feature version
raises :class:`GANBundleMismatch`: a generator's outputs mean something only to the CNN it was trained with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from genre_core import storage
from genre_core.artifacts import BundleError, load_bundle, load_cnn_bundle, save_bundle
from genre_core.config import FeatureConfig, from_dict, to_dict
from genre_core.models.gan import GANModelConfig, Generator, PatchDiscriminator
from genre_core.refine import RefineParams


class GANBundleMismatch(BundleError):
    """A GAN bundle is loaded for another CNN bundle or another feature definition than it was trained with."""


@dataclass(frozen=True)
class GANBundle:
    """Metadata of a GAN bundle (``bundle.json``). ``train_config`` is informational (a plain dict)."""

    classes: tuple[str, ...]
    model_config: GANModelConfig
    cnn_version: str
    feature_version: str
    feature_config: FeatureConfig
    n_features: int           # channels of the CNN's GAN features the generator translates
    n_frames: int
    refine: RefineParams
    train_config: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    created_at: str = ""
    weights_sha256: str = ""
    url: str = ""

    def to_json(self) -> dict[str, Any]:
        train = self.train_config
        return {
            "classes": list(self.classes),
            "model_config": to_dict(self.model_config),
            "cnn_version": self.cnn_version,
            "feature_version": self.feature_version,
            "feature_config": to_dict(self.feature_config),
            "n_features": self.n_features,
            "n_frames": self.n_frames,
            "refine": to_dict(self.refine),
            "train_config": to_dict(train) if dataclasses.is_dataclass(train) else train,
            "metrics": self.metrics,
            "version": self.version,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, meta: dict[str, Any], url: str = "") -> GANBundle:
        try:
            return cls(
                classes=tuple(meta["classes"]),
                model_config=from_dict(GANModelConfig, meta["model_config"], "model_config"),
                cnn_version=str(meta["cnn_version"]),
                feature_version=str(meta["feature_version"]),
                feature_config=from_dict(FeatureConfig, meta["feature_config"], "feature_config"),
                n_features=int(meta["n_features"]),
                n_frames=int(meta["n_frames"]),
                refine=from_dict(RefineParams, meta["refine"], "refine"),
                train_config=meta.get("train_config"),
                metrics=meta.get("metrics", {}),
                version=meta["version"],
                created_at=meta["created_at"],
                weights_sha256=meta["weights_sha256"],
                url=url,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise BundleError(f"bundle.json at {url or '?'} is incomplete or invalid (a GAN bundle of an older "
                              f"design must be trained again: python -m jobs.train gan): {exc!r}") from exc


def save_gan_bundle(url: str, generator: Generator, discriminator: PatchDiscriminator | None,
                    meta: GANBundle) -> GANBundle:
    """Write the generator (and the discriminator, when given) with ``meta`` as a ``"gan"`` bundle at ``url``."""
    if meta.n_features != generator.n_features or meta.model_config != generator.cfg:
        raise BundleError("metadata n_features/model_config differ from the generator's")
    if not meta.cnn_version or not meta.feature_version:
        raise BundleError("a GAN bundle must name the CNN bundle version and the feature_version it serves")
    tensors = {f"generator.{k}": v.contiguous() for k, v in generator.state_dict().items()}
    if discriminator is not None:
        tensors.update({f"discriminator.{k}": v.contiguous() for k, v in discriminator.state_dict().items()})
    written = save_bundle(url, "gan", tensors, meta.to_json())
    return dataclasses.replace(meta, version=written["version"], created_at=written["created_at"],
                               weights_sha256=written["weights_sha256"], url=storage.absolute(url))


def load_gan_bundle(url: str, *, cnn_version: str, feature_version: str,
                    device: str | torch.device | None = None) -> tuple[Generator, GANBundle]:
    """The generator (eval mode, on ``device``) and metadata of the GAN bundle at ``url``, for use with the CNN
    bundle ``cnn_version`` and features ``feature_version``.

    Raises :class:`GANBundleMismatch` when the bundle was trained for another CNN bundle or feature version,
    :class:`BundleError` when it is missing or corrupt.
    """
    tensors, raw = load_bundle(url, kind="gan")
    meta = GANBundle.from_json(raw, url=storage.absolute(url))
    problems = []
    if meta.cnn_version != cnn_version:
        problems.append(f"it was trained for CNN bundle {meta.cnn_version!r}, not {cnn_version!r}")
    if meta.feature_version != feature_version:
        problems.append(f"its feature_version is {meta.feature_version!r}, not {feature_version!r}")
    if problems:
        raise GANBundleMismatch(f"refusing to load GAN bundle {url}: " + "; ".join(problems)
                                + ". Train a GAN for this CNN bundle (python -m jobs.train gan --cnn ...).")
    generator = Generator(meta.model_config, n_features=meta.n_features)
    state = {k[len("generator."):]: v for k, v in tensors.items() if k.startswith("generator.")}
    if not state:
        raise BundleError(f"bundle {url} holds no generator weights")
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"generator weights of bundle {url} do not fit its model_config: {exc}") from exc
    if device is not None:
        generator.to(device)
    return generator.eval(), meta


def save_untrained_bundle(cnn_url: str, out: str, seed: int = 0,
                          refine: RefineParams | None = None) -> str:
    """Write to ``out`` a GAN bundle for the CNN bundle at ``cnn_url`` whose generator is untrained (the
    identity: its last layer starts at zero) and whose other layers are seeded.

    For what does not depend on the weights: where the GAN stage runs and what it receives (tests) and what it
    costs (benchmarks/gan_cost.py). Returns ``out``.
    """
    model, cnn = load_cnn_bundle(cnn_url)
    torch.manual_seed(seed)
    cfg = GANModelConfig()
    generator = Generator(cfg, n_features=model.n_gan_features).eval()
    save_gan_bundle(out, generator, None, GANBundle(
        classes=cnn.classes, model_config=cfg, cnn_version=cnn.version, feature_version=cnn.feature_version,
        feature_config=cnn.feature_config, n_features=model.n_gan_features, n_frames=cnn.n_frames,
        refine=refine or RefineParams()))
    return out
