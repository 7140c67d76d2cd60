"""A grid of log-mel spectrograms, one row per genre, to see what the corpus sounds like at a glance."""

from __future__ import annotations

import io

import numpy as np

from genre_core import storage


def draw_preview(rows: list[dict], path: str, per_genre: int = 4, seconds: float = 10.0) -> None:
    """Draw the first ``seconds`` of up to ``per_genre`` songs of each genre (or outside style: column ``style``)
    in ``rows`` to a PNG."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    genres = sorted({r["style"] for r in rows})
    cols = min(per_genre, max(sum(r["style"] == g for r in rows) for g in genres))
    fig, axes = plt.subplots(len(genres), cols, figsize=(3.2 * cols, 1.6 * len(genres)), squeeze=False)
    for i, genre in enumerate(genres):
        songs = [r for r in rows if r["style"] == genre][:cols]
        for j in range(cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(songs):
                ax.axis("off")
                continue
            audio, sr = sf.read(io.BytesIO(storage.read_bytes(songs[j]["audio_uri"])), dtype="float32")
            audio = audio[: int(seconds * sr)]
            mel = librosa.feature.melspectrogram(y=audio, sr=sr, n_fft=1024, hop_length=512, n_mels=128)
            ax.imshow(librosa.power_to_db(mel, ref=np.max), origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"{songs[j]['track_id']} {songs[j]['tempo']:.0f} bpm", fontsize=7)
            if j == 0:
                ax.set_ylabel(genre, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
