"""The out-of-taxonomy rule: a song whose slices look unlike the songs of every genre is left unclassified.

A catalog holds far more than the ten genres (folk, latin, electronic, ambient, gospel, ...). The vote rule
(:mod:`genre_core.voting`) only leaves a song unclassified when its slices disagree; a folk song whose slices all
lean to country would come out ``classified``. So every song also gets an **out-of-distribution score** of its
slices, higher meaning further from what the model was trained on, and a song whose score passes a threshold is
``unclassified`` with reason ``outside_taxonomy``, whatever its votes say.

Scores (:data:`SCORES`), each a pure function of the song's slice logits ``[n, C]`` and slice embeddings
``[n, D]`` (the model's features before its genre layer, :func:`genre_core.inference.slice_outputs`):

* ``vote_share``: minus the top genre's share of the votes (the vote rule's own quantity);
* ``max_logit``: minus the mean over slices of the largest genre logit (Hendrycks et al. 2022);
* ``energy``: minus the mean over slices of ``logsumexp`` of the genre logits (Liu et al. 2020);
* ``feature_distance``: the Mahalanobis distance of the song's mean embedding to the nearest genre's mean, with
  one covariance shared by the genres, all fitted on the training songs (Lee et al. 2018): the standardised
  song embedding ``x``, ``min over genres k of (x - mu_k)^T P (x - mu_k)``, ``P`` the inverse of the pooled
  within-genre covariance plus a ridge;
* ``outside_tags`` (a musicnn backbone only): the backbone's tags that name styles outside the taxonomy (folk,
  ambient, House, electronic, ...: ``genre_core/models/data/outside_tags.yaml``), each tag's probability averaged
  over the song's slices and standardised by its mean and standard deviation over the training songs; the score
  is the largest of them. It asks what the backbone learnt from real records of those styles, which the genre
  head was never trained on: "this sounds more like an ambient record than any training song of the ten genres".

Which score and which threshold: :func:`compare_scores` scores validation songs of the taxonomy and validation
songs of styles outside it (never test songs), and :func:`choose_threshold` applies the target written down
before choosing: the lowest threshold at which at most ``max_coverage_drop`` of the in-taxonomy validation songs
that the vote rule classifies are turned away, i.e. as many outside songs caught as that loss of coverage allows.
The eligible score (:data:`ELIGIBLE`) that catches the most outside validation songs at its threshold wins (ties:
the higher AUROC).
``genre-job calibrate`` runs this and records the rule in the model bundle (:class:`OutsideRule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genre_core.calibration import log_softmax
from genre_core.voting import decide

SCORES: tuple[str, ...] = ("vote_share", "max_logit", "energy", "feature_distance", "outside_tags")
# vote_share is in the comparison as the baseline only: the vote rule already thresholds it (tau), so as an
# out-of-taxonomy score it would merely raise tau and call ambiguous songs outside the taxonomy
ELIGIBLE: tuple[str, ...] = ("max_logit", "energy", "feature_distance", "outside_tags")
RIDGE = 0.1  # added to the diagonal of the pooled covariance of the standardised embeddings


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1)
    return m + np.log(np.exp(z - m[:, None]).sum(axis=1))


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """What ``feature_distance`` needs of the training songs (arrays ``float32``, stored in the model bundle)."""

    mean: np.ndarray         # [D] mean of the training songs' embeddings
    scale: np.ndarray        # [D] their standard deviation (+1e-6)
    class_means: np.ndarray  # [C', D] the mean standardised embedding of each genre with training songs
    precision: np.ndarray    # [D, D] inverse of the pooled within-genre covariance + RIDGE * I

    def distance(self, embeddings: np.ndarray) -> float:
        x = (np.asarray(embeddings, np.float64).mean(axis=0) - self.mean) / self.scale
        d = x[None, :] - self.class_means
        return float(np.einsum("kd,de,ke->k", d, self.precision.astype(np.float64), d).min())

    def tensors(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "scale": self.scale, "class_means": self.class_means, "precision": self.precision}


def fit_feature_stats(embeddings: Sequence[np.ndarray], labels: Sequence[int]) -> FeatureStats:
    """:class:`FeatureStats` of training songs (``embeddings[i]``: song i's slice embeddings, ``labels[i]``: genre)."""
    x = np.stack([np.asarray(e, np.float64).mean(axis=0) for e in embeddings])
    y = np.asarray(labels)
    present = sorted(set(y.tolist()))  # a genre without training songs has no mean (none to be near)
    if not present:
        raise ValueError("feature statistics need training songs")
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    class_means = np.stack([z[y == k].mean(axis=0) for k in present])
    resid = z - class_means[np.searchsorted(present, y)]
    cov = resid.T @ resid / len(z) + RIDGE * np.eye(z.shape[1])
    return FeatureStats(mean.astype(np.float32), scale.astype(np.float32), class_means.astype(np.float32),
                        np.linalg.inv(cov).astype(np.float32))


@dataclass(frozen=True, eq=False)
class TagStats:
    """What ``outside_tags`` needs (stored in the model bundle): the embedding ``columns`` holding the logits of
    the tags that name outside styles, and those tags' mean probability and its spread over the training songs."""

    columns: np.ndarray  # [K] int64
    mean: np.ndarray     # [K] float32
    scale: np.ndarray    # [K] float32, standard deviation + 1e-6

    def score(self, embeddings: np.ndarray) -> float:
        return float(((tag_probabilities(embeddings, self.columns) - self.mean) / self.scale).max())

    def tensors(self) -> dict[str, np.ndarray]:
        return {"columns": self.columns, "mean": self.mean, "scale": self.scale}


def tag_probabilities(embeddings: np.ndarray, columns: Sequence[int] | np.ndarray) -> np.ndarray:
    """``[K]``: the sigmoid probability of the tags whose logits are the embedding ``columns``, averaged over the
    song's slices."""
    z = np.asarray(embeddings, np.float64)[:, np.asarray(columns, np.int64)]
    return (1.0 / (1.0 + np.exp(-z))).mean(axis=0)


def fit_tag_stats(embeddings: Sequence[np.ndarray], columns: Sequence[int]) -> TagStats:
    """:class:`TagStats` of training songs (``embeddings[i]``: song i's slice embeddings) for the tag ``columns``."""
    if not len(columns):
        raise ValueError("outside_tags needs the columns of at least one tag")
    p = np.stack([tag_probabilities(e, columns) for e in embeddings])
    return TagStats(np.asarray(columns, np.int64), p.mean(axis=0).astype(np.float32),
                    (p.std(axis=0) + 1e-6).astype(np.float32))


def stats_from_tensors(score: str, tensors: dict[str, np.ndarray]) -> FeatureStats | TagStats:
    """The statistics of an out-of-taxonomy rule on score ``score``, from the tensors a bundle stored."""
    return TagStats(**tensors) if score == "outside_tags" else FeatureStats(**tensors)


def song_score(kind: str, logits: np.ndarray, embeddings: np.ndarray | None = None,
               stats: FeatureStats | TagStats | None = None) -> float:
    """The song's out-of-distribution score ``kind`` (higher = further outside) from its slice logits
    ``[n, C]`` (and, for ``feature_distance`` and ``outside_tags``, its slice embeddings ``[n, D]`` and the
    training songs' statistics: :class:`FeatureStats`, :class:`TagStats`)."""
    z = np.asarray(logits, np.float64)
    if kind == "vote_share":
        return -float(np.exp(log_softmax(z)).mean(axis=0).max())
    if kind == "max_logit":
        return -float(z.max(axis=1).mean())
    if kind == "energy":
        return -float(_logsumexp(z).mean())
    if kind == "feature_distance":
        if embeddings is None or stats is None:
            raise ValueError("feature_distance needs the song's embeddings and the training songs' statistics")
        return stats.distance(embeddings)
    if kind == "outside_tags":
        if embeddings is None or not isinstance(stats, TagStats):
            raise ValueError("outside_tags needs the song's embeddings and the training songs' tag statistics")
        return stats.score(embeddings)
    raise ValueError(f"unknown out-of-distribution score {kind!r}; known: {list(SCORES)}")


@dataclass(frozen=True, eq=False)
class OutsideRule:
    """A song is outside the taxonomy when its ``score`` is above ``threshold`` (both chosen on validation songs)."""

    score: str
    threshold: float
    stats: FeatureStats | TagStats | None = None  # for feature_distance, outside_tags
    selection: dict[str, Any] | None = None  # how it was chosen (the comparison table), as recorded in the bundle

    @property
    def needs_embeddings(self) -> bool:
        return self.score in ("feature_distance", "outside_tags")

    def song_score(self, logits: np.ndarray, embeddings: np.ndarray | None = None) -> float:
        return song_score(self.score, logits, embeddings, self.stats)

    def is_outside(self, score: float) -> bool:
        return bool(score > self.threshold)

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "threshold": self.threshold, "selection": self.selection or {}}


