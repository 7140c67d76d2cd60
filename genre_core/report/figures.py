"""The report's figures, drawn with matplotlib into PNG bytes (``matplotlib.figure.Figure``: no pyplot, no
display, no global backend state).

Every function takes plain numbers (the dicts of :mod:`genre_core.report.evaluation`, or
:class:`~genre_core.report.songs.SongSlices`) and returns the PNG file's bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from genre_core.report.songs import SongSlices

DPI = 96
STATUS_COLOURS = {"classified": "#2b8a3e", "gan_resolved": "#1971c2", "unclassified": "#e8590c",
                  "error": "#c92a2a", "missing": "#868e96"}


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def confusion_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    """Rows = true genre, columns = forced vote; colour = share of the row, text = count."""
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    n = len(classes)
    fig = Figure(figsize=(1.6 + 0.55 * n, 1.2 + 0.5 * n))
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if m[i, j]:
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("forced vote (argmax of the votes)")
    ax.set_ylabel("true genre")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true genre's songs")
    fig.tight_layout()
    return to_png(fig)


def per_genre_figure(per_genre: dict[str, dict[str, float]], classes: Sequence[str]) -> bytes:
    """Precision and recall of the forced vote per genre (a genre never predicted has no precision: no bar)."""
    x = np.arange(len(classes))
    prec = np.array([per_genre[c]["precision"] for c in classes], dtype=np.float64)
    rec = np.array([per_genre[c]["recall"] for c in classes], dtype=np.float64)
    fig = Figure(figsize=(max(6.0, 0.7 * len(classes) + 1.5), 3.4))
    ax = fig.add_subplot()
    ax.bar(x - 0.2, np.nan_to_num(prec), 0.4, label="precision", color="#4263eb")
    ax.bar(x + 0.2, np.nan_to_num(rec), 0.4, label="recall", color="#f08c00")
    ax.set_xticks(x, classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("forced vote")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return to_png(fig)


def coverage_curve_figure(curves: dict[str, dict[str, list[float]]], operating: tuple[float, float] | None,
                          tau: float | None = None) -> bytes:
    """Left: coverage and accuracy against the top-share threshold (tau marked when known). Right: accuracy
    against coverage when sweeping the top share or the margin, with the run's own operating point."""
    top, gap = curves["top_share"], curves["margin"]
    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    t = np.asarray(top["threshold"])
    left.plot(t, np.asarray(top["coverage"], dtype=float), label="coverage", color="#1971c2")
    left.plot(t, np.asarray(top["accuracy"], dtype=float), label="accuracy on decided songs", color="#2b8a3e")
    if tau is not None:
        left.axvline(tau, color="#868e96", ls="--", lw=1, label=f"model's tau {tau:.2f}")
    left.set_xlabel("threshold on the top genre's vote share")
    left.set_ylim(0, 1.05)
    left.legend(fontsize=8, loc="lower left")
    left.grid(alpha=0.3)
    for name, curve, colour in (("top share", top, "#1971c2"), ("margin", gap, "#ae3ec9")):
        right.plot(np.asarray(curve["coverage"], dtype=float), np.asarray(curve["accuracy"], dtype=float),
                   label=f"sweep of the {name}", color=colour)
    if operating is not None and not any(math.isnan(v) for v in operating):
        right.plot(*operating, "o", color="#c92a2a", label="this run (tau and margin)")
    right.set_xlabel("coverage (share of songs decided)")
    right.set_ylabel("accuracy on decided songs")
    right.set_xlim(0, 1.02)
    right.legend(fontsize=8, loc="lower left")
    right.grid(alpha=0.3)
    fig.tight_layout()
    return to_png(fig)


