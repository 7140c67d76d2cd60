"""The genre model on the pretrained musicnn backbone: tag probabilities and features -> genre logits per slice.

A slice (one 3 s musicnn patch) goes through the frozen backbone (:mod:`genre_core.models.musicnn`), which gives
the logits of its tags (learnt from real music: the Million Song Dataset's last.fm tags) and its penultimate
features. The head turns them into genre logits::

    logits = tag_weight @ sigmoid(tag_logits) + feature_weight @ penultimate + bias

It starts as the **prior**: ``tag_weight = PRIOR_SCALE * M`` where ``M`` is the hand-written tag-to-genre map
(``data/tag_genres.yaml``, one reasoned line per tag; each genre's row of ``M`` sums to 1, so its score is the
weighted mean of its tags' probabilities), ``feature_weight = 0`` and ``bias = 0``. Training
(:mod:`genre_core.training.head`) moves it away from its starting point only as far as labelled songs pay for,
under an L2 pull back to that point: it learns what the tags lack (reggae has no tag; disco is more than
"dance") and keeps what the backbone knows about real music. The prior stays in the model as a buffer, so a
bundle carries the map it started from.

:class:`MusicnnGenreModel` has the interface of :class:`genre_core.models.cnn.SliceCNN` (``n_classes``,
``n_mels``, ``n_frames``; ``forward(slices) -> logits``), so voting, labelling and the GAN stage use either.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from genre_core.config import ConfigError
from genre_core.models.cnn import use_bf16

if TYPE_CHECKING:
    from genre_core.models.musicnn import Musicnn

PRIOR_SCALE = 10.0  # logits per unit of prior score: a tag-probability gap of 0.1 is one logit


def read_tag_map(backbone_name: str) -> list[dict[str, Any]]:
    """The entries (tag, genre, weight, why) of the tag-to-genre map for ``backbone_name``."""
    import yaml

    text = resources.files("genre_core.models").joinpath("data", "tag_genres.yaml").read_text(encoding="utf-8")
    maps = yaml.safe_load(text)
    if backbone_name not in maps:
        raise ConfigError(f"no tag-to-genre map for backbone {backbone_name!r}; maps exist for {sorted(maps)}")
    return list(maps[backbone_name])


def prior_matrix(entries: Sequence[dict[str, Any]], tags: Sequence[str], classes: Sequence[str]) -> torch.Tensor:
    """``M [n_classes, n_tags]``: the map's weights, each genre's row normalised to sum 1 (0 for an unmapped genre).

    A tag or genre the map names that the backbone or the class list lacks is a ConfigError (a typo must not
    silently drop a tag); genres of the map outside ``classes`` are skipped (a catalog may use fewer classes).
    """
    tag_index = {t: i for i, t in enumerate(tags)}
    cls_index = {c: i for i, c in enumerate(classes)}
    m = torch.zeros(len(classes), len(tags))
    for e in entries:
        if e["tag"] not in tag_index:
            raise ConfigError(f"tag map names tag {e['tag']!r}, which the backbone does not have")
        if not 0.0 < float(e["weight"]) <= 1.0:
            raise ConfigError(f"tag map weight of {e['tag']!r} -> {e['genre']!r} must be in (0, 1]: {e['weight']}")
        if e["genre"] in cls_index:
            m[cls_index[e["genre"]], tag_index[e["tag"]]] += float(e["weight"])
    sums = m.sum(dim=1, keepdim=True)
    return torch.where(sums > 0, m / sums.clamp_min(1e-12), m)


class TagPriorHead(nn.Module):
    """Genre logits from a slice's tag logits and penultimate features, initialised at the tag prior."""

    def __init__(self, prior: torch.Tensor, n_features: int) -> None:
        super().__init__()
        n_classes, n_tags = prior.shape
        self.register_buffer("prior", prior.clone().float())
        self.tag_weight = nn.Parameter(PRIOR_SCALE * prior.clone().float())
        self.feature_weight = nn.Parameter(torch.zeros(n_classes, n_features))
        self.bias = nn.Parameter(torch.zeros(n_classes))

    def forward(self, tag_logits: torch.Tensor, penultimate: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(tag_logits) @ self.tag_weight.t() + penultimate @ self.feature_weight.t()
                + self.bias)

    def prior_logits(self, tag_logits: torch.Tensor) -> torch.Tensor:
        """The logits of the prior alone (the map, no training)."""
        return PRIOR_SCALE * torch.sigmoid(tag_logits) @ self.prior.t()


class MusicnnGenreModel(nn.Module):
    """musicnn backbone + :class:`TagPriorHead`: slices ``[B, 96, 187]`` (log10(1 + 10000 mel)) -> logits."""

    def __init__(self, backbone: Musicnn, prior: torch.Tensor, precision: str = "auto") -> None:
        super().__init__()
        self.backbone = backbone
        self.precision = precision  # of the backbone's arithmetic (genre_core.models.cnn.use_bf16)
        self.head = TagPriorHead(prior, n_features=backbone.n_penultimate)
        self.n_classes = int(prior.shape[0])
        self.n_mels = backbone.n_mels
        self.n_frames = backbone.n_frames

    def backbone_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, n_tags + n_penultimate]``: the backbone's tag logits and penultimate features side by side
        (what the head reads, and what training caches once per song)."""
        if x.dim() == 4 and x.shape[1] == 1:  # [B, 1, n_mels, n_frames], as SliceCNN also takes (the GAN stage's)
            x = x[:, 0]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_bf16(x.device, self.precision)):
            tag_logits, penultimate = self.backbone(x)
        return torch.cat([tag_logits, penultimate], dim=1).float()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The slice embedding (what the head reads; the out-of-taxonomy rule's feature space)."""
        return self.backbone_outputs(x)

    def head_logits(self, outputs: torch.Tensor) -> torch.Tensor:
        """Genre logits from :meth:`backbone_outputs`."""
        n_tags = self.backbone.n_tags
        return self.head(outputs[:, :n_tags], outputs[:, n_tags:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self.backbone_outputs(x))


def new_genre_model(backbone_dir: str, classes: Sequence[str],
                    precision: str = "auto") -> tuple[MusicnnGenreModel, dict[str, Any]]:
    """A genre model at its prior on the backbone in ``backbone_dir`` (sha256 verified), and what a bundle records
    of that backbone (name, weights_sha256, source, licence, architecture, tags)."""
    from genre_core.models.musicnn import load_backbone

    backbone, meta = load_backbone(backbone_dir)
    prior = prior_matrix(read_tag_map(meta["name"]), backbone.tags, classes)
    record = {k: meta[k] for k in ("name", "weights_sha256", "source", "licence", "architecture") if k in meta}
    record["tags"] = list(backbone.tags)
    return MusicnnGenreModel(backbone, prior, precision), record