def auroc(inside: Sequence[float], outside: Sequence[float]) -> float:
    """P(an outside song scores above an inside one), ties counting half (Mann-Whitney); NaN if a side is empty."""
    a, b = np.asarray(inside, np.float64), np.asarray(outside, np.float64)
    if not len(a) or not len(b):
        return float("nan")
    above = (b[:, None] > a[None, :]).sum() + 0.5 * (b[:, None] == a[None, :]).sum()
    return float(above / (len(a) * len(b)))


def choose_threshold(inside: Sequence[float], inside_decided: Sequence[bool], max_coverage_drop: float) -> float:
    """The lowest threshold that turns away at most ``max_coverage_drop`` (a share of all ``inside`` songs) of the
    inside songs the vote rule decides (``inside_decided``): the ``k+1``-th highest score among them, ``k`` the
    number allowed; +inf when there are none."""
    s = np.asarray(inside, np.float64)[np.asarray(inside_decided, bool)]
    k = int(np.floor(max_coverage_drop * len(inside) + 1e-9))
    if k >= len(s):
        return float(np.min(s)) - 1.0 if len(s) else float("inf")
    return float(np.sort(s)[::-1][k])


def rule_figures(scores_in: np.ndarray, decided_in: np.ndarray, right_in: np.ndarray, scores_out: np.ndarray,
                 decided_out: np.ndarray, threshold: float) -> dict[str, float]:
    """Coverage and accuracy on decided songs of the inside songs, and the share of outside songs left unclassified,
    without and with the rule at ``threshold``."""
    kept_in = decided_in & ~(scores_in > threshold)
    kept_out = decided_out & ~(scores_out > threshold)

    def acc(mask: np.ndarray) -> float:
        return float(right_in[mask].mean()) if mask.any() else float("nan")

    return {"inside_coverage_before": float(decided_in.mean()), "inside_coverage": float(kept_in.mean()),
            "inside_accuracy_decided_before": acc(decided_in), "inside_accuracy_decided": acc(kept_in),
            "outside_unclassified_before": float(1 - decided_out.mean()),
            "outside_unclassified": float(1 - kept_out.mean())}


