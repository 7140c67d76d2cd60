"""Which model bundles a job uses: a folder with ``cnn/`` and, optionally, ``gan/``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from genre_core import storage
from genre_core.artifacts import load_cnn_bundle
from genre_core.config import FeatureConfig
from genre_core.features import feature_version

DEFAULT_MODELS = str(Path(__file__).resolve().parents[1] / "models" / "default")
BACKBONES = Path(__file__).resolve().parents[1] / "models" / "backbones"


@dataclass(frozen=True)
class ModelSet:
    cnn_url: str
    gan_url: str | None
    cnn_version: str
    gan_version: str | None
    feature_version: str
    feature_config: FeatureConfig
    classes: list[str]


def resolve_models(models: str | None, use_gan: bool = True) -> ModelSet:
    """Check the bundles under ``models`` (default: $GENRE_TAGGER_MODELS or the repo's models/default) and
    read their versions. ``models`` may also be a CNN bundle folder itself (then there is no GAN). Raises
    FileNotFoundError with what to do when the CNN bundle is missing."""
    root, cnn_url = bundle_urls(models)
    if cnn_url == root:
        use_gan = False  # a CNN bundle folder itself, e.g. models/default/cnn: no GAN
    if not _exists(storage.join(cnn_url, "bundle.json")):
        raise FileNotFoundError(
            f"no CNN bundle at {cnn_url} (expected {cnn_url}/bundle.json). Train one with "
            f"`genre-job train cnn --catalog CATALOG --out {cnn_url}` or pass --models FOLDER."
        )
    _, cnn = load_cnn_bundle(cnn_url)
    gan_url, gan_version = None, None
    if use_gan:
        if _exists(storage.join(root, "gan", "bundle.json")):
            from genre_core.stages import load_gan_for

            gan_url = storage.join(root, "gan")
            gan_version = load_gan_for(gan_url, cnn)[1].version
    return ModelSet(cnn_url=cnn_url, gan_url=gan_url, cnn_version=cnn.version, gan_version=gan_version,
                    feature_version=feature_version(cnn.feature_config), feature_config=cnn.feature_config,
                    classes=list(cnn.classes))


def bundle_urls(models: str | None) -> tuple[str, str]:
    """(models root, CNN bundle URL) for ``models`` (default: $GENRE_TAGGER_MODELS, else the repo's
    models/default); ``models`` may be a models folder (CNN bundle in ``cnn/``) or a CNN bundle folder itself."""
    root = storage.absolute(models or os.environ.get("GENRE_TAGGER_MODELS") or DEFAULT_MODELS)
    cnn_url = storage.join(root, "cnn")
    if _exists(storage.join(root, "bundle.json")) and not _exists(storage.join(cnn_url, "bundle.json")):
        return root, root
    return root, cnn_url


def backbone_dir(name: str) -> str:
    """A pretrained backbone's folder: ``name`` itself when it is a folder, else the repo's models/backbones/NAME."""
    return name if os.path.isdir(name) else str(BACKBONES / name)


def _exists(url: str) -> bool:
    fs, path = storage.filesystem(url)
    return fs.exists(path)
