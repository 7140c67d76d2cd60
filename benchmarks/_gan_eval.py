"""Helpers of benchmarks/gan_ablation.py: cached translation readings, the controls, the refine-parameter
choice on validation songs, per-system reports, the tables and the issue's done criterion."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from genre_core.metrics import flip_counts, mcnemar_exact
from genre_core.refine import (
    CandidateEvidence,
    TranslationReadings,
    decide_from_evidence,
    evidence_from_readings,
    read_translations,
)
from genre_core.training.gan import DEFAULT_TOP_KS, choose_refine_params

COST_ONLY_WEIGHT = 1e6
K_MAX = max(DEFAULT_TOP_KS)


def cached_readings(gen: torch.nn.Module, gan_version: str, cnn: torch.nn.Module, track_ids: Sequence[str],
                    slices: Sequence[np.ndarray], n_classes: int, standardize: bool,
                    cache_dir: str) -> list[TranslationReadings]:
    """:func:`read_translations` per song (translation to every genre is the slow part: ~3 s per 30 s song on
    one CPU core), cached in ``cache_dir`` per GAN bundle version and set of songs."""
    key = hashlib.sha256("\n".join(track_ids).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"readings-{gan_version}-{key}.npz")
    if os.path.exists(path):
        z = np.load(path)
        return [TranslationReadings(p, c) for p, c in zip(z["probs"], z["cost"], strict=True)]
    out = [read_translations(s, gen, cnn, n_classes, standardize=standardize) for s in slices]
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(path + ".tmp.npz", probs=np.stack([r.probs for r in out]), cost=np.stack([r.cost for r in out]))
    os.replace(path + ".tmp.npz", path)
    return out


def identity_readings(vote_shares: np.ndarray) -> TranslationReadings:
    """Control: what :func:`read_translations` gives for the identity "translation" (every translation is the
    slice itself, so the CNN reads the song's own vote shares for every target, at zero cost)."""
    n = len(vote_shares)
    return TranslationReadings(np.tile(np.asarray(vote_shares, np.float64), (n, 1)), np.zeros(n))


def random_genre_readings(readings: TranslationReadings, rng: np.random.Generator) -> TranslationReadings:
    """Control: every target genre ``g`` is replaced by a random genre ``r(g) != g`` (one draw per song and
    genre), so candidate ``c`` is scored on the translation to another genre."""
    n = len(readings.cost)
    r = (np.arange(n) + rng.integers(1, n, size=n)) % n
    return TranslationReadings(readings.probs[r], readings.cost[r])


def tune_params(readings: Sequence[TranslationReadings], votes: Sequence[np.ndarray], labels: Sequence[int]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The refine parameters chosen on validation songs, as the training job does."""
    evidence = [evidence_from_readings(r, v, K_MAX) for r, v in zip(readings, votes, strict=True)]
    return choose_refine_params([None] * len(labels), [None] * len(labels), labels, None, None, evidence=evidence)


def decisions(evidence: Sequence[CandidateEvidence], params: dict[str, Any], *, threshold: float | None = None,
              cost_weight: float | None = None, vote_weight: float | None = None,
              score: str = "reading") -> list[int | None]:
    """Refine decisions of every song with ``params`` (any of them overridden); ``score="confidence"`` scores
    with ``P(c | G(x, c))`` instead of the reading (Bae's original rule, for comparison)."""
    k = int(params["top_k"])
    th = float(params["threshold"] if threshold is None else threshold)
    cw = float(params["cost_weight"] if cost_weight is None else cost_weight)
    vw = float(params.get("vote_weight", 0.0) if vote_weight is None else vote_weight)
    out = []
    for ev in evidence:
        reading = ev.confidence if score == "confidence" else ev.reading
        sub = CandidateEvidence(ev.candidates[:k], ev.confidence[:k], ev.cost[:k], ev.vote_shares[:k], reading[:k])
        out.append(decide_from_evidence(sub, th, cw, vw).genre_index)
    return out


def system_report(y: np.ndarray, pred: list[int | None], ref_ok: np.ndarray) -> dict[str, Any]:
    ok = np.array([p is not None and p == t for p, t in zip(pred, y, strict=True)], dtype=bool)
    decided = np.array([p is not None for p in pred], dtype=bool)
    flips = flip_counts(ref_ok, ok)
    return {
        "accuracy": float(ok.mean()), "coverage": float(decided.mean()),
        "accuracy_on_decided": float(ok[decided].mean()) if decided.any() else float("nan"),
        "n_right": int(ok.sum()), "wrong_to_right": flips["wrong_to_right"],
        "right_to_wrong": flips["right_to_wrong"], "mcnemar_p": mcnemar_exact(ref_ok, ok)["p_value"],
    }


def diagnosis(readings: Sequence[TranslationReadings], votes: Sequence[np.ndarray], y: np.ndarray) -> dict[str, float]:
    """Over ALL genres: how often the truth is the least-change genre / the most confidently read translation /
    the best reading / the vote argmax, and the mean cost to the true genre vs the others."""
    n = max(len(y), 1)
    rows = list(zip(readings, votes, y, strict=True))
    return {
        "n": len(y),
        "argmin_cost": sum(int(np.argmin(r.cost)) == t for r, _, t in rows) / n,
        "argmax_conf": sum(int(np.argmax(np.diag(r.probs))) == t for r, _, t in rows) / n,
        "argmax_reading": sum(int(np.argmax(r.probs.mean(axis=0))) == t for r, _, t in rows) / n,
        "votes": sum(int(np.argmax(v)) == t for _, v, t in rows) / n,
        "cost_true": float(np.mean([r.cost[t] for r, _, t in rows])) if rows else float("nan"),
        "cost_others": float(np.mean([np.delete(r.cost, t).mean() for r, _, t in rows])) if rows else float("nan"),
    }


def _agg(rows: list[dict[str, Any]], key: str, fmt: str) -> str:
    v = np.array([r[key] for r in rows], dtype=float)
    if len(v) == 1 or np.allclose(v, v[0], equal_nan=True):
        return format(v[0], fmt)
    return f"{format(np.nanmean(v), fmt)} [{format(np.nanmin(v), fmt)}..{format(np.nanmax(v), fmt)}]"


def format_tables(results: dict[str, Any], systems: Sequence[str]) -> list[str]:
    lines = []
    for split_name, res in results["splits"].items():
        lines += ["", f"### {split_name}: {res['n_unclassified']} of {res['n_songs']} songs unclassified by the CNN "
                      f"(CNN forced accuracy on all songs {res['cnn_accuracy_forced_all']:.3f}; true genre in the "
                      f"top-2 votes of {res['topk_oracle_on_unclassified'][2]:.3f}, top-3 "
                      f"{res['topk_oracle_on_unclassified'][3]:.3f} of the unclassified)", "",
                  "| system | accuracy | coverage | acc. on decided | wrong->right | right->wrong | McNemar p |",
                  "|---|---|---|---|---|---|---|"]
        for name in systems:
            rows = [s["systems"][name] for s in res["seeds"] if name in s["systems"]]
            if rows:
                lines.append(f"| {name} | {_agg(rows, 'accuracy', '.3f')} | {_agg(rows, 'coverage', '.2f')} | "
                             f"{_agg(rows, 'accuracy_on_decided', '.3f')} | {_agg(rows, 'wrong_to_right', '.1f')} | "
                             f"{_agg(rows, 'right_to_wrong', '.1f')} | {_agg(rows, 'mcnemar_p', '.3g')} |")
        lines.append("")
        for s in res["seeds"]:
            d = s["diagnosis"]
            lines.append(f"seed {s['seed']}: " + ", ".join(
                f"{n} {s['systems'][n]['accuracy']:.3f}" for n in systems if n in s["systems"])
                + f"; over all genres the truth is the least-change / most confidently read / best-read genre / "
                f"vote argmax for {d['argmin_cost']:.2f} / {d['argmax_conf']:.2f} / {d['argmax_reading']:.2f} / "
                f"{d['votes']:.2f} of the songs; cost true {d['cost_true']:.3f} vs others {d['cost_others']:.3f}")
        lines.append(f"whole split, share of songs labelled right: CNN alone {res['cnn_decided_right_all']:.3f}, "
                     "with the GAN stage " + ", ".join(f"{s['decided_right_all_with_gan']:.3f}" for s in res["seeds"])
                     + " (per seed)")
    lines.append("")
    lines += [f"refine parameters, seed {seed}: " + "; ".join(f"{src}: {p}" for src, p in per.items())
              for seed, per in results["refine_params"].items()]
    return lines


def done_check(results: dict[str, Any], system: str) -> str:
    """The issue's criterion on the shifted split for ``system``, per seed."""
    res = results["splits"].get("shifted")
    if not res or not res["seeds"]:
        return "done criterion: no shifted split evaluated"
    parts = []
    for s in res["seeds"]:
        g, a = s["systems"][system], s["systems"]["forced_argmax"]
        gain = g["accuracy"] - a["accuracy"]
        ok = gain >= 0.10 and g["mcnemar_p"] < 0.05 and 3 * g["right_to_wrong"] <= g["wrong_to_right"]
        parts.append(f"seed {s['seed']}: {100 * gain:+.1f} pts, p={g['mcnemar_p']:.3g}, "
                     f"flips w->r {g['wrong_to_right']} / r->w {g['right_to_wrong']} -> {'MET' if ok else 'not met'}")
    return (f"done criterion for {system} (shifted: GAN >= forced argmax + 10 pts, McNemar p < 0.05, "
            "r->w <= w->r / 3): " + "; ".join(parts))
