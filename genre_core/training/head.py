"""Training of the musicnn genre head (:mod:`genre_core.models.genre_head`) on a frozen backbone's cached outputs.

The backbone's outputs (tag logits, penultimate and pooled features side by side, ``[n_slices, n_tags + n_penultimate
+ n_pooled]`` per song) are computed once per song (:func:`backbone_outputs`); the head is then fitted on them in
seconds: full-batch L-BFGS on the slices' cross-entropy plus ``l2 * ||theta - theta_0||^2``, where ``theta_0`` is
where the head started (the tag prior for a new model, the shipped head when a catalog team fine-tunes it). So the
head moves away from what the backbone learnt from real music only as far as the labelled songs pay for.

``l2`` is chosen on validation songs, never test songs. When the songs come in groups (soundfonts, or artists),
each candidate is scored leave-one-group-out: fitted on the training songs of the other groups, scored on the
validation songs of the held-out group, so the choice rewards what carries over to a sound the head has not heard,
which is what real recordings are to a synthetic corpus. The voting thresholds are then chosen on those same
out-of-group validation predictions. With one group, plain validation songs are used.

Which ``l2`` of the validated ones (``l2_rule``): a new model from the tag prior takes the stiffest within one
standard error of the best (:func:`one_standard_error_choice`), since synthetic songs cannot show what the prior
knows about real music; a catalog team fine-tuning the shipped head on its own songs (``--from``) takes the best
(:data:`BEST`): those songs are the catalog it will label, so their cross-validated accuracy is the goal itself.
(On a design catalog of 400 OPL-3 songs, 20 shots per genre, 3 draws, scored on the other 200: the stiffest
within one standard error gave 0.80 forced, the best 0.83, from a base of 0.67.)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genre_core.config import VotingConfig
from genre_core.models.genre_head import MusicnnGenreModel, TagPriorHead
from genre_core.training.cnn import choose_voting, evaluate_songs

DEFAULT_L2_GRID: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)
PULLED = ("tag_weight", "feature_weight", "pooled_weight")  # pulled toward the start; the bias is free
LBFGS_STEPS = 60
ONE_STANDARD_ERROR, BEST = "one_standard_error", "best"  # the l2 rules of train_head


@dataclass
class HeadSong:
    """One song for head training: id, true class index, group (e.g. soundfont), backbone outputs per slice."""

    song_id: str
    genre_index: int
    outputs: np.ndarray
    group: str = ""


@dataclass
class HeadResult:
    head: TagPriorHead
    l2: float
    voting: VotingConfig
    selection: dict[str, Any]
    val_report: dict[str, Any]
    grid: list[dict[str, Any]] = field(default_factory=list)


@torch.inference_mode()
def backbone_outputs(model: MusicnnGenreModel, slices: Sequence[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
    """The backbone's outputs ``[n_i, head.n_inputs]`` for each song's slices, batched across songs."""
    device = next(model.parameters()).device
    counts = [len(s) for s in slices]
    allx = np.concatenate([np.asarray(s, np.float32) for s in slices if len(s)], axis=0) if sum(counts) else None
    width = model.head.n_inputs
    if allx is None:
        return [np.zeros((0, width), np.float32) for _ in slices]
    model.eval()
    out = np.empty((len(allx), width), np.float32)
    for i in range(0, len(allx), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(allx[i:i + batch_size]))
        out[i:i + batch_size] = model.backbone_outputs(x.to(device)).float().cpu().numpy()
    return np.split(out, np.cumsum(counts)[:-1])


def _anchor(head: TagPriorHead) -> dict[str, torch.Tensor]:
    """The pulled weights of ``head``, detached: where :func:`_objective` pulls a head back to."""
    return {name: getattr(head, name).detach().clone().float() for name in PULLED}


def _objective(head: TagPriorHead, x: torch.Tensor, y: torch.Tensor, anchor: dict[str, torch.Tensor],
               l2: float) -> torch.Tensor:
    """What head training minimises: the mean slice cross-entropy plus ``l2 * ||theta - theta_anchor||^2`` over
    the pulled weights (the bias is free)."""
    pull = sum((getattr(head, name) - anchor[name]).pow(2).sum() for name in PULLED)
    return F.cross_entropy(head(x), y) + l2 * pull


def _slices(songs: Sequence[HeadSong]) -> tuple[torch.Tensor, torch.Tensor]:
    """The songs' slices' backbone outputs and genre indices, side by side."""
    return (torch.from_numpy(np.concatenate([np.asarray(s.outputs, np.float32) for s in songs])),
            torch.from_numpy(np.concatenate([np.full(len(s.outputs), s.genre_index, np.int64) for s in songs])))


def fit_head(head: TagPriorHead, songs: Sequence[HeadSong], l2: float, steps: int = LBFGS_STEPS) -> TagPriorHead:
    """A copy of ``head`` fitted on ``songs``' slices by full-batch L-BFGS, pulled toward ``head``'s own weights."""
    fitted = copy.deepcopy(head).float()
    anchor = _anchor(head)
    x, y = _slices(songs)
    opt = torch.optim.LBFGS(fitted.parameters(), lr=1.0, max_iter=steps, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _objective(fitted, x, y, anchor, l2)
        loss.backward()
        return loss

    opt.step(closure)
    fitted.eval()
    return fitted


STREAM_EPOCHS, STREAM_LR = 3, 1e-3  # refit_streamed: passes over the training slices, Adam's step size


def refit_streamed(head: TagPriorHead, anchor: TagPriorHead, passes: Callable[[int], Iterable[tuple[np.ndarray,
                   np.ndarray]]], l2: float, epochs: int = STREAM_EPOCHS, lr: float = STREAM_LR) -> TagPriorHead:
    """A copy of ``head`` refitted on more songs than memory holds: :func:`_objective` with ``anchor``'s weights
    (as :func:`fit_head` minimises it), by Adam over minibatches,
    ``passes(epoch)`` giving one pass over the training slices as ``(outputs [n, n_inputs], genre indices [n])``.
    Meant to start at the full-batch fit of a sample of the songs (already near the optimum), so a few passes
    at a small step move it to the optimum over every song."""
    fitted = copy.deepcopy(head).float().train()
    pulled_to = _anchor(anchor)
    opt = torch.optim.Adam(fitted.parameters(), lr=lr)
    for epoch in range(epochs):
        for x, y in passes(epoch):
            if not len(y):
                continue
            loss = _objective(fitted, torch.from_numpy(np.asarray(x, np.float32)),
                              torch.from_numpy(np.asarray(y, np.int64)), pulled_to, l2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    fitted.eval()
    return fitted


def head_objective(head: TagPriorHead, anchor: TagPriorHead, songs: Sequence[HeadSong], l2: float) -> float:
    """:func:`_objective` on ``songs``' slices, pulled toward ``anchor``: what :func:`fit_head` and
    :func:`refit_streamed` minimise."""
    with torch.no_grad():
        return float(_objective(head, *_slices(songs), _anchor(anchor), l2))


def head_probabilities(head: TagPriorHead, songs: Sequence[HeadSong]) -> list[np.ndarray]:
    """Softmax per slice of each song, from its cached backbone outputs."""
    with torch.inference_mode():
        return [torch.softmax(head(torch.from_numpy(s.outputs)), -1).numpy() for s in songs]


def prior_probabilities(head: TagPriorHead, songs: Sequence[HeadSong]) -> list[np.ndarray]:
    """Softmax per slice of each song under the head's prior alone (the tag map, no training)."""
    with torch.inference_mode():
        return [torch.softmax(head.prior_logits(torch.from_numpy(s.outputs)), -1).numpy() for s in songs]


