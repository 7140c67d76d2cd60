"""Ablation of the GAN refine stage on the songs the CNN leaves UNCLASSIFIED.

For each evaluation split (the in-domain test split and the shifted split) the CNN bundle votes on every
song; the songs it leaves unclassified form the subset on which every system below is compared, so all
systems see the SAME songs (paired comparison). Songs the CNN classified are never changed.

  (a) forced argmax    the genre with the most votes (the reference for flips and McNemar)
  (b) TTA              forced argmax of the votes of overlapping slices (hop --tta-hop frames, i.e. every
                       slice shifted by 1/4, 1/2, 3/4 of its length added to the original ones)
  (c) GAN stage        genre_core.refine with the bundle's own top_k / cost_weight / threshold (chosen on
                       validation songs); a song it leaves unclassified counts as not right
      GAN forced       the same, threshold 0 (every song decided)
      GAN conf only    cost_weight 0 (the CNN's confidence on translated slices alone), forced
      GAN cost only    the translation cost alone (cost_weight 1e6), forced
  (d) identity ctrl    the identity map as "generator", same parameters (reduces to (a) among the top-k)
      random ctrl      each candidate c translated to a random genre != c, scored as if it were c

Accuracy is over all songs of the subset (undecided = not right); coverage is the share decided; flips and
the exact McNemar p-value compare each system with (a) (genre_core.metrics). Everything is repeated for
each GAN bundle (one per training seed) and summarised as mean and range. Nothing is tuned here: the
refine parameters come from the bundles (validation songs), test and shifted songs are only evaluated.

  python benchmarks/gan_ablation.py --cnn /work/models/cnn-default \\
      --gan /work/models/gan-dev-s0 --gan /work/models/gan-dev-s1 --gan /work/models/gan-dev-s2 \\
      --picture /tmp/gan_translations.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import record  # noqa: E402

from genre_core.artifacts import load_cnn_bundle  # noqa: E402
from genre_core.features import slice_mel  # noqa: E402
from genre_core.metrics import flip_counts, mcnemar_exact  # noqa: E402
from genre_core.models.gan import load_gan_bundle  # noqa: E402
from genre_core.refine import CandidateEvidence, candidate_evidence, decide_from_evidence  # noqa: E402
from genre_core.training.cnn import slice_probabilities  # noqa: E402
from genre_core.voting import decide  # noqa: E402
from jobs.train_gan import DEFAULT_CACHE_DIR, load_catalog_mels  # noqa: E402

COST_ONLY_WEIGHT = 1e6
SYSTEMS = ("forced_argmax", "tta", "gan", "gan_forced", "gan_conf_only", "gan_cost_only", "identity_ctrl",
           "random_ctrl")


class IdentityTranslator:
    """Control: "translates" every slice to itself."""

    training = False

    def __call__(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return x


class RandomGenreTranslator:
    """Control: translates to a random genre other than the one asked for (one draw per genre asked in a
    call, i.e. per song and candidate), so the score of candidate c is computed on a translation to r != c."""

    training = False

    def __init__(self, generator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n_classes: int,
                 seed: int) -> None:
        self.generator, self.n_classes = generator, n_classes
        self.rng = np.random.default_rng(seed)

    def __call__(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        mapping = {int(g): int((g + self.rng.integers(1, self.n_classes)) % self.n_classes)
                   for g in torch.unique(c).tolist()}
        r = torch.tensor([mapping[int(g)] for g in c.tolist()], device=c.device)
        return self.generator(x, r)


def cost_as_classifier(gen: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], cnn: torch.nn.Module,
                       slices: list[np.ndarray], votes: list[np.ndarray], y: np.ndarray,
                       standardize: bool) -> dict[str, float]:
    """Translate to EVERY genre: how often the least-change genre / the most confidently read translation /
    the vote argmax is the truth, and the mean cost to the true genre vs the others."""
    hits = {"argmin_cost": 0, "argmax_conf": 0, "votes": 0}
    own, other = [], []
    for sl, v, t in zip(slices, votes, y, strict=True):
        ev = candidate_evidence(sl, v, gen, cnn, len(v), standardize=standardize)
        cand = ev.candidates.tolist()
        hits["argmin_cost"] += cand[int(np.argmin(ev.cost))] == t
        hits["argmax_conf"] += cand[int(np.argmax(ev.confidence))] == t
        hits["votes"] += cand[0] == t
        own.append(float(ev.cost[cand.index(t)]))
        other.append(float(np.delete(ev.cost, cand.index(t)).mean()))
    n = max(len(y), 1)
    return {"n": len(y), **{k: v / n for k, v in hits.items()},
            "cost_true": float(np.mean(own)) if own else float("nan"),
            "cost_others": float(np.mean(other)) if other else float("nan")}


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


def decisions_from(evidence: list[CandidateEvidence], k: int, threshold: float, weight: float) -> list[int | None]:
    out = []
    for ev in evidence:
        sub = CandidateEvidence(ev.candidates[:k], ev.confidence[:k], ev.cost[:k], ev.vote_shares[:k])
        out.append(decide_from_evidence(sub, threshold, weight).genre_index)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cnn", default="/work/models/cnn-default")
    parser.add_argument("--gan", action="append", required=True, help="GAN bundle (repeat: one per seed)")
    parser.add_argument("--catalog", default="/work/corpus/default/catalog.parquet")
    parser.add_argument("--split", default="test", help="in-domain evaluation split of --catalog (test)")
    parser.add_argument("--shifted-catalog", default="/work/corpus/shifted/catalog.parquet")
    parser.add_argument("--shifted-split", default="shifted")
    parser.add_argument("--tta-hop", type=int, default=32, help="slice hop (frames) of the TTA votes (32)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out-json", default=None, help="write every figure here")
    parser.add_argument("--picture", default=None, help="draw translations of a few unclassified shifted songs")
    parser.add_argument("--picture-songs", type=int, default=4)
    parser.add_argument("--diagnose-songs", type=int, default=0,
                        help="also measure, on up to N songs per split (all / unclassified), how often the genre "
                             "the first GAN reaches with the least change (over ALL genres) is the true one")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)

    torch.set_num_threads(max(1, args.threads))
    t_start = time.perf_counter()
    cnn, cnn_meta = load_cnn_bundle(args.cnn)
    fc = cnn_meta.feature_config
    standardize = fc.normalization == "per_slice"
    cls_index = {g: i for i, g in enumerate(cnn_meta.classes)}
    gans = [load_gan_bundle(url, cnn_version=cnn_meta.version, feature_version=cnn_meta.feature_version)
            for url in args.gan]
    results: dict[str, Any] = {"cnn": cnn_meta.version, "gans": [m.version for _, m in gans],
                               "refine_params": [m.refine for _, m in gans], "splits": {}}
    picture_items: list[tuple[str, str, np.ndarray, np.ndarray]] = []

    for split_name, catalog, split in (("in-domain " + args.split, args.catalog, args.split),
                                       ("shifted", args.shifted_catalog, args.shifted_split)):
        df, mels = load_catalog_mels(catalog, fc, (split,), args.cache_dir, args.workers)
        y_all = np.array([cls_index[g] for g in df["genre"]])
        slices = [slice_mel(np.asarray(mels[t]), fc) for t in df["track_id"]]
        probs = slice_probabilities(cnn, slices)
        votes = [decide(p, cnn_meta.voting.tau, cnn_meta.voting.margin) for p in probs]
        unc = np.flatnonzero([not v.classified for v in votes])
        y = y_all[unc]
        forced = [votes[i].top_index for i in unc]
        ref_ok = np.array([f == t for f, t in zip(forced, y, strict=True)])
        tta_probs = slice_probabilities(cnn, [slice_mel(np.asarray(mels[df["track_id"][i]]), fc,
                                                        hop_frames=args.tta_hop) for i in unc])
        tta = [int(p.mean(axis=0).argmax()) for p in tta_probs]
        classified_ok = int(sum(v.genre_index == t for v, t in zip(votes, y_all, strict=True) if v.classified))
        split_res: dict[str, Any] = {
            "n_songs": int(len(y_all)), "n_unclassified": int(len(unc)),
            "cnn_accuracy_forced_all": float(np.mean([v.top_index == t for v, t in zip(votes, y_all, strict=True)])),
            "cnn_decided_right_all": classified_ok / len(y_all),
            "topk_oracle_on_unclassified": {
                k: float(np.mean([t in np.argsort(-votes[i].probabilities, kind="stable")[:k]
                                  for i, t in zip(unc, y, strict=True)])) for k in (2, 3)},
            "seeds": [],
        }
        print(f"{split_name}: {len(y_all)} songs, {len(unc)} unclassified by the CNN", flush=True)
        if split_name == "shifted" and args.picture:
            picture_items = [(df["track_id"][i], df["genre"][i], slices[i], probs[i].mean(axis=0)) for i in unc]
        for (gen, gmeta), url in zip(gans, args.gan, strict=True):
            t0 = time.perf_counter()
            k, thr, wgt = int(gmeta.refine["top_k"]), float(gmeta.refine["threshold"]), float(
                gmeta.refine["cost_weight"])
            seed = int((gmeta.train_config or {}).get("seed", 0))
            ev = [candidate_evidence(slices[i], probs[i].mean(axis=0), gen, cnn, k, standardize=standardize)
                  for i in unc]
            ev_id = [candidate_evidence(slices[i], probs[i].mean(axis=0), IdentityTranslator(), cnn, k,
                                        standardize=standardize) for i in unc]
            rnd = RandomGenreTranslator(gen, len(cnn_meta.classes), seed=1000 + seed)
            ev_rnd = [candidate_evidence(slices[i], probs[i].mean(axis=0), rnd, cnn, k, standardize=standardize)
                      for i in unc]
            preds: dict[str, list[int | None]] = {
                "forced_argmax": list(forced), "tta": tta,
                "gan": decisions_from(ev, k, thr, wgt),
                "gan_forced": decisions_from(ev, k, 0.0, wgt),
                "gan_conf_only": decisions_from(ev, k, 0.0, 0.0),
                "gan_cost_only": decisions_from(ev, k, 0.0, COST_ONLY_WEIGHT),
                "identity_ctrl": decisions_from(ev_id, k, thr, wgt),
                "random_ctrl": decisions_from(ev_rnd, k, thr, wgt),
            }
            rep = {name: system_report(y, preds[name], ref_ok) for name in SYSTEMS}
            cost_true = [float(e.cost[list(e.candidates).index(t)]) for e, t in zip(ev, y, strict=True)
                         if t in e.candidates]
            cost_other = [float(c) for e, t in zip(ev, y, strict=True) for cand, c in zip(e.candidates, e.cost,
                                                                                          strict=True) if cand != t]
            split_res["seeds"].append({
                "gan": url, "version": gmeta.version, "seed": seed, "refine": gmeta.refine, "systems": rep,
                "decided_right_all_with_gan": (classified_ok + rep["gan"]["n_right"]) / len(y_all),
                "mean_cost_true_genre": float(np.mean(cost_true)) if cost_true else float("nan"),
                "mean_cost_other_candidates": float(np.mean(cost_other)) if cost_other else float("nan"),
                "seconds": time.perf_counter() - t0,
            })
            print(f"  seed {seed} ({gmeta.refine}): " + ", ".join(
                f"{n} {rep[n]['accuracy']:.3f}" for n in SYSTEMS) + f" ({time.perf_counter() - t0:.0f} s)",
                flush=True)
        if args.diagnose_songs:
            gen0 = gans[0][0]
            split_res["diagnosis"] = {
                subset: cost_as_classifier(gen0, cnn, [slices[i] for i in idx[:args.diagnose_songs]],
                                           [probs[i].mean(axis=0) for i in idx[:args.diagnose_songs]],
                                           y_all[idx[:args.diagnose_songs]], standardize)
                for subset, idx in (("all", np.random.default_rng(0).permutation(len(y_all))),
                                    ("unclassified", unc))}
            print(f"  diagnosis (first GAN, all genres as candidates): {split_res['diagnosis']}", flush=True)
        results["splits"][split_name] = split_res

    lines = format_tables(results)
    print("\n".join(lines))
    verdict = done_check(results)
    print(verdict)
    if args.picture and picture_items:
        from genre_core.report_gan import draw_translations, translation_example

        gen, gmeta = gans[0]
        examples = [translation_example(tid, genre, sl, vp, gen, cnn, cnn_meta.classes,
                                        top_k=max(2, int(gmeta.refine["top_k"])),
                                        threshold=float(gmeta.refine["threshold"]),
                                        cost_weight=float(gmeta.refine["cost_weight"]), standardize=standardize)
                    for tid, genre, sl, vp in picture_items[:args.picture_songs]]
        draw_translations(args.picture, examples, title=f"GAN {gmeta.version}: unclassified shifted songs")
        print(f"picture: {args.picture}")
    results["verdict"] = verdict
    results["wall_s"] = time.perf_counter() - t_start
    if args.out_json:
        with open(args.out_json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, default=float)
    if not args.no_record:
        record("GAN refine ablation (unclassified songs)", [
            f"- CNN {results['cnn']}; GAN bundles {', '.join(results['gans'])}; refine parameters chosen on "
            f"validation songs: {results['refine_params']}",
            "- accuracy over the unclassified subset (undecided = not right); flips/McNemar against forced "
            "argmax; mean [min..max] over the GAN seeds", "", *lines, "", f"- {verdict}",
            f"- wall time {results['wall_s']:.0f} s",
        ], argv)
    return 0


def format_tables(results: dict[str, Any]) -> list[str]:
    lines = []
    for split_name, res in results["splits"].items():
        lines += ["", f"### {split_name}: {res['n_unclassified']} of {res['n_songs']} songs unclassified by the CNN "
                      f"(CNN forced accuracy on all songs {res['cnn_accuracy_forced_all']:.3f}; true genre in the "
                      f"top-2 votes of {res['topk_oracle_on_unclassified'][2]:.3f}, top-3 "
                      f"{res['topk_oracle_on_unclassified'][3]:.3f} of the unclassified)", "",
                  "| system | accuracy | coverage | acc. on decided | wrong->right | right->wrong | McNemar p |",
                  "|---|---|---|---|---|---|---|"]
        for name in SYSTEMS:
            rows = [s["systems"][name] for s in res["seeds"]]

            def agg(key: str, fmt: str, rows: list[dict[str, Any]] = rows) -> str:
                v = np.array([r[key] for r in rows], dtype=float)
                if len(v) == 1 or np.allclose(v, v[0], equal_nan=True):
                    return format(v[0], fmt)
                return f"{format(np.nanmean(v), fmt)} [{format(np.nanmin(v), fmt)}..{format(np.nanmax(v), fmt)}]"

            lines.append(f"| {name} | {agg('accuracy', '.3f')} | {agg('coverage', '.2f')} | "
                         f"{agg('accuracy_on_decided', '.3f')} | {agg('wrong_to_right', '.1f')} | "
                         f"{agg('right_to_wrong', '.1f')} | {agg('mcnemar_p', '.3g')} |")
        if "diagnosis" in res:
            lines.append("")
            parts = [f"{sub} ({d['n']} songs) {d['argmin_cost']:.2f} / {d['argmax_conf']:.2f} / {d['votes']:.2f}, "
                     f"cost true {d['cost_true']:.3f} vs others {d['cost_others']:.3f}"
                     for sub, d in res["diagnosis"].items()]
            lines.append("translation to every genre (first GAN): share of songs whose true genre is the one reached "
                         "with the least change / the most confidently read translation / the vote argmax: "
                         + "; ".join(parts))
        costs = [(s["mean_cost_true_genre"], s["mean_cost_other_candidates"]) for s in res["seeds"]]
        lines.append("")
        lines.append(f"whole split, share of songs labelled right: CNN alone {res['cnn_decided_right_all']:.3f}, "
                     "with the GAN stage " + ", ".join(f"{s['decided_right_all_with_gan']:.3f}" for s in res["seeds"])
                     + " (per seed)")
        lines.append("mean translation cost to the true genre vs the other candidates, per seed: "
                     + "; ".join(f"{a:.3f} vs {b:.3f}" for a, b in costs))
    return lines


def done_check(results: dict[str, Any]) -> str:
    """The issue's criterion on the shifted split, per seed and for the seed mean."""
    res = results["splits"].get("shifted")
    if not res or not res["seeds"]:
        return "done criterion: no shifted split evaluated"
    parts = []
    for s in res["seeds"]:
        g, a = s["systems"]["gan"], s["systems"]["forced_argmax"]
        gain = g["accuracy"] - a["accuracy"]
        ok = gain >= 0.10 and g["mcnemar_p"] < 0.05 and 3 * g["right_to_wrong"] <= g["wrong_to_right"]
        parts.append(f"seed {s['seed']}: {100 * gain:+.1f} pts, p={g['mcnemar_p']:.3g}, "
                     f"flips {g['wrong_to_right']}/{g['right_to_wrong']} -> {'MET' if ok else 'not met'}")
    return "done criterion (shifted: GAN >= forced argmax + 10 pts, McNemar p < 0.05, r->w <= w->r / 3): " + \
        "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
