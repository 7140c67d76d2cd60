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

A rule on the score alone turns away songs of the taxonomy that are right as often as the songs that keep their
label (their tags for folk, soul or House stand out, and they are still country, blues or disco), so the accuracy on
decided songs cannot rise and falls by the chance of a song. So the rule weighs the score against the head's own
certainty: for a song the vote rule decides, it compares ``score - confidence_weight * logit(confidence)`` with its
threshold, ``confidence`` the song's calibrated confidence (:mod:`genre_core.calibration`). Strong evidence of an
outside style still turns a song away, and a song the head is sure of needs more of it; a weight of 0 is the score
alone. A song whose vote is ambiguous has no label to weigh: it is judged by the score alone against
``undecided_threshold`` (the weight-0 threshold of the same comparison), so that a mild outside tag does not make an
unsure song of the taxonomy "outside" instead of ambiguous.

Which score, weight and threshold: :func:`compare_scores` scores validation songs of the taxonomy and validation
songs of styles outside it (never test songs) and applies the target written down before choosing. For each score
and each weight of :data:`CONFIDENCE_WEIGHTS`, :func:`choose_threshold` takes the lowest threshold at which at most
``max_coverage_drop`` of the in-taxonomy validation songs that the vote rule classifies are turned away; of the
eligible scores' (:data:`ELIGIBLE`) rows that leave at least :data:`MIN_OUTSIDE_UNCLASSIFIED` of the outside
validation songs unclassified, the one with the highest accuracy on the decided in-taxonomy validation songs wins
(ties: more outside songs, then the smaller weight); when no row catches that many, the one that catches the most.
``genre-job calibrate`` runs this and records the rule in the model bundle (:class:`OutsideRule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genre_core.calibration import Calibration, log_softmax
from genre_core.voting import decide

SCORES: tuple[str, ...] = ("vote_share", "max_logit", "energy", "feature_distance", "outside_tags")
# vote_share is in the comparison as the baseline only: the vote rule already thresholds it (tau), so as an
# out-of-taxonomy score it would merely raise tau and call ambiguous songs outside the taxonomy
ELIGIBLE: tuple[str, ...] = ("max_logit", "energy", "feature_distance", "outside_tags")
CONFIDENCE_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)  # weights of logit(confidence) tried
# the share of outside validation songs a rule must leave unclassified to be chosen for its accuracy: the issue's
# 0.60 and 5 points of margin for the songs it is tested on
MIN_OUTSIDE_UNCLASSIFIED = 0.65
CONFIDENCE_CLIP = 1e-6  # confidence clipped to [1e-6, 1 - 1e-6] before its logit (at most 13.8 in size)
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


def log_odds(confidence: float | np.ndarray) -> float | np.ndarray:
    """``logit(confidence)``, the confidence clipped to ``[CONFIDENCE_CLIP, 1 - CONFIDENCE_CLIP]``."""
    c = np.clip(np.asarray(confidence, np.float64), CONFIDENCE_CLIP, 1.0 - CONFIDENCE_CLIP)
    return np.log(c / (1.0 - c))


def discounted(score: float | np.ndarray, confidence: float | np.ndarray, weight: float) -> float | np.ndarray:
    """``score - weight * logit(confidence)``: an out-of-distribution score weighed against the head's certainty."""
    return score if weight == 0.0 else score - weight * log_odds(confidence)


@dataclass(frozen=True, eq=False)
class OutsideRule:
    """A song the vote rule decides is outside the taxonomy when its ``score`` minus ``confidence_weight`` times the
    logit of its calibrated confidence is above ``threshold``; a song whose vote is ambiguous, when its score alone
    is above ``undecided_threshold`` (all chosen on validation songs; None: ``threshold``)."""

    score: str
    threshold: float
    confidence_weight: float = 0.0
    undecided_threshold: float | None = None
    stats: FeatureStats | TagStats | None = None  # for feature_distance, outside_tags
    selection: dict[str, Any] | None = None  # how it was chosen (the comparison table), as recorded in the bundle

    @property
    def needs_embeddings(self) -> bool:
        return self.score in ("feature_distance", "outside_tags")

    def song_score(self, logits: np.ndarray, embeddings: np.ndarray | None = None, confidence: float | None = None,
                   decided: bool = True) -> float:
        """The value the rule compares with its threshold: the song's ``score``, discounted by its calibrated
        ``confidence`` (:func:`discounted`) when the rule weighs it and the vote rule ``decided`` the song."""
        raw = song_score(self.score, logits, embeddings, self.stats)
        if self.confidence_weight == 0.0 or not decided:
            return raw
        if confidence is None:
            raise ValueError("this out-of-taxonomy rule weighs the song's calibrated confidence, which needs the "
                             "bundle's calibration")
        return float(discounted(raw, confidence, self.confidence_weight))

    def threshold_for(self, decided: bool) -> float:
        return self.threshold if decided or self.undecided_threshold is None else self.undecided_threshold

    def is_outside(self, score: float, decided: bool = True) -> bool:
        return bool(score > self.threshold_for(decided))

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "threshold": self.threshold, "confidence_weight": self.confidence_weight,
                "undecided_threshold": self.undecided_threshold, "selection": self.selection or {}}


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


@dataclass
class Judged:
    """Validation songs as the rule's choice sees them: each score's values, whether the vote rule decides each
    song, its calibrated confidence and (songs of the taxonomy) whether its vote is right."""

    scores: dict[str, np.ndarray]
    decided: np.ndarray
    confidence: np.ndarray
    right: np.ndarray | None = None


def rule_figures(inside: Judged, outside: Judged, s_in: np.ndarray, s_out: np.ndarray,
                 threshold: float) -> dict[str, Any]:
    """Coverage and accuracy on decided songs (with the counts) of the inside songs, and the share of outside songs
    left unclassified, without and with the rule (the songs' compared scores ``s_in``, ``s_out`` > ``threshold``)."""
    kept_in, kept_out = inside.decided & ~(s_in > threshold), outside.decided & ~(s_out > threshold)
    right = inside.right

    def acc(mask: np.ndarray) -> float:
        return float(right[mask].mean()) if mask.any() else float("nan")

    return {"inside_coverage_before": float(inside.decided.mean()), "inside_coverage": float(kept_in.mean()),
            "inside_accuracy_decided_before": acc(inside.decided), "inside_accuracy_decided": acc(kept_in),
            "inside_right_decided_before": int(right[inside.decided].sum()),
            "inside_right_decided": int(right[kept_in].sum()), "inside_decided": int(kept_in.sum()),
            "outside_unclassified_before": float(1 - outside.decided.mean()),
            "outside_unclassified": float(1 - kept_out.mean())}


def compare_scores(inside: Judged, outside: Judged, max_coverage_drop: float,
                   weights: Sequence[float] = CONFIDENCE_WEIGHTS,
                   min_outside: float = MIN_OUTSIDE_UNCLASSIFIED) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the chosen row, the comparison table): for each score and confidence weight, its AUROC (inside vs outside,
    discounted scores), threshold (:func:`choose_threshold`) and :func:`rule_figures`, on validation songs. The
    chosen row: of the eligible scores' rows that leave at least ``min_outside`` of the outside songs unclassified,
    the highest accuracy on decided inside songs (ties: more outside songs, then the smaller weight); without such
    a row, the one that leaves the most outside songs unclassified (ties: the higher AUROC). The chosen row also
    carries ``undecided_threshold``, its score's threshold at weight 0."""
    if 0.0 not in weights:
        raise ValueError("the confidence weights must include 0 (the score alone, for songs with ambiguous votes)")
    table = []
    for kind in inside.scores:
        for w in weights:
            s_in = discounted(inside.scores[kind], inside.confidence, w)
            s_out = discounted(outside.scores[kind], outside.confidence, w)
            th = choose_threshold(s_in, inside.decided, max_coverage_drop)
            row: dict[str, Any] = {"score": kind, "confidence_weight": float(w), "auroc": auroc(s_in, s_out),
                                   "threshold": th}
            row.update(rule_figures(inside, outside, s_in, s_out, th))
            table.append(row)
    eligible = [r for r in table if r["score"] in ELIGIBLE]
    enough = [r for r in eligible if r["outside_unclassified"] >= min_outside - 1e-9]
    if enough:
        best = max(enough, key=lambda r: (r["inside_right_decided"] / max(r["inside_decided"], 1),
                                          r["outside_unclassified"], -r["confidence_weight"]))
    else:
        best = max(eligible, key=lambda r: (r["outside_unclassified"], r["auroc"]))
    # songs the vote rule leaves ambiguous are judged by the score alone: the threshold of its weight-0 row
    alone = next(r for r in table if r["score"] == best["score"] and r["confidence_weight"] == 0.0)
    return {**best, "undecided_threshold": alone["threshold"]}, table


@dataclass
class ScoredSongs:
    """Songs as the rule sees them: slice logits and embeddings, and (for songs of the taxonomy) the true genre."""

    logits: list[np.ndarray]
    embeddings: list[np.ndarray]
    labels: list[int] | None = None


def fit_rule(train: ScoredSongs, val_inside: ScoredSongs, val_outside: ScoredSongs, tau: float, margin: float,
             calibration: Calibration, max_coverage_drop: float, outside_columns: Sequence[int] = ()) -> OutsideRule:
    """The out-of-taxonomy rule for a model: every score of :data:`SCORES` and confidence weight compared on the
    validation songs (:func:`compare_scores`, with the vote rule's ``tau``/``margin`` and the model's
    ``calibration``; ``train`` songs only give ``feature_distance`` and ``outside_tags`` their statistics), the
    best kept with its weight, threshold and the comparison table (``selection``). ``outside_tags``
    takes part only with the embedding columns of the outside styles' tags (``outside_columns``: a musicnn
    backbone, :func:`genre_core.models.genre_head.outside_tag_columns`)."""
    stats: dict[str, FeatureStats | TagStats] = {"feature_distance": fit_feature_stats(train.embeddings,
                                                                                       train.labels or [])}
    if len(outside_columns):
        stats["outside_tags"] = fit_tag_stats(train.embeddings, outside_columns)
    kinds = [k for k in SCORES if k != "outside_tags" or k in stats]

    def judged(songs: ScoredSongs) -> Judged:
        scores = {k: np.array([song_score(k, z, e, stats.get(k)) for z, e in zip(songs.logits, songs.embeddings,
                                                                                  strict=True)]) for k in kinds}
        decisions = [decide(np.exp(log_softmax(z)), tau, margin) for z in songs.logits]
        confidence = np.array([calibration.confidence(z, d.top_index) for z, d in zip(songs.logits, decisions,
                                                                                        strict=True)])
        right = (np.array([d.top_index == y for d, y in zip(decisions, songs.labels, strict=True)])
                 if songs.labels is not None else None)
        return Judged(scores, np.array([d.classified for d in decisions]), confidence, right)

    chosen, table = compare_scores(judged(val_inside), judged(val_outside), max_coverage_drop)
    selection = {"target": f"for each score and confidence weight, the lowest threshold at which at most "
                           f"{max_coverage_drop:.0%} of the validation songs of the taxonomy lose their label; of "
                           "the eligible scores' rows (vote_share is the baseline only) that leave at least "
                           f"{MIN_OUTSIDE_UNCLASSIFIED:.0%} of the outside validation songs unclassified, the one "
                           "with the highest accuracy on the decided validation songs of the taxonomy (ties: more "
                           "outside songs, then the smaller weight); without one, the one that leaves the most "
                           "outside songs unclassified",
                 "max_coverage_drop": max_coverage_drop, "min_outside_unclassified": MIN_OUTSIDE_UNCLASSIFIED,
                 "n_val_inside": len(val_inside.logits), "n_val_outside": len(val_outside.logits),
                 "n_train": len(train.logits), "table": table}
    return OutsideRule(chosen["score"], chosen["threshold"], chosen["confidence_weight"], chosen["undecided_threshold"],
                       stats.get(chosen["score"]), selection)