def _forced_accuracy(probs: Sequence[np.ndarray], songs: Sequence[HeadSong]) -> float:
    return float(np.mean([p.sum(0).argmax() == s.genre_index for p, s in zip(probs, songs, strict=True)]))


CV_FOLDS = 5


def _cross_validation_folds(songs: Sequence[HeadSong], k: int) -> list[tuple[list[HeadSong], list[HeadSong]]]:
    """``k`` (train, held-out) pairs: each genre's songs, in id order, dealt round the folds (every song held out
    once; fewer folds when there are fewer songs)."""
    fold_of: dict[str, int] = {}
    by_genre: dict[int, list[HeadSong]] = {}
    for s in sorted(songs, key=lambda s: s.song_id):
        by_genre.setdefault(s.genre_index, []).append(s)
    k = max(2, min(k, len(songs)))
    dealt = 0
    for genre in sorted(by_genre):
        for s in by_genre[genre]:
            fold_of[s.song_id] = dealt % k
            dealt += 1
    return [([s for s in songs if fold_of[s.song_id] != f], [s for s in songs if fold_of[s.song_id] == f])
            for f in range(k) if any(fold_of[s.song_id] == f for s in songs)]


def best_choice(grid: Sequence[dict[str, Any]], n_val: int) -> tuple[dict[str, Any], float, float]:
    """(the row of ``grid`` with the best ``val_forced_accuracy``, ties to the larger ``l2``; that accuracy; its
    binomial standard error over ``n_val`` songs), the shape of :func:`one_standard_error_choice`."""
    row = max(grid, key=lambda r: (r["val_forced_accuracy"], r["l2"]))
    top = row["val_forced_accuracy"]
    return row, top, float(np.sqrt(top * (1.0 - top) / max(n_val, 1)))


