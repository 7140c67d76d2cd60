"""Ablation of the GAN stage on the songs the CNN leaves UNCLASSIFIED, against the cheap baselines.

The CNN bundle votes on every song of --eval-catalog (new songs, e.g. rendered through a soundfont held out
from CNN and GAN training); the songs it leaves unclassified form the subset on which every system below is
compared, so all systems see the SAME songs (paired comparison). Songs the CNN classified are never changed.

  forced_argmax   the genre with the most votes (the reference for flips and McNemar)
  tta             forced argmax of the votes of overlapping slices (hop --tta-hop frames)
  adabn           forced argmax with the CNN's BatchNorm statistics re-estimated on the unlabelled songs of
                  --tune-catalog (the new domain's validation songs, never the evaluated ones)
  band_match      forced argmax after matching each mel band's mean/std over the song to the training songs'
                  (split 'train' of --train-catalog)
  gan             the GAN stage as shipped: genre_core.refine with the bundle's parameters (chosen on validation
                  songs by `train gan`); a song it leaves unclassified counts as not right
  gan_forced      the same weight, threshold 0 (every song decided)
  gan_only        the GAN votes alone (weight 1, threshold 0)
  identity_ctrl   the identity as "generator", the bundle's parameters
  random_ctrl     each slice changed by what G changes in another, random slice, the bundle's parameters

Accuracy is over all songs of the subset (undecided = not right); flips and the exact McNemar p-value compare
each system with forced_argmax (genre_core.metrics). The GAN rows are repeated for each --gan bundle (one per
training seed); the baselines do not depend on the seed. Nothing is tuned on the evaluated songs.

  python benchmarks/gan_ablation.py --cnn CNN --gan GAN-s0 --gan GAN-s1 --gan GAN-s2 \\
      --train-catalog data/paired/catalog.parquet --tune-catalog data/heldout-val/catalog.parquet \\
      --eval-catalog data/heldout-test/catalog.parquet --out-json ablation.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _gan_eval import (  # noqa: E402
    Identity,
    RandomChange,
    adabn,
    band_match,
    band_statistics,
    done_check,
    format_tables,
    system_report,
)
from _results import record  # noqa: E402

from genre_core.artifacts import load_cnn_bundle  # noqa: E402
from genre_core.features import slice_mel  # noqa: E402
from genre_core.inference import slice_probabilities  # noqa: E402
from genre_core.models.gan_bundle import load_gan_bundle  # noqa: E402
from genre_core.refine import RefineParams, decide, gan_votes  # noqa: E402
from genre_core.voting import decide as vote_decide  # noqa: E402
from jobs.mel_cache import DEFAULT_CACHE_DIR, load_catalog_mels  # noqa: E402

SYSTEMS = ("forced_argmax", "tta", "adabn", "band_match", "gan", "gan_forced", "gan_only", "identity_ctrl",
           "random_ctrl")


def forced(probs: list[np.ndarray]) -> list[int]:
    return [int(p.mean(axis=0).argmax()) for p in probs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cnn", default="models/default/cnn")
    parser.add_argument("--gan", action="append", required=True,
                        help="GAN bundle (repeat: one per seed); a bundle's votes average its generators'")
    parser.add_argument("--train-catalog", required=True, help="its split 'train' gives the band statistics")
    parser.add_argument("--tune-catalog", required=True, help="validation songs of the new domain (AdaBN)")
    parser.add_argument("--eval-catalog", required=True, help="the evaluated songs (every song with a genre)")
    parser.add_argument("--split-name", default="held-out soundfont", help="name of the evaluated split")
    parser.add_argument("--tta-hop", type=int, default=None, help="slice hop of the TTA votes (a quarter slice)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out-json", default=None, help="write every figure here (for the report's --ablation)")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)

    torch.set_num_threads(max(1, args.threads))
    t_start = time.perf_counter()
    cnn, meta = load_cnn_bundle(args.cnn)
    fc, voting = meta.feature_config, meta.voting
    gans = [load_gan_bundle(url, cnn_version=meta.version, feature_version=meta.feature_version) for url in args.gan]
    cls_index = {g: i for i, g in enumerate(meta.classes)}

    df, mels = load_catalog_mels(args.eval_catalog, fc, None, args.cache_dir, args.workers)
    df = df[[np.asarray(mels[t]).shape[1] >= fc.slice_frames for t in df["track_id"]]].reset_index(drop=True)
    y_all = np.array([cls_index[g] for g in df["genre"]])
    slices = [slice_mel(np.asarray(mels[t]), fc) for t in df["track_id"]]
    probs = slice_probabilities(cnn, slices)
    votes = [vote_decide(p, voting.tau, voting.margin) for p in probs]
    unc = np.flatnonzero([not v.classified for v in votes])
    y = y_all[unc]
    sub = [slices[i] for i in unc]
    cnn_votes = [probs[i].mean(axis=0) for i in unc]
    ref = np.array([int(np.argmax(v)) for v in cnn_votes])
    ref_ok = ref == y
    print(f"{args.split_name}: {len(df)} songs, {len(unc)} unclassified by the CNN", flush=True)

    tune, tune_mels = load_catalog_mels(args.tune_catalog, fc, None, args.cache_dir, args.workers)
    tune_slices = [slice_mel(np.asarray(tune_mels[t]), fc) for t in tune["track_id"]
                   if np.asarray(tune_mels[t]).shape[1] >= fc.slice_frames]
    train, train_mels = load_catalog_mels(args.train_catalog, fc, ("train",), args.cache_dir, args.workers)
    mean, std = band_statistics([train_mels[t] for t in train["track_id"]])
    tid = df["track_id"]
    hop = args.tta_hop or max(1, fc.slice_frames // 4)
    baselines = {
        "forced_argmax": list(ref),
        "tta": forced(slice_probabilities(cnn, [slice_mel(np.asarray(mels[tid[i]]), fc, hop_frames=hop)
                                                for i in unc])),
        "adabn": forced(slice_probabilities(adabn(cnn, tune_slices), sub)),
        "band_match": forced(slice_probabilities(cnn, [slice_mel(band_match(mels[tid[i]], mean, std), fc)
                                                       for i in unc])),
    }
    classified_right = int(sum(v.genre_index == t for v, t in zip(votes, y_all, strict=True) if v.classified))
    split: dict[str, Any] = {"n_songs": len(df), "n_unclassified": len(unc),
                             "cnn_accuracy_forced_all": float(np.mean(forced(probs) == y_all)),
                             "cnn_decided_right_all": classified_right / len(df), "seeds": []}
    results: dict[str, Any] = {"cnn": meta.version, "gans": [m.version for _, m in gans], "refine_params": {},
                               "splits": {args.split_name: split}}

    def rule(gens: list[torch.nn.Module], params: RefineParams) -> list[int | None]:
        g = gan_votes(sub, gens, cnn)
        return [decide(v, gi, params).genre_index for v, gi in zip(cnn_votes, g, strict=True)]

    for gens, gmeta in gans:
        t0 = time.perf_counter()
        seed = int((gmeta.train_config or {}).get("seed", len(split["seeds"])))
        p = gmeta.refine
        results["refine_params"][seed] = {"gan_weight": p.gan_weight, "threshold": p.threshold}
        g = gan_votes(sub, gens, cnn)
        preds = dict(baselines)
        preds["gan"] = [decide(v, gi, p).genre_index for v, gi in zip(cnn_votes, g, strict=True)]
        preds["gan_forced"] = [decide(v, gi, RefineParams(p.gan_weight, 0.0)).best_index
                               for v, gi in zip(cnn_votes, g, strict=True)]
        preds["gan_only"] = [int(np.argmax(gi)) for gi in g]
        preds["identity_ctrl"] = rule([Identity().eval()], p)
        preds["random_ctrl"] = rule([RandomChange(gen, seed=1000 + seed + k).eval() for k, gen in enumerate(gens)], p)
        rep = {name: system_report(y, preds[name], ref_ok) for name in SYSTEMS}
        split["seeds"].append({"gan": gmeta.url, "version": gmeta.version, "seed": seed, "systems": rep,
                               "decided_right_all_with_gan": (classified_right + rep["gan"]["n_right"]) / len(df),
                               "seconds": time.perf_counter() - t0})
        print(f"  seed {seed}: " + ", ".join(f"{n} {rep[n]['accuracy']:.3f}" for n in SYSTEMS), flush=True)

    lines = format_tables(results, SYSTEMS)
    verdicts = [done_check(results, name, args.split_name) for name in ("gan", "gan_forced")]
    print("\n".join(lines + verdicts))
    results["verdicts"] = verdicts
    results["wall_s"] = time.perf_counter() - t_start
    if args.out_json:
        with open(args.out_json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, default=float)
    if not args.no_record:
        record("GAN stage ablation (unclassified songs)", [
            f"- CNN {results['cnn']}; GAN bundles {', '.join(results['gans'])}",
            "- accuracy over the unclassified subset (undecided = not right); flips/McNemar against forced "
            "argmax; mean [min..max] over the GAN seeds", "", "```", *lines, "```", "",
            *[f"- {v}" for v in verdicts], f"- wall time {results['wall_s']:.0f} s",
        ], argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
