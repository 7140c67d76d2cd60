"""Pictures of the GAN stage: a slice of an unclassified song before and after translation to each candidate.

:func:`translation_example` computes what to draw for one song (pure: tensors in, arrays out);
:func:`draw_translations` draws several songs into one PNG with matplotlib (Agg backend, no display).
Each row is a song: the original slice, then for every candidate genre the translated slice ``G(x, c)``
and the change ``G(x, c) - x``, titled with the CNN's confidence ``P(c | G(x, c))``, the reading of ``c``
over translations to every genre, the translation cost and the refine share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np
import torch

from genre_core.refine import Classifier, Translator, candidate_evidence, decide_from_evidence, translate


@dataclass(frozen=True, eq=False)
class TranslationExample:
    """One song's slice before/after translation, with the refine evidence (arrays are numpy)."""

    song_id: str
    true_genre: str | None
    original: np.ndarray        # [n_mels, n_frames]
    candidates: tuple[str, ...]
    translated: np.ndarray      # [k, n_mels, n_frames]
    confidence: np.ndarray      # [k] P(c | G(x, c))
    reading: np.ndarray         # [k] the CNN's reading of c over translations to every genre
    cost: np.ndarray            # [k]
    scores: np.ndarray          # [k] refine shares q
    decided: str | None         # genre chosen by refine, None when it stays unclassified


def translation_example(
    song_id: str,
    true_genre: str | None,
    slices: np.ndarray | torch.Tensor,
    vote_probs: np.ndarray,
    generator: Translator,
    cnn: Classifier,
    classes: Sequence[str],
    *,
    top_k: int,
    threshold: float,
    cost_weight: float,
    vote_weight: float = 0.0,
    slice_index: int | None = None,
    standardize: bool = True,
) -> TranslationExample:
    """Refine one song and keep one slice's translations for the picture (default: the middle slice)."""
    x = torch.as_tensor(np.asarray(slices, dtype=np.float32))
    ev = candidate_evidence(x, vote_probs, generator, cnn, top_k, standardize=standardize)
    decision = decide_from_evidence(ev, threshold, cost_weight, vote_weight)
    i = len(x) // 2 if slice_index is None else int(slice_index)
    y = translate(x[i:i + 1], ev.candidates, generator)[:, 0, 0].cpu().numpy()  # [k, M, T]
    return TranslationExample(
        song_id=song_id, true_genre=true_genre, original=x[i].cpu().numpy(),
        candidates=tuple(classes[int(c)] for c in ev.candidates), translated=y,
        confidence=np.asarray(ev.confidence), reading=np.asarray(ev.reading), cost=np.asarray(ev.cost),
        scores=np.asarray(decision.scores),
        decided=classes[decision.genre_index] if decision.genre_index is not None else None,
    )


def draw_translations(path: str | IO[bytes], examples: Sequence[TranslationExample],
                      title: str = "") -> str | IO[bytes]:
    """Draw ``examples`` (one row each) into a PNG at ``path`` (a file name or a binary file object); returns
    ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not examples:
        raise ValueError("no examples to draw")
    k = max(len(e.candidates) for e in examples)
    n_cols = 1 + 2 * k
    fig, axes = plt.subplots(len(examples), n_cols, figsize=(2.3 * n_cols, 2.5 * len(examples)), squeeze=False)
    for r, ex in enumerate(examples):
        lo, hi = np.percentile(ex.original, [1, 99])
        diff_max = max(float(np.abs(ex.translated - ex.original[None]).max()), 1e-6)
        ax = axes[r, 0]
        ax.imshow(ex.original, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi)
        ax.set_title(f"{ex.song_id}\ntrue {ex.true_genre} -> {ex.decided or 'unclassified'}", fontsize=8)
        ax.set_ylabel("mel band")
        for j in range(k):
            a_t, a_d = axes[r, 1 + 2 * j], axes[r, 2 + 2 * j]
            if j >= len(ex.candidates):
                a_t.axis("off")
                a_d.axis("off")
                continue
            a_t.imshow(ex.translated[j], origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi)
            a_t.set_title(f"G(x, {ex.candidates[j]}): CNN {ex.confidence[j]:.2f}\nread {ex.reading[j]:.2f} "
                          f"cost {ex.cost[j]:.3f} q {ex.scores[j]:.2f}", fontsize=8)
            a_d.imshow(ex.translated[j] - ex.original, origin="lower", aspect="auto", cmap="coolwarm",
                       vmin=-diff_max, vmax=diff_max)
            a_d.set_title(f"change to {ex.candidates[j]}\n(+-{diff_max:.2f})", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
    return path