def one_standard_error_choice(grid: Sequence[dict[str, Any]], n_val: int) -> tuple[dict[str, Any], float, float]:
    """(the row of ``grid`` with the largest ``l2`` whose ``val_forced_accuracy`` is within one binomial standard
    error of the best, the best accuracy, that standard error); ``n_val``: validation songs behind each figure."""
    top = max(r["val_forced_accuracy"] for r in grid)
    se = float(np.sqrt(top * (1.0 - top) / max(n_val, 1)))
    return max((r for r in grid if r["val_forced_accuracy"] >= top - se - 1e-9), key=lambda r: r["l2"]), top, se


def train_head(start: TagPriorHead, train_songs: Sequence[HeadSong], val_songs: Sequence[HeadSong],
               *, l2_grid: Sequence[float] = DEFAULT_L2_GRID, target_accuracy: float = 0.97,
               l2_rule: str = ONE_STANDARD_ERROR, log: Callable[[str], None] = print) -> HeadResult:
    """Fit a head from ``start`` (pulled back toward it); ``l2`` and the voting thresholds chosen on val.

    With songs of two or more groups, each ``l2`` is scored leave-one-group-out (fitted on the train songs of
    the other groups, scored on the val songs of the held-out one) and the final head is fitted on every train
    song. With one group (e.g. a catalog team's few hundred songs) a single validation split would be too small
    to choose from, so train and val songs are pooled and scored by :data:`CV_FOLDS`-fold cross-validation
    (stratified by genre), and the final head is fitted on all of them. With ``l2_rule`` :data:`ONE_STANDARD_ERROR`
    the best mean forced accuracy sets the bar, and the *largest* ``l2`` within one standard error of it wins: of
    the heads the validation songs cannot tell apart, the one closest to the starting head, i.e. to what the
    backbone learnt from real music, since the synthetic songs should correct it only where they must. With
    :data:`BEST` (fine-tuning on the catalog's own songs) the best mean forced accuracy wins. tau/m are chosen on
    the held-out predictions of the chosen ``l2``.
    """
    choose = {ONE_STANDARD_ERROR: one_standard_error_choice, BEST: best_choice}.get(l2_rule)
    if choose is None:
        raise ValueError(f"unknown l2 rule {l2_rule!r}; known: {ONE_STANDARD_ERROR}, {BEST}")
    if not train_songs or not val_songs:
        raise ValueError("head training needs train and val songs")
    groups = sorted({s.group for s in val_songs} & {s.group for s in train_songs})
    grouped = len(groups) >= 2
    if grouped:
        folds = [([s for s in train_songs if s.group != g], [s for s in val_songs if s.group == g]) for g in groups]
        final = list(train_songs)
    else:
        final = list(train_songs) + list(val_songs)
        folds = _cross_validation_folds(final, CV_FOLDS)
    grid, fold_probs = [], {}
    for l2 in l2_grid:
        accs, probs_all, songs_all = [], [], []
        for tr, va in folds:
            probs = head_probabilities(fit_head(start, tr, l2), va)
            accs.append(_forced_accuracy(probs, va))
            probs_all += probs
            songs_all += va
        row = {"l2": float(l2), "val_forced_accuracy": float(np.mean(accs)),
               "per_group": dict(zip(groups, accs, strict=True)) if grouped else {}}
        grid.append(row)
        fold_probs[float(l2)] = (probs_all, songs_all)
        log(f"head l2 {l2:g}: validation forced accuracy {row['val_forced_accuracy']:.3f}"
            + (" (" + ", ".join(f"{g} {a:.2f}" for g, a in row["per_group"].items()) + ")" if grouped else ""))
    best, top, se = choose(grid, sum(len(va) for _, va in folds))
    rule = "the largest within one standard error" if l2_rule == ONE_STANDARD_ERROR else "the best; standard error"
    log(f"head l2 {best['l2']:g} chosen: {rule} ({se:.3f}) of the best validation forced accuracy {top:.3f}")
    probs, songs = fold_probs[best["l2"]]
    labels = [s.genre_index for s in songs]
    voting, selection = choose_voting(probs, labels, target_accuracy)
    selection.update(l2=best["l2"], scheme="leave-one-group-out" if grouped else f"{len(folds)}-fold cross-validation",
                     groups=groups, l2_rule=l2_rule, best_forced=top)
    return HeadResult(head=fit_head(start, final, best["l2"]), l2=best["l2"], voting=voting,
                      selection=selection, val_report=evaluate_songs(probs, labels, voting), grid=grid)


