"""Why a track got its label, in a few lines of text: votes per genre, status and its reason, model versions.

The reason replays the rules on the row's own numbers: the voting rule (top share >= tau and margin >= m,
:mod:`genre_core.voting`) with the thresholds of the CNN bundle the label came from, and the GAN stage's
outcome with the refine parameters of its bundle (:mod:`genre_core.refine`). Labels do not store the
thresholds, so they are shown only when that bundle's metadata is given (and its version matches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genre_core.artifacts import CNNBundle
from genre_core.models.gan import GANBundle
from genre_core.schema import (
    STATUS_CLASSIFIED,
    STATUS_CURATED,
    STATUS_ERROR,
    STATUS_GAN_RESOLVED,
    STATUS_UNCLASSIFIED,
    vote_shares,
)

BAR_WIDTH = 40


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def vote_reason(confidence: float, margin: float, top_genre: str, cnn: CNNBundle | None) -> str:
    """The voting rule applied to one song's top share and margin, with the bundle's thresholds if known."""
    if cnn is None:
        return (f"top share {confidence:.3f} ({top_genre}), margin {margin:.3f} to the runner-up (the model's "
                "tau and m are unknown here: pass --models with the bundles the label was made with)")
    tau, m = cnn.voting.tau, cnn.voting.margin
    return (f"top share {confidence:.3f} ({top_genre}) {'>=' if confidence >= tau - 1e-9 else '<'} tau {tau:.2f}, "
            f"margin {margin:.3f} {'>=' if margin >= m - 1e-9 else '<'} m {m:.2f}")


def _refine_params(gan: GANBundle | None) -> str:
    if gan is None:
        return "its refine parameters are unknown here"
    r = gan.refine
    return (f"top_k {r.get('top_k')}, threshold {r.get('threshold')}, cost_weight {r.get('cost_weight')}, "
            "chosen on validation songs")


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
    votes = vote_reason(float(row["confidence"]), float(row["margin"]), top, cnn)
    gan_version = _text(row.get("gan_version"))
    if status == STATUS_CLASSIFIED:
        return f"its slices' votes were clear: {votes}"
    if status == STATUS_UNCLASSIFIED and gan_version is None:
        return (f"its slices' votes were ambiguous: {votes}. No GAN stage ran for it (no gan/ bundle in the models, "
                f"or --no-gan), so it stays unclassified; the forced vote would say {top}")
    k = int(gan.refine.get("top_k", 2)) if gan is not None else 2
    candidates = ", ".join(classes[int(i)] for i in order[:k])
    stage = f"the GAN stage ({gan_version}; {_refine_params(gan)}) translated its slices to the candidates {candidates}"
    if status == STATUS_GAN_RESOLVED:
        chosen = _text(row.get("genre"))
        same = "the same as" if chosen == top else "not"
        return (f"its slices' votes were ambiguous: {votes}; {stage} and chose {chosen} ({same} the vote's "
                f"top genre {top})")
    return (f"its slices' votes were ambiguous: {votes}; {stage}, but no candidate reached the refine threshold "
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
    if shares is not None:
        lines.append(f"votes per genre ({row['n_slices']} slices; share of the summed slice votes):")
        for i in np.argsort(-shares, kind="stable"):
            lines.append(f"  {classes[int(i)]:>10} {shares[i]:6.3f} {'#' * int(round(shares[i] * BAR_WIDTH))}")
    lines.append(f"models: cnn {row.get('model_version')}, gan {_text(row.get('gan_version')) or '-'}, "
                 f"features {row.get('feature_version')}")
    lines.append(f"run {row.get('run_id')}, labelled {row.get('labelled_at')}")
    return "\n".join(lines)
