"""GAN bundles (kind ``"gan"``, through the generic helpers of :mod:`genre_core.artifacts`): safetensors weights
of one generator per reference soundfont (and their discriminators, to resume or inspect training) plus
``bundle.json`` naming the reference of each generator, the CNN bundle version and the feature_version they were
trained for, and the refine parameters chosen on validation songs for their averaged votes
(:class:`genre_core.refine.RefineParams`). Loading for another CNN bundle or feature version raises
:class:`GANBundleMismatch`: a generator's outputs mean something only to the CNN it was trained with.

Generator ``k``'s tensors are ``generator.k.*`` (its discriminator's ``discriminator.k.*``); ``references[k]`` names
the soundfont its clean targets were rendered through, and ``metrics["generators"][k]`` its training record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
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
    """Metadata of a GAN bundle (``bundle.json``). ``train_config`` (of the last generator trained) is informational
    (a plain dict)."""

    classes: tuple[str, ...]
    references: tuple[str, ...]   # the reference soundfont of each generator, in the order of the weights
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
            "references": list(self.references),
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
                references=tuple(str(r) for r in meta["references"]),
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


def save_gan_bundle(url: str, generators: Sequence[Generator],
                    discriminators: Sequence[PatchDiscriminator | None], meta: GANBundle) -> GANBundle:
    """Write the generators (and the discriminators that are not None, one slot per generator) with ``meta`` as a
    ``"gan"`` bundle at ``url``."""
    if not generators or len(generators) != len(meta.references) or len(discriminators) != len(generators):
        raise BundleError(f"{len(generators)} generators, {len(discriminators)} discriminator slots and "
                          f"{len(meta.references)} references: a bundle holds one of each per generator (at least one)")
    if any(meta.n_features != g.n_features or meta.model_config != g.cfg for g in generators):
        raise BundleError("metadata n_features/model_config differ from a generator's")
    if not meta.cnn_version or not meta.feature_version:
        raise BundleError("a GAN bundle must name the CNN bundle version and the feature_version it serves")
    tensors = {}
    for k, (g, d) in enumerate(zip(generators, discriminators, strict=True)):
        tensors.update({f"generator.{k}.{n}": v.contiguous() for n, v in g.state_dict().items()})
        if d is not None:
            tensors.update({f"discriminator.{k}.{n}": v.contiguous() for n, v in d.state_dict().items()})
    written = save_bundle(url, "gan", tensors, meta.to_json())
    return dataclasses.replace(meta, version=written["version"], created_at=written["created_at"],
                               weights_sha256=written["weights_sha256"], url=storage.absolute(url))


def _modules(tensors: dict[str, torch.Tensor], part: str, k: int, module: torch.nn.Module, url: str) -> bool:
    """Load ``part.k.*`` of ``tensors`` into ``module``; False when the bundle holds none."""
    prefix = f"{part}.{k}."
    state = {n[len(prefix):]: v for n, v in tensors.items() if n.startswith(prefix)}
    if not state:
        return False
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"{part} {k} of bundle {url} does not fit its model_config: {exc}") from exc
    return True


def load_gan_bundle(url: str, *, cnn_version: str, feature_version: str, device: str | torch.device | None = None,
                    ) -> tuple[list[Generator], GANBundle]:
    """The generators (eval mode, on ``device``, one per reference) and metadata of the GAN bundle at ``url``, for
    use with the CNN bundle ``cnn_version`` and features ``feature_version``.

    Raises :class:`GANBundleMismatch` when the bundle was trained for another CNN bundle or feature version,
    :class:`BundleError` when it is missing or corrupt.
    """
    generators, _, meta = _load(url, cnn_version, feature_version, discriminators=False)
    if device is not None:
        for g in generators:
            g.to(device)
    return generators, meta


def load_gan_models(url: str, *, cnn_version: str, feature_version: str,
                    ) -> tuple[list[Generator], list[PatchDiscriminator | None], GANBundle]:
    """:func:`load_gan_bundle` on the CPU with the discriminators (None where the bundle holds none): what a
    training that adds a generator to the bundle carries over (``genre-job train gan --with``)."""
    return _load(url, cnn_version, feature_version, discriminators=True)


def _load(url: str, cnn_version: str, feature_version: str, *, discriminators: bool,
          ) -> tuple[list[Generator], list[PatchDiscriminator | None], GANBundle]:
    """The bundle's generators, and its discriminators only when asked (the labelling job never builds them)."""
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
    generators: list[Generator] = []
    kept: list[PatchDiscriminator | None] = []
    for k in range(len(meta.references)):
        g = Generator(meta.model_config, n_features=meta.n_features)
        if not _modules(tensors, "generator", k, g, url):
            raise BundleError(f"bundle {url} names {len(meta.references)} references but holds no weights of "
                              f"generator {k}")
        generators.append(g.eval())
        if discriminators:
            d = PatchDiscriminator(meta.model_config, n_features=meta.n_features)
            kept.append(d.eval() if _modules(tensors, "discriminator", k, d, url) else None)
    return generators, kept, meta


def save_untrained_bundle(cnn_url: str, out: str, seed: int = 0, refine: RefineParams | None = None,
                          n_generators: int = 1) -> str:
    """Write to ``out`` a GAN bundle for the CNN bundle at ``cnn_url`` whose ``n_generators`` generators are
    untrained (the identity: their last layer starts at zero) and whose other layers are seeded.

    For what does not depend on the weights: where the GAN stage runs and what it receives (tests) and what it
    costs (benchmarks/gan_cost.py). Returns ``out``.
    """
    model, cnn = load_cnn_bundle(cnn_url)
    torch.manual_seed(seed)
    cfg = GANModelConfig()
    generators = [Generator(cfg, n_features=model.n_gan_features).eval() for _ in range(n_generators)]
    save_gan_bundle(out, generators, [None] * n_generators, GANBundle(
        classes=cnn.classes, references=tuple(f"untrained-{k}" for k in range(n_generators)), model_config=cfg,
        cnn_version=cnn.version, feature_version=cnn.feature_version, feature_config=cnn.feature_config,
        n_features=model.n_gan_features, n_frames=cnn.n_frames, refine=refine or RefineParams()))
    return out