class BackboneRows:
    """Songs' slices (``slices`` from :class:`genre_core.decoding.DecodeStage`) -> the backbone's outputs per song,
    ``outputs`` ``[n_i, head.n_inputs]`` float32 (``[0, width]`` for a song without slices); drops
    ``slices``. The backbone is the ``bundle_url`` bundle's (fine-tuning) or the one in ``backbone_dir``; ``device``
    is resolved in this process (:func:`genre_core.models.cnn.resolve_device`); torch runs on ``torch_threads``
    threads."""

    def __init__(self, backbone_dir: str | None, bundle_url: str | None, classes: Sequence[str], precision: str,
                 device: str = "auto", gpu_reserved: bool = False, torch_threads: int = 1) -> None:
        from genre_core.artifacts import load_cnn_bundle
        from genre_core.models.cnn import resolve_device
        from genre_core.models.genre_head import new_genre_model

        torch.set_num_threads(torch_threads)
        self.device = resolve_device(device, gpu_reserved)
        if bundle_url is not None:
            model, _ = load_cnn_bundle(bundle_url)
        else:
            model, _ = new_genre_model(str(backbone_dir), classes, precision)
        self.model = model.to(self.device).eval()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from genre_core.decoding import as_column

        outputs = backbone_outputs(self.model, [np.asarray(s, np.float32) for s in batch["slices"]])
        out = {k: v for k, v in batch.items() if k != "slices"}
        out["outputs"] = as_column(outputs)
        return out
