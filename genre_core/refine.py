"""The GAN stage's re-classification of UNCLASSIFIED songs (Bae 2020), as pure functions of tensors.

For a song whose slice vote was ambiguous (status ``unclassified`` from :mod:`genre_core.voting`):

1. **Translate.** Every slice ``x`` goes through the CNN's front end once and through each generator once:
   ``G_k(f(x))``, its easy-to-read form in the CNN's own representation (``cnn.gan_features``;
   :mod:`genre_core.models.gan`). A bundle holds one generator per reference soundfont it was trained toward
   (:mod:`genre_core.models.gan_bundle`). Slices of many songs go through together, in batches of ``batch_size``.
2. **Read again.** The frozen CNN reads each translation (``cnn.logits_from_gan_features``); the mean of its softmax
   outputs over the generators and the song's slices is the song's **GAN votes** ``g`` (shares summing to 1, like
   the CNN's votes ``v``).
3. **Combine.** ``c = (1 - gan_weight) * v + gan_weight * g``: the original votes are kept, so the
   translation has to outweigh them where it disagrees.
4. **Decide.** The top genre of ``c`` is taken (status ``gan_resolved``) iff its share is at least
   ``threshold`` and strictly ahead of the runner-up; otherwise the song stays ``unclassified``.

``gan_weight`` and ``threshold`` are chosen on validation songs, never test songs
(:func:`genre_core.training.gan.choose_refine_params`). With the identity as the only "generator", ``g = v`` (to bf16
rounding where the CNN computes in bf16) and the rule with threshold 0 is the forced argmax of the votes: whatever
the stage adds over that comes from the translation. Songs the CNN classified, and error rows, are never passed
to the models and never changed (:func:`refine_songs` returns None for them). Nothing here does I/O or changes the
models: both must be in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from genre_core.schema import STATUS_GAN_RESOLVED, STATUS_UNCLASSIFIED

FLOAT_TOL = 1e-9

Translator = Callable[[torch.Tensor], torch.Tensor]   # GAN features [B, C, T] -> [B, C, T]


class GANReadable(Protocol):
    """A genre model the GAN stage can translate for: slices -> GAN features -> logits (both model kinds of
    :mod:`genre_core.artifacts`)."""

    training: bool

    def gan_features(self, x: torch.Tensor) -> torch.Tensor: ...

    def logits_from_gan_features(self, f: torch.Tensor) -> torch.Tensor: ...

    def bf16_on(self, device: torch.device) -> bool: ...  # whether it computes in bf16 there (autocast)


@dataclass(frozen=True)
class RefineParams:
    """The rule's parameters, chosen on validation songs."""

    gan_weight: float = 0.5   # weight of the GAN votes in the combined votes, in [0, 1]
    threshold: float = 0.0    # combined share the top genre needs, in [0, 1]

    def __post_init__(self) -> None:
        for name in ("gan_weight", "threshold"):
            value = getattr(self, name)
            if not (np.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {value}")


@dataclass(frozen=True, eq=False)
class RefineDecision:
    """The GAN stage's outcome for one unclassified song (arrays ``[n_classes]``, read-only float64)."""

    status: str               # "gan_resolved" | "unclassified"
    genre_index: int | None   # the chosen genre when resolved, else None
    best_index: int           # the top genre of the combined votes, decided or not
    confidence: float         # its combined share
    margin: float             # its lead over the runner-up in the combined votes
    gan_votes: np.ndarray     # g: mean softmax of the CNN over the translated slices (and the generators)
    combined: np.ndarray      # c = (1 - w) v + w g

    @property
    def resolved(self) -> bool:
        return self.status == STATUS_GAN_RESOLVED


def _as_slices(slices: torch.Tensor | np.ndarray) -> torch.Tensor:
    if not isinstance(slices, torch.Tensor):
        slices = torch.as_tensor(np.asarray(slices, dtype=np.float32))
    if slices.dim() == 3:
        slices = slices.unsqueeze(1)
    if slices.dim() != 4 or slices.shape[1] != 1:
        raise ValueError(f"slices must be [n, n_mels, n_frames] or [n, 1, n_mels, n_frames], got {list(slices.shape)}")
    if slices.shape[0] == 0:
        raise ValueError("cannot refine a song with zero slices")
    if not bool(torch.isfinite(slices).all()):
        raise ValueError("slices contain NaN or infinite values")
    return slices.float()


def vote_shares(votes: torch.Tensor | np.ndarray) -> np.ndarray:
    """Non-negative votes ``[n_classes]`` -> shares summing to 1 (ValueError on anything else)."""
    if isinstance(votes, torch.Tensor):
        votes = votes.detach().cpu().numpy()
    v = np.asarray(votes, dtype=np.float64)
    if v.ndim != 1 or v.shape[0] < 2:
        raise ValueError(f"votes must be [n_classes] with n_classes >= 2, got shape {v.shape}")
    if not np.isfinite(v).all() or (v < 0).any() or v.sum() <= 0:
        raise ValueError("votes must be finite, non-negative and not all zero")
    return v / v.sum()


def _device_of(*models: object) -> torch.device | None:
    """The device of the first model with parameters or buffers (None for plain callables)."""
    for m in models:
        if isinstance(m, torch.nn.Module):
            for t in (*m.parameters(), *m.buffers()):
                return t.device
    return None


def _check_eval(model: object, name: str) -> None:
    if getattr(model, "training", False):
        raise ValueError(f"{name} is in training mode; call .eval() first (refine never changes the models)")


@torch.inference_mode()
def gan_votes(songs: Sequence[torch.Tensor | np.ndarray], generators: Sequence[Translator], cnn: GANReadable, *,
              batch_size: int = 64) -> list[np.ndarray]:
    """Steps 1-2 for many songs at once: each song's GAN votes ``[n_classes]`` (float64, sum 1).

    The slices of all songs are translated and read in batches of ``batch_size`` across song boundaries (one
    front-end pass per slice, then one ``G`` pass and one read per slice and generator)."""
    if not generators:
        raise ValueError("gan_votes needs at least one generator")
    for k, generator in enumerate(generators):
        _check_eval(generator, f"generator {k}")
    _check_eval(cnn, "cnn")
    if not songs:
        return []
    parts = [_as_slices(s) for s in songs]
    device = _device_of(*generators, cnn) or parts[0].device
    counts = [len(p) for p in parts]
    x = torch.cat(parts)
    probs = []
    bf16 = cnn.bf16_on(torch.device(device))  # G computes as the CNN does: bf16 where the device has it
    for i in range(0, len(x), batch_size):
        f = cnn.gan_features(x[i:i + batch_size].to(device, non_blocking=True))
        p = torch.zeros((), dtype=torch.float64, device=f.device)
        for generator in generators:
            with torch.autocast(f.device.type, dtype=torch.bfloat16, enabled=bf16):
                translated = generator(f).float()
            p = p + torch.softmax(cnn.logits_from_gan_features(translated).float(), dim=-1).double()
        probs.append((p / len(generators)).cpu())
    per_slice = torch.cat(probs).numpy()
    bounds = np.cumsum([0, *counts])
    return [per_slice[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def decide(votes: torch.Tensor | np.ndarray, gan: np.ndarray, params: RefineParams) -> RefineDecision:
    """Steps 3-4: combine one song's CNN votes and GAN votes and decide."""
    v, g = vote_shares(votes), vote_shares(gan)
    if v.shape != g.shape:
        raise ValueError(f"{len(v)} CNN vote shares but {len(g)} GAN vote shares")
    c = (1.0 - params.gan_weight) * v + params.gan_weight * g
    order = np.argsort(-c, kind="stable")
    best = int(order[0])
    top, lead = float(c[best]), float(c[best] - c[order[1]])
    ok = lead > FLOAT_TOL and top >= params.threshold - FLOAT_TOL
    for a in (g, c):
        a.setflags(write=False)
    return RefineDecision(STATUS_GAN_RESOLVED if ok else STATUS_UNCLASSIFIED, best if ok else None, best, top,
                          lead, g, c)


def refine_songs(statuses: Sequence[str], slices: Sequence[torch.Tensor | np.ndarray],
                 votes: Sequence[torch.Tensor | np.ndarray], generators: Sequence[Translator], cnn: GANReadable,
                 params: RefineParams, *, batch_size: int = 64) -> list[RefineDecision | None]:
    """The whole rule over a batch of songs: a decision for every ``unclassified`` song, None for every other
    (classified, error, curated: never passed to the models, never changed)."""
    if not len(statuses) == len(slices) == len(votes):
        raise ValueError(f"{len(statuses)} statuses, {len(slices)} slice arrays, {len(votes)} vote rows")
    todo = [i for i, s in enumerate(statuses) if s == STATUS_UNCLASSIFIED]
    g = gan_votes([slices[i] for i in todo], generators, cnn, batch_size=batch_size)
    out: list[RefineDecision | None] = [None] * len(statuses)
    for i, gi in zip(todo, g, strict=True):
        out[i] = decide(votes[i], gi, params)
    return out
