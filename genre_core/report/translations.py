"""Pictures of the GAN stage: one slice of an unclassified song before and after translation, with the votes
the refine rule combined (:mod:`genre_core.refine`).

:func:`translation_example` computes what to draw for one song (pure: tensors in, arrays out);
:func:`draw_translations` draws several songs into one PNG with matplotlib (Agg backend, no display). Each row
is a song: its log-mel slice ``x``, the CNN's GAN features ``f`` of it (for musicnn, its front end's 561 feature
maps over time), the translation ``G(f)`` and the change ``G(f) - f`` (of the bundle's first generator, where it holds
several), titled with the CNN's vote, the GAN vote (of every generator) and the combined vote that decided it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np
import torch

from genre_core.refine import GANReadable, RefineParams, Translator, decide, gan_votes, vote_shares


@dataclass(frozen=True, eq=False)
class TranslationExample:
    """One song's slice before/after translation and the rule's figures (arrays are numpy)."""

    song_id: str
    true_genre: str | None
    mel: np.ndarray             # [n_mels, n_frames]: the slice
    features: np.ndarray        # [C, n_frames]: its GAN features f
    translated: np.ndarray      # [C, n_frames]: G(f) of the first generator
    n_generators: int           # generators whose readings the GAN vote averages
    cnn_genre: str              # top genre of the CNN's votes, and its share
    cnn_share: float
    gan_genre: str              # top genre of the GAN votes (the CNN on every translated slice)
    gan_share: float
    combined_share: float       # share of the combined votes' top genre
    decided: str | None         # genre chosen by the rule, None when the song stays unclassified


def translation_example(song_id: str, true_genre: str | None, slices: np.ndarray | torch.Tensor,
                        vote_probs: np.ndarray, generators: Sequence[Translator], cnn: GANReadable,
                        classes: Sequence[str], params: RefineParams, *, slice_index: int | None = None,
                        ) -> TranslationExample:
    """Refine one song (its slices ``[n, n_mels, n_frames]`` and CNN vote shares) and keep one slice for the
    picture (default: the middle one). ``generators`` and ``cnn`` must be in eval mode."""
    x = torch.as_tensor(np.asarray(slices, dtype=np.float32))
    g = gan_votes([x], generators, cnn)[0]
    decision = decide(vote_probs, g, params)
    i = len(x) // 2 if slice_index is None else int(slice_index)
    with torch.inference_mode():
        f = cnn.gan_features(x[i:i + 1])
        y = generators[0](f)
    v = vote_shares(vote_probs)
    return TranslationExample(
        song_id=song_id, true_genre=true_genre, mel=x[i].reshape(x.shape[-2:]).cpu().numpy(),
        features=f[0].cpu().numpy(), translated=y[0].cpu().numpy(), n_generators=len(generators),
        cnn_genre=classes[int(np.argmax(v))],
        cnn_share=float(v.max()), gan_genre=classes[int(np.argmax(g))], gan_share=float(g.max()),
        combined_share=decision.confidence,
        decided=classes[decision.genre_index] if decision.genre_index is not None else None)


def draw_translations(path: str | IO[bytes], examples: Sequence[TranslationExample],
                      title: str = "") -> str | IO[bytes]:
    """Draw ``examples`` (one row each) into a PNG at ``path`` (a file name or a binary file object); returns
    ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not examples:
        raise ValueError("no examples to draw")
    fig, axes = plt.subplots(len(examples), 4, figsize=(12.0, 2.5 * len(examples)), squeeze=False)
    for r, ex in enumerate(examples):
        lo, hi = np.percentile(ex.features, [1, 99])
        change = ex.translated - ex.features
        diff_max = max(float(np.abs(change).max()), 1e-6)
        m, a, b, c = axes[r]
        m.imshow(ex.mel, origin="lower", aspect="auto", cmap="magma")
        m.set_title(f"{ex.song_id}: true {ex.true_genre}\nslice x (log-mel)", fontsize=8)
        m.set_ylabel("mel band")
        a.imshow(ex.features, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi)
        a.set_title(f"features f of x\nCNN vote {ex.cnn_genre} {ex.cnn_share:.2f}", fontsize=8)
        a.set_ylabel("feature")
        b.imshow(ex.translated, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi)
        which = "G(f)" if ex.n_generators == 1 else f"G(f), 1st of {ex.n_generators} G's"
        b.set_title(f"{which}: GAN vote {ex.gan_genre} {ex.gan_share:.2f}\ncombined {ex.combined_share:.2f} -> "
                    f"{ex.decided or 'unclassified'}", fontsize=8)
        c.imshow(change, origin="lower", aspect="auto", cmap="coolwarm", vmin=-diff_max, vmax=diff_max)
        c.set_title(f"change G(f) - f\n(+-{diff_max:.2f})", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
    return path
