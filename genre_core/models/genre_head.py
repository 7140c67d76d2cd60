"""The genre model on the pretrained musicnn backbone: tag probabilities and features -> genre logits per slice.

A slice (one 3 s musicnn patch) goes through the frozen backbone (:mod:`genre_core.models.musicnn`), which gives
the logits of its tags (learnt from real music: the Million Song Dataset's last.fm tags), its penultimate
features and its pooled features (the max and mean over time of every front-end and mid-end feature: what
musicnn's authors found to transfer best to other tasks). The head turns them into genre logits::

    logits = tag_weight @ sigmoid(tag_logits) + feature_weight @ penultimate
             + pooled_weight @ standardized(pooled) + bias

where ``standardized`` uses the backbone's own batch-norm statistics of the pooled features (the running mean
and variance of musicnn's ``bn_pool``, learnt on real music), so that every pooled feature has unit scale and one
L2 pull means the same for all of them. It starts as the **prior**: ``tag_weight = PRIOR_SCALE * M`` where ``M``
is the hand-written tag-to-genre map (``data/tag_genres.yaml``, one reasoned line per tag; each genre's row of
``M`` sums to 1, so its score is the weighted mean of its tags' probabilities), ``feature_weight = 0``,
``pooled_weight = 0`` and ``bias = 0``. Training
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


def outside_tag_columns(backbone: dict[str, Any]) -> list[int]:
    """The columns, in the slice embedding (:meth:`MusicnnGenreModel.embed`: the tag logits come first), of the
    backbone's tags that name styles outside the taxonomy (``data/outside_tags.yaml``); ``backbone`` is what a
    bundle records of its backbone (``name``, ``tags``). Empty for a backbone the file does not list."""
    import yaml

    text = resources.files("genre_core.models").joinpath("data", "outside_tags.yaml").read_text(encoding="utf-8")
    entries = yaml.safe_load(text).get(backbone.get("name"), [])
    tags = list(backbone.get("tags", []))
    missing = [e["tag"] for e in entries if e["tag"] not in tags]
    if missing:
        raise ConfigError(f"outside_tags.yaml names tags {missing} that backbone {backbone.get('name')!r} lacks")
    return [tags.index(e["tag"]) for e in entries]


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
    """Genre logits from a slice's backbone outputs (tag logits, penultimate and pooled features side by side,
    ``[B, n_tags + n_penultimate + n_pooled]``: :meth:`MusicnnGenreModel.backbone_outputs`), initialised at the tag
    prior. ``pooled_mean``/``pooled_std`` standardise the pooled features (the backbone's ``bn_pool`` statistics)."""

    def __init__(self, prior: torch.Tensor, n_penultimate: int, pooled_mean: torch.Tensor,
                 pooled_std: torch.Tensor) -> None:
        super().__init__()
        n_classes, n_tags = prior.shape
        n_pooled = len(pooled_mean)
        self.n_tags, self.n_penultimate, self.n_pooled = n_tags, n_penultimate, n_pooled
        self.register_buffer("prior", prior.clone().float())
        self.register_buffer("pooled_mean", pooled_mean.detach().clone().float())
        self.register_buffer("pooled_std", pooled_std.detach().clone().float())
        self.tag_weight = nn.Parameter(PRIOR_SCALE * prior.clone().float())
        self.feature_weight = nn.Parameter(torch.zeros(n_classes, n_penultimate))
        self.pooled_weight = nn.Parameter(torch.zeros(n_classes, n_pooled))
        self.bias = nn.Parameter(torch.zeros(n_classes))

    @property
    def n_inputs(self) -> int:
        return self.n_tags + self.n_penultimate + self.n_pooled

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        tags, pen, pooled = outputs.split([self.n_tags, self.n_penultimate, self.n_pooled], dim=1)
        return (torch.sigmoid(tags) @ self.tag_weight.t() + pen @ self.feature_weight.t()
                + ((pooled - self.pooled_mean) / self.pooled_std) @ self.pooled_weight.t() + self.bias)

    def prior_logits(self, outputs: torch.Tensor) -> torch.Tensor:
        """The logits of the prior alone (the map, no training)."""
        return PRIOR_SCALE * torch.sigmoid(outputs[:, :self.n_tags]) @ self.prior.t()


class MusicnnGenreModel(nn.Module):
    """musicnn backbone + :class:`TagPriorHead`: slices ``[B, 96, 187]`` (log10(1 + 10000 mel)) -> logits."""

    def __init__(self, backbone: Musicnn, prior: torch.Tensor, precision: str = "auto") -> None:
        super().__init__()
        self.backbone = backbone
        self.precision = precision  # of the backbone's arithmetic (genre_core.models.cnn.use_bf16)
        bn = backbone.bn_pool
        self.head = TagPriorHead(prior, backbone.n_penultimate, bn.running_mean,
                                 torch.sqrt(bn.running_var + bn.eps))
        self.n_classes = int(prior.shape[0])
        self.n_mels = backbone.n_mels
        self.n_frames = backbone.n_frames

    def backbone_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, n_tags + n_penultimate + n_pooled]``: the backbone's tag logits, penultimate and pooled features
        side by side (what the head reads, and what training caches once per song)."""
        if x.dim() == 4 and x.shape[1] == 1:  # [B, 1, n_mels, n_frames], as SliceCNN also takes (the GAN stage's)
            x = x[:, 0]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_bf16(x.device, self.precision)):
            outputs = self.backbone(x)
        return torch.cat(outputs, dim=1).float()

    @property
    def n_gan_features(self) -> int:
        """Channels of :meth:`gan_features`: musicnn's front-end features."""
        return self.backbone.n_front

    def gan_features(self, x: torch.Tensor) -> torch.Tensor:
        """Slices ``[B, n_mels, n_frames]`` (or ``[B, 1, n_mels, n_frames]``) -> the backbone's front-end features
        ``[B, 561, n_frames]`` in float32: what the GAN stage translates (:mod:`genre_core.models.gan`)."""
        if x.dim() == 4 and x.shape[1] == 1:
            x = x[:, 0]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_bf16(x.device, self.precision)):
            return self.backbone.front_end(x).float()

    def logits_from_gan_features(self, f: torch.Tensor) -> torch.Tensor:
        """Genre logits of (translated) front-end features: the rest of the network, differentiable in ``f``;
        ``logits_from_gan_features(gan_features(x))`` is ``forward(x)`` (to bf16 rounding where bf16 runs)."""
        with torch.autocast(f.device.type, dtype=torch.bfloat16, enabled=use_bf16(f.device, self.precision)):
            outputs = self.backbone.back_end(f)
        return self.head(torch.cat(outputs, dim=1).float())

    def bf16_on(self, device: torch.device) -> bool:
        """Whether the backbone computes in bf16 on ``device`` (``precision``; autocast)."""
        return use_bf16(device, self.precision)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The slice embedding (what the head reads; the out-of-taxonomy rule's feature space)."""
        return self.backbone_outputs(x)

    def head_logits(self, outputs: torch.Tensor) -> torch.Tensor:
        """Genre logits from :meth:`backbone_outputs`."""
        return self.head(outputs)

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