def compare_scores(scores_in: dict[str, np.ndarray], decided_in: np.ndarray, right_in: np.ndarray,
                   scores_out: dict[str, np.ndarray], decided_out: np.ndarray,
                   max_coverage_drop: float) -> tuple[str, float, list[dict[str, Any]]]:
    """(the chosen score, its threshold, the comparison table): each score's AUROC (inside vs outside), threshold
    (:func:`choose_threshold`) and :func:`rule_figures`, on validation songs."""
    table = []
    for kind in scores_in:
        th = choose_threshold(scores_in[kind], decided_in, max_coverage_drop)
        row = {"score": kind, "auroc": auroc(scores_in[kind], scores_out[kind]), "threshold": th}
        row.update(rule_figures(scores_in[kind], decided_in, right_in, scores_out[kind], decided_out, th))
        table.append(row)
    best = max((r for r in table if r["score"] in ELIGIBLE), key=lambda r: (r["outside_unclassified"], r["auroc"]))
    return best["score"], best["threshold"], table


@dataclass
class ScoredSongs:
    """Songs as the rule sees them: slice logits and embeddings, and (for songs of the taxonomy) the true genre."""

    logits: list[np.ndarray]
    embeddings: list[np.ndarray]
    labels: list[int] | None = None


def fit_rule(train: ScoredSongs, val_inside: ScoredSongs, val_outside: ScoredSongs, tau: float, margin: float,
             max_coverage_drop: float, outside_columns: Sequence[int] = ()) -> OutsideRule:
    """The out-of-taxonomy rule for a model: every score of :data:`SCORES` compared on the validation songs
    (:func:`compare_scores`; ``train`` songs only give ``feature_distance`` and ``outside_tags`` their
    statistics), the best one kept with its threshold and the comparison table (``selection``). ``outside_tags``
    takes part only with the embedding columns of the outside styles' tags (``outside_columns``: a musicnn
    backbone, :func:`genre_core.models.genre_head.outside_tag_columns`)."""
    stats: dict[str, FeatureStats | TagStats] = {"feature_distance": fit_feature_stats(train.embeddings,
                                                                                       train.labels or [])}
    if len(outside_columns):
        stats["outside_tags"] = fit_tag_stats(train.embeddings, outside_columns)
    kinds = [k for k in SCORES if k != "outside_tags" or k in stats]

    def scored(songs: ScoredSongs) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        scores = {k: np.array([song_score(k, z, e, stats.get(k)) for z, e in zip(songs.logits, songs.embeddings,
                                                                                  strict=True)]) for k in kinds}
        decisions = [decide(np.exp(log_softmax(z)), tau, margin) for z in songs.logits]
        decided = np.array([d.classified for d in decisions])
        right = np.array([d.top_index == y for d, y in zip(decisions, songs.labels or [-1] * len(decisions),
                                                            strict=True)])
        return scores, decided, right

    s_in, dec_in, right_in = scored(val_inside)
    s_out, dec_out, _ = scored(val_outside)
    chosen, threshold, table = compare_scores(s_in, dec_in, right_in, s_out, dec_out, max_coverage_drop)
    selection = {"target": f"the lowest threshold at which at most {max_coverage_drop:.0%} of the validation songs "
                           "of the taxonomy lose their label; of the eligible scores (vote_share is the baseline "
                           "only), the one that leaves the most outside validation songs unclassified there (ties: the "
                           "higher AUROC)",
                 "max_coverage_drop": max_coverage_drop, "n_val_inside": len(val_inside.logits),
                 "n_val_outside": len(val_outside.logits), "n_train": len(train.logits), "table": table}
    return OutsideRule(chosen, threshold, stats.get(chosen), selection)
