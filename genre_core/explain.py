"""Why a track got its label, in a few lines of text: votes per genre, status and its reason, model versions.

The reason replays the rules on the row's own numbers: the voting rule (top share >= tau and margin >= m,
:mod:`genre_core.voting`) with the thresholds of the CNN bundle the label came from, the out-of-taxonomy rule
(``outside_score`` against the bundle's threshold, :mod:`genre_core.outside`), and the GAN stage's
combination of the CNN's votes with its own (``gan_probabilities``) with the refine parameters of its bundle
(:mod:`genre_core.refine`). Labels do not store the thresholds or weights, so they are shown only when that
bundle's metadata is given (and its version matches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genre_core.artifacts import CNNBundle
from genre_core.models.gan_bundle import GANBundle
from genre_core.outside import log_odds
from genre_core.schema import (
    REASON_OUTSIDE,
    STATUS_CLASSIFIED,
    STATUS_CURATED,
    STATUS_ERROR,
    STATUS_GAN_RESOLVED,
    STATUS_UNCLASSIFIED,
    vote_shares,
)
from genre_core.voting import decide

BAR_WIDTH = 40


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if value is not None and value == value else None  # None and NaN: not recorded


def vote_reason(confidence: float, margin: float, top_genre: str, cnn: CNNBundle | None) -> str:
    """The voting rule applied to one song's top share and margin, with the bundle's thresholds if known."""
    if cnn is None:
        return (f"top share {confidence:.3f} ({top_genre}), margin {margin:.3f} to the runner-up (the model's "
                "tau and m are unknown here: pass --models with the bundles the label was made with)")
    tau, m = cnn.voting.tau, cnn.voting.margin
    return (f"top share {confidence:.3f} ({top_genre}) {'>=' if confidence >= tau - 1e-9 else '<'} tau {tau:.2f}, "
            f"margin {margin:.3f} {'>=' if margin >= m - 1e-9 else '<'} m {m:.2f}")


def outside_reason(score: float, confidence: float | None, decided: bool, cnn: CNNBundle | None) -> str:
    """The out-of-taxonomy rule applied to one song's score (``outside_score``: already weighed against its
    calibrated ``confidence`` when the rule does so and the vote rule ``decided`` the song), with the bundle's
    threshold if known."""
    if cnn is None or cnn.outside is None:
        return (f"its slices look unlike the songs of every genre of the taxonomy: out-of-taxonomy score {score:.4g} "
                "passed the model's threshold (unknown here: pass --models with the bundles the label was made with)")
    rule = cnn.outside
    what = ("the backbone hears a style outside the taxonomy (one of its tags for folk, ambient, House, electronic, "
            "soul ... stands out far above the training songs')" if rule.score == "outside_tags"
            else "its slices look unlike the songs of every genre of the taxonomy")
    name = rule.score
    if rule.confidence_weight and not decided:
        name = f"{rule.score} alone: its votes were ambiguous, there is no label to weigh"
    elif rule.confidence_weight and confidence is not None:
        odds = float(log_odds(confidence))
        name = (f"{rule.score} {score + rule.confidence_weight * odds:.4g} minus {rule.confidence_weight:g} x "
                f"{odds:.3g}, the log-odds of its confidence {confidence:.3f}")
    return (f"{what}: out-of-taxonomy score ({name}) "
            f"{score:.4g} {'>' if rule.is_outside(score, decided) else '<='} threshold "
            f"{rule.threshold_for(decided):.4g}, chosen on "
            "validation songs of the taxonomy and of styles outside it")


def gan_reason(shares: np.ndarray, gan_shares: np.ndarray | None, classes: Sequence[str], gan_version: str,
               gan: GANBundle | None) -> str:
    """What the GAN stage saw and did: its own votes, and the combined votes with the bundle's weight and
    threshold when known."""
    if gan_shares is None:
        return f"the GAN stage ({gan_version}) ran but its votes are not recorded"
    g_top = int(np.argmax(gan_shares))
    how = ("translated its slices" if gan is None or len(gan.references) == 1 else
           f"translated its slices with {len(gan.references)} generators (toward {' and '.join(gan.references)})")
    text = (f"the GAN stage ({gan_version}) {how} and the CNN read them as {classes[g_top]} "
            f"({gan_shares[g_top]:.3f} of the GAN votes)")
    if gan is None:
        return text + " (its weight and threshold are unknown here: pass --models with the bundles)"
    w, th = gan.refine.gan_weight, gan.refine.threshold
    c = (1 - w) * shares + w * gan_shares
    order = np.argsort(-c, kind="stable")
    top, lead = float(c[order[0]]), float(c[order[0]] - c[order[1]])
    return (text + f"; combined votes ({1 - w:.1f} x CNN + {w:.1f} x GAN, chosen on validation songs) give "
            f"{classes[int(order[0])]} {top:.3f}, lead {lead:.3f}, {'>=' if top >= th - 1e-9 else '<'} "
            f"threshold {th:.2f}")


def reason(row: Mapping[str, Any], classes: Sequence[str], cnn: CNNBundle | None = None,
           gan: GANBundle | None = None) -> str:
    """One sentence on why the row has its status (see the module docstring)."""
    status = row["status"]
    if status == STATUS_ERROR:
        return (f"the track could not be labelled: {row.get('error') or 'no reason recorded'}. Fix or replace the "
                "audio at its audio_uri; the next nightly run retries error rows")
    shares = vote_shares(row.get("probabilities"))
    if status == STATUS_CURATED:
        genre = _text(row.get("genre"))
        if shares is None:
            return f"a person set its genre ({genre}, the catalog's curated genre); the model has no votes for it"
        model_top = classes[int(np.argmax(shares))]
        agrees = "agrees" if model_top == genre else f"disagrees: its votes say {model_top}"
        return f"a person set its genre ({genre}, the catalog's curated genre), which is kept; the model {agrees}"
    if shares is None:
        return f"status {status} without votes"
    order = np.argsort(-shares, kind="stable")
    top = classes[int(order[0])]
    votes = vote_reason(float(shares[order[0]]), float(shares[order[0]] - shares[order[1]]), top, cnn)
    gan_version = _text(row.get("gan_version"))
    if status == STATUS_CLASSIFIED:
        return f"its slices' votes were clear: {votes}"
    if status == STATUS_UNCLASSIFIED and row.get("reason") == REASON_OUTSIDE:
        decided = cnn is None or decide(shares[None, :], cnn.voting.tau, cnn.voting.margin).classified
        rule = outside_reason(float(row["outside_score"]), _number(row.get("confidence")), decided, cnn)
        return (f"outside_taxonomy: {rule}, so no genre of the taxonomy is given (nor tried by a GAN stage) whatever "
                f"the votes say ({votes}); the forced vote would say {top}")
    if status == STATUS_UNCLASSIFIED and gan_version is None:
        return (f"ambiguous_vote: its slices' votes were ambiguous: {votes}. No GAN stage ran for it (no gan/ bundle "
                f"in the models, or --no-gan), so it stays unclassified; the forced vote would say {top}")
    stage = gan_reason(shares, vote_shares(row.get("gan_probabilities")), classes, gan_version, gan)
    if status == STATUS_GAN_RESOLVED:
        chosen = _text(row.get("genre"))
        same = "the same as" if chosen == top else "not"
        return f"its slices' votes were ambiguous: {votes}; {stage}: it chose {chosen} ({same} the vote's top genre)"
    return (f"ambiguous_vote: its slices' votes were ambiguous: {votes}; {stage}: no genre reached the threshold "
            f"with a lead, so it stays unclassified; the forced vote would say {top}")


def explain(row: Mapping[str, Any], classes: Sequence[str], cnn: CNNBundle | None = None,
            gan: GANBundle | None = None) -> str:
    """A few lines: track, status and genre; the reason; votes per genre (largest first, with bars); versions.
    ``cnn``/``gan`` are used only when their versions are the row's."""
    if cnn is not None and cnn.version != row.get("model_version"):
        cnn = None
    if gan is not None and gan.version != _text(row.get("gan_version")):
        gan = None
    genre = _text(row.get("genre"))
    lines = [f"track {row['track_id']}: {row['status']}" + (f" -> {genre}" if genre else ""),
             "reason: " + reason(row, classes, cnn, gan)]
    shares = vote_shares(row.get("probabilities"))
    confidence = row.get("confidence")
    if shares is not None and confidence is not None and confidence == confidence:
        top = classes[int(np.argmax(shares))]
        lines.append(f"confidence: {float(confidence):.3f} " + (
            f"(calibrated on songs of the taxonomy: the probability that {top} would be right, were this song of "
            "one of its genres)" if row.get("reason") == REASON_OUTSIDE else
            f"(calibrated probability that {top} is right)"))
    if shares is not None:
        lines.append(f"votes per genre ({row['n_slices']} slices; share of the summed slice votes):")
        for i in np.argsort(-shares, kind="stable"):
            lines.append(f"  {classes[int(i)]:>10} {shares[i]:6.3f} {'#' * int(round(shares[i] * BAR_WIDTH))}")
    lines.append(f"models: cnn {row.get('model_version')}, gan {_text(row.get('gan_version')) or '-'}, "
                 f"features {row.get('feature_version')}")
    lines.append(f"run {row.get('run_id')}, labelled {row.get('labelled_at')}")
    return "\n".join(lines)


def unclassified_line(row: Mapping[str, Any], classes: Sequence[str]) -> str:
    """One line for an unclassified track: its id, its reason and the figure behind it, the forced vote."""
    shares = vote_shares(row.get("probabilities"))
    forced = classes[int(np.argmax(shares))] if shares is not None else "-"
    reason = _text(row.get("reason")) or "not recorded"
    score = row.get("outside_score")
    figure = (f"outside score {float(score):.4g}" if reason == REASON_OUTSIDE and score is not None
              else f"top share {float(shares.max()):.3f}" if shares is not None else "")
    return f"{row['track_id']}  {reason}  ({figure}; forced vote {forced})"