def status_figure(breakdown: Sequence[dict[str, Any]]) -> bytes:
    """Songs per status; the darker part of a bar is the songs counted right (see the table for what that
    means per status)."""
    rows = [r for r in breakdown if r["songs"] or r["status"] != "missing"]
    fig = Figure(figsize=(7, 0.5 + 0.45 * len(rows)))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows, strict=True):
        colour = STATUS_COLOURS.get(r["status"], "#868e96")
        ax.barh(yi, r["songs"], color=colour, alpha=0.35)
        if "right" in r:
            ax.barh(yi, r["right"], color=colour)
        ax.text(r["songs"], yi, f" {r['songs']}", va="center", fontsize=8)
    ax.set_yticks(y, [r["status"] for r in rows], fontsize=9)
    ax.set_xlabel("songs")
    ax.set_xlim(0, max([r["songs"] for r in rows] + [1]) * 1.15)
    fig.tight_layout()
    return to_png(fig)


def reliability_figure(bins: Sequence[dict[str, Any]], ece: float) -> bytes:
    """Reliability diagram: per confidence bin, the share of songs right against the mean confidence (the
    diagonal is perfect calibration); bar widths are the bins, the numbers above them the songs in each."""
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#868e96", linestyle="--", linewidth=1, label="perfectly calibrated")
    full = [b for b in bins if b["n"]]
    ax.bar([b["low"] for b in full], [b["accuracy"] for b in full], width=[b["high"] - b["low"] for b in full],
           align="edge", color="#1971c2", alpha=0.6, edgecolor="#1864ab", label="share right")
    ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], "o", color="#e8590c", markersize=4,
            label="(mean confidence, share right)")
    for b in full:
        ax.text((b["low"] + b["high"]) / 2, min(b["accuracy"] + 0.02, 0.97), str(b["n"]), ha="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (calibrated)")
    ax.set_ylabel("share of songs whose label is right")
    ax.set_title(f"ECE {ece:.3f}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return to_png(fig)


def timeline_figure(songs: Sequence[SongSlices], classes: Sequence[str]) -> bytes:
    """One panel per song: the CNN's probability of each genre per slice over time, the winning genre of
    each slice marked with a dot."""
    if not songs:
        raise ValueError("no songs to draw")
    fig = Figure(figsize=(10, 0.6 + 2.3 * len(songs)))
    axes = fig.subplots(len(songs), 1, squeeze=False)[:, 0]
    for ax, s in zip(axes, songs, strict=True):
        n = len(s.slice_probs)
        extent = (0.0, n * s.slice_step_s, -0.5, len(classes) - 0.5)
        ax.imshow(s.slice_probs.T, origin="lower", aspect="auto", cmap="Greens", vmin=0, vmax=1,
                  extent=extent, interpolation="nearest")
        centres = (np.arange(n) + 0.5) * s.slice_step_s
        ax.plot(centres, s.timeline, "o", ms=4, color="#c92a2a")
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        label = s.label or "no genre"
        ax.set_title(f"{s.track_id}: true {s.truth}, labelled {label} ({s.status})", fontsize=9, loc="left")
    axes[-1].set_xlabel("time in the song (s); dot = genre with the most probability in that slice")
    fig.tight_layout()
    return to_png(fig)


def spectrogram_figure(songs: Sequence[SongSlices], classes: Sequence[str]) -> bytes:
    """The middle slice of each song (log-mel as the CNN sees it), titled with its top votes."""
    if not songs:
        raise ValueError("no songs to draw")
    cols = min(4, len(songs))
    rows = math.ceil(len(songs) / cols)
    fig = Figure(figsize=(2.8 * cols, 2.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(songs):]:
        ax.axis("off")
    for ax, s in zip(axes, songs, strict=True):
        x = s.slices[len(s.slices) // 2]
        lo, hi = np.percentile(x, [1, 99])
        ax.imshow(x, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi)
        order = np.argsort(-s.vote_shares)[:2]
        votes = ", ".join(f"{classes[i]} {s.vote_shares[i]:.2f}" for i in order)
        ax.set_title(f"{s.track_id} (true {s.truth})\nvotes {votes}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return to_png(fig)
