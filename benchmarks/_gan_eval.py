"""Helpers of benchmarks/gan_ablation.py: the cheap baselines (AdaBN, per-band matching), the random-change
control, paired figures against the forced vote, the tables and the issue's criterion."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from genre_core.metrics import flip_counts, mcnemar_exact

# ---- baselines -------------------------------------------------------------------------------------------------

def adabn(cnn: nn.Module, slices: Sequence[np.ndarray], batch_size: int = 64) -> nn.Module:
    """A copy of ``cnn`` whose BatchNorm statistics are re-estimated on ``slices`` (unlabelled songs of the new
    domain; Li et al. 2016), in eval mode. Dropout stays off while the statistics are gathered."""
    model = copy.deepcopy(cnn)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("the CNN has no BatchNorm layer to re-estimate")
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    x = np.concatenate(list(slices))
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)))
    return model.eval()


def band_statistics(mels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std over the frames of training songs' log-mels ``[n_mels, T]``."""
    allf = np.concatenate([np.asarray(m, np.float64) for m in mels], axis=1)
    return allf.mean(axis=1), allf.std(axis=1) + 1e-6


def band_match(mel: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """A song's log-mel with each band's mean and std over the song matched to the training statistics."""
    m = np.asarray(mel, np.float64)
    own_mean, own_std = m.mean(axis=1, keepdims=True), m.std(axis=1, keepdims=True) + 1e-6
    return ((m - own_mean) / own_std * std[:, None] + mean[:, None]).astype(np.float32)


class RandomChange(nn.Module):
    """Control: ``f + delta``, where ``delta`` is what the generator changes in ANOTHER slice's GAN features (drawn
    at random from the same batch): a change of the generator's size and texture that is unrelated to the input."""

    def __init__(self, generator: nn.Module, seed: int) -> None:
        super().__init__()
        self.generator, self.gen = generator, torch.Generator().manual_seed(seed)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        perm = torch.randperm(len(f), generator=self.gen) if len(f) > 1 else torch.zeros(1, dtype=torch.long)
        return f + self.generator.delta(f[perm])


class Identity(nn.Module):
    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f


# ---- paired figures ------------------------------------------------------------------------------------------

def system_report(y: np.ndarray, pred: Sequence[int | None], ref_ok: np.ndarray) -> dict[str, Any]:
    """Accuracy over the songs (undecided = not right), coverage, and flips / exact McNemar against ``ref_ok``."""
    ok = np.array([p is not None and p == t for p, t in zip(pred, y, strict=True)], dtype=bool)
    decided = np.array([p is not None for p in pred], dtype=bool)
    flips = flip_counts(ref_ok, ok)
    return {
        "accuracy": float(ok.mean()), "coverage": float(decided.mean()),
        "accuracy_on_decided": float(ok[decided].mean()) if decided.any() else float("nan"),
        "n_right": int(ok.sum()), "wrong_to_right": flips["wrong_to_right"],
        "right_to_wrong": flips["right_to_wrong"], "mcnemar_p": mcnemar_exact(ref_ok, ok)["p_value"],
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
                      f"(CNN forced accuracy on all songs {res['cnn_accuracy_forced_all']:.3f})", "",
                  "| system | accuracy | coverage | acc. on decided | wrong->right | right->wrong | McNemar p |",
                  "|---|---|---|---|---|---|---|"]
        for name in systems:
            rows = [s["systems"][name] for s in res["seeds"] if name in s["systems"]]
            if rows:
                lines.append(f"| {name} | {_agg(rows, 'accuracy', '.3f')} | {_agg(rows, 'coverage', '.2f')} | "
                             f"{_agg(rows, 'accuracy_on_decided', '.3f')} | {_agg(rows, 'wrong_to_right', '.1f')} | "
                             f"{_agg(rows, 'right_to_wrong', '.1f')} | {_agg(rows, 'mcnemar_p', '.3g')} |")
        lines.append("")
        lines.append("whole split, share of songs labelled right: CNN alone "
                     f"{res['cnn_decided_right_all']:.3f}, with the GAN stage "
                     + ", ".join(f"{s['decided_right_all_with_gan']:.3f}" for s in res["seeds"]) + " (per seed)")
    lines.append("")
    lines += [f"refine parameters of seed {seed} (chosen on validation songs): {p}"
              for seed, p in results["refine_params"].items()]
    return lines


BASELINES = ("tta", "adabn", "band_match")


def done_check(results: dict[str, Any], system: str, split_name: str) -> str:
    """The issue's criterion for ``system`` on ``split_name``, in the mean over the GAN seeds."""
    res = results["splits"].get(split_name)
    if not res or not res["seeds"]:
        return f"done criterion: split {split_name!r} not evaluated"
    rows = [s["systems"] for s in res["seeds"]]
    mean = {k: float(np.mean([r[system][k] for r in rows])) for k in ("accuracy", "mcnemar_p", "wrong_to_right",
                                                                     "right_to_wrong")}
    forced = float(np.mean([r["forced_argmax"]["accuracy"] for r in rows]))
    best_name = max(BASELINES, key=lambda b: np.mean([r[b]["accuracy"] for r in rows]))
    best = float(np.mean([r[best_name]["accuracy"] for r in rows]))
    gain, over_best = mean["accuracy"] - forced, mean["accuracy"] - best
    checks = {"+10 pts over forced": gain >= 0.10, "McNemar p < 0.05": mean["mcnemar_p"] < 0.05,
              "r->w <= w->r / 3": 3 * mean["right_to_wrong"] <= mean["wrong_to_right"],
              f"+3 pts over the best cheap baseline ({best_name})": over_best >= 0.03}
    return (f"done criterion for {system} on {split_name} (mean over {len(rows)} seeds): {100 * gain:+.1f} pts over "
            f"forced, {100 * over_best:+.1f} over {best_name}, p={mean['mcnemar_p']:.3g}, flips w->r "
            f"{mean['wrong_to_right']:.1f} / r->w {mean['right_to_wrong']:.1f}: "
            + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in checks.items()))
