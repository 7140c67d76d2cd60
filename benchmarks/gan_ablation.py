"""Ablation of the GAN refine stage on the songs the CNN leaves UNCLASSIFIED.

For each evaluation split (the in-domain test split and the shifted split) the CNN bundle votes on every
song; the songs it leaves unclassified form the subset on which every system below is compared, so all
systems see the SAME songs (paired comparison). Songs the CNN classified are never changed.

  (a) forced argmax    the genre with the most votes (the reference for flips and McNemar)
  (b) TTA              forced argmax of the votes of overlapping slices (hop --tta-hop frames, i.e. every
                       slice shifted by 1/4, 1/2, 3/4 of its length added to the original ones)
  (c) GAN stage        genre_core.refine with the refine parameters chosen on in-domain VALIDATION songs
                       (split 'val' of --catalog, as the training job chooses them); a song it leaves
                       unclassified counts as not right
      GAN, shifted-chain val   the same rule with parameters chosen on --tune-catalog instead (validation songs
                       rendered with the shifted recording chain, disjoint from the evaluated ones); only
                       when --tune-catalog is given
      ..._forced       the same with threshold 0 (every song decided)
      GAN reading only the reading alone (vote_weight 0, cost_weight 0), forced
      GAN conf only    Bae's confidence P(c | G(x, c)) alone, forced
      GAN cost only    the translation cost alone, forced
  (d) identity ctrl    the identity map as "generator", same parameters (reduces to (a))
      random ctrl      each target genre replaced by a random other genre, same parameters
      (the controls use the parameters of the last GAN system: shifted-chain val when given)

Accuracy is over all songs of the subset (undecided = not right); coverage is the share decided; flips and
the exact McNemar p-value compare each system with (a) (genre_core.metrics). Everything is repeated for
each GAN bundle (one per training seed). Nothing is tuned on the evaluated songs. The translations of a song
to every genre are cached per GAN bundle in --cache-dir (they are the slow part).

  python benchmarks/gan_ablation.py --cnn models/default/cnn --catalog data/corpus/catalog.parquet \\
      --shifted-catalog data/shifted/catalog.parquet --gan GAN-s0 --gan GAN-s1 --gan GAN-s2 \\
      --tune-catalog data/gan-val-shifted/catalog.parquet --picture gan_translations.png
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
    COST_ONLY_WEIGHT,
    K_MAX,
    cached_readings,
    decisions,
    diagnosis,
    done_check,
    format_tables,
    identity_readings,
    random_genre_readings,
    system_report,
    tune_params,
)
from _results import record  # noqa: E402

from genre_core.artifacts import load_cnn_bundle  # noqa: E402
from genre_core.features import slice_mel  # noqa: E402
from genre_core.inference import slice_probabilities  # noqa: E402
from genre_core.models.gan import load_gan_bundle  # noqa: E402
from genre_core.refine import evidence_from_readings  # noqa: E402
from genre_core.training.gan import refine_tuning_set  # noqa: E402
from genre_core.voting import decide  # noqa: E402
from jobs.train_gan import DEFAULT_CACHE_DIR, load_catalog_mels  # noqa: E402


def songs_of(catalog: str, split: str, cnn: torch.nn.Module, meta: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Slices, slice probabilities, vote decisions and labels of the songs of one split."""
    fc = meta.feature_config
    df, mels = load_catalog_mels(catalog, fc, (split,), args.cache_dir, args.workers)
    if df.empty:
        raise ValueError(f"no songs of split {split!r} in {catalog}")
    cls_index = {g: i for i, g in enumerate(meta.classes)}
    slices = [slice_mel(np.asarray(mels[t]), fc) for t in df["track_id"]]
    probs = slice_probabilities(cnn, slices)
    return {"df": df, "mels": mels, "slices": slices, "probs": probs,
            "votes": [decide(p, meta.voting.tau, meta.voting.margin) for p in probs],
            "y": np.array([cls_index[g] for g in df["genre"]])}


def readings_for(data: dict[str, Any], idx: np.ndarray, gen: torch.nn.Module, version: str, cnn: torch.nn.Module,
                 n_classes: int, standardize: bool, cache_dir: str) -> list[Any]:
    return cached_readings(gen, version, cnn, [data["df"]["track_id"][i] for i in idx],
                           [data["slices"][i] for i in idx], n_classes, standardize, cache_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cnn", default="models/default/cnn")
    parser.add_argument("--gan", action="append", required=True, help="GAN bundle (repeat: one per seed)")
    parser.add_argument("--catalog", default="data/corpus/catalog.parquet")
    parser.add_argument("--split", default="test", help="in-domain evaluation split of --catalog (test)")
    parser.add_argument("--val-split", default="val", help="in-domain validation split of --catalog (val)")
    parser.add_argument("--shifted-catalog", default="data/shifted/catalog.parquet")
    parser.add_argument("--shifted-split", default="shifted")
    parser.add_argument("--tune-catalog", default=None,
                        help="also choose the refine parameters on this catalog's unclassified songs (validation "
                             "songs from the shifted recording chain, disjoint from the evaluated ones)")
    parser.add_argument("--tune-split", default="shifted")
    parser.add_argument("--tta-hop", type=int, default=32, help="slice hop (frames) of the TTA votes (32)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out-json", default=None, help="write every figure here")
    parser.add_argument("--picture", default=None, help="draw translations of a few unclassified shifted songs")
    parser.add_argument("--picture-songs", type=int, default=4)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)

    torch.set_num_threads(max(1, args.threads))
    t_start = time.perf_counter()
    cnn, cnn_meta = load_cnn_bundle(args.cnn)
    n_classes = len(cnn_meta.classes)
    standardize = cnn_meta.feature_config.normalization == "per_slice"
    gans = [load_gan_bundle(url, cnn_version=cnn_meta.version, feature_version=cnn_meta.feature_version)
            for url in args.gan]
    gan_system = "gan_shiftval" if args.tune_catalog else "gan"
    systems = ["forced_argmax", "tta", "gan", "gan_forced",
               *(["gan_shiftval", "gan_shiftval_forced"] if args.tune_catalog else []),
               "gan_reading_only", "gan_conf_only", "gan_cost_only", "identity_ctrl", "random_ctrl"]

    # refine parameters per GAN, chosen on validation songs only
    tune_sets = {"in-domain val": songs_of(args.catalog, args.val_split, cnn, cnn_meta, args)}
    if args.tune_catalog:
        tune_sets["shifted-chain val"] = songs_of(args.tune_catalog, args.tune_split, cnn, cnn_meta, args)
    params: list[dict[str, dict[str, Any]]] = []
    for gen, gmeta in gans:
        per: dict[str, dict[str, Any]] = {}
        for name, data in tune_sets.items():
            idx = np.array(refine_tuning_set(data["probs"], cnn_meta.voting, min_songs=40))
            rd = readings_for(data, idx, gen, gmeta.version, cnn, n_classes, standardize, args.cache_dir)
            per[name], sel = tune_params(rd, [data["votes"][i].probabilities for i in idx], data["y"][idx])
            print(f"{gmeta.version} refine parameters on {name}: {per[name]} ({sel['summary']})", flush=True)
        params.append(per)
    results: dict[str, Any] = {"cnn": cnn_meta.version, "gans": [m.version for _, m in gans],
                               "refine_params": {int((m.train_config or {}).get("seed", i)): p
                                                 for i, ((_, m), p) in enumerate(zip(gans, params, strict=True))},
                               "splits": {}}
    picture: list[tuple[str, str, np.ndarray, np.ndarray]] = []

    for split_name, catalog, split in (("in-domain " + args.split, args.catalog, args.split),
                                       ("shifted", args.shifted_catalog, args.shifted_split)):
        data = songs_of(catalog, split, cnn, cnn_meta, args)
        votes, y_all = data["votes"], data["y"]
        unc = np.flatnonzero([not v.classified for v in votes])
        y = y_all[unc]
        shares = [votes[i].probabilities for i in unc]
        forced = [votes[i].top_index for i in unc]
        ref_ok = np.array([f == t for f, t in zip(forced, y, strict=True)])
        tta_probs = slice_probabilities(cnn, [slice_mel(np.asarray(data["mels"][data["df"]["track_id"][i]]),
                                                        cnn_meta.feature_config, hop_frames=args.tta_hop)
                                              for i in unc])
        tta = [int(p.mean(axis=0).argmax()) for p in tta_probs]
        classified_ok = int(sum(v.genre_index == t for v, t in zip(votes, y_all, strict=True) if v.classified))
        split_res: dict[str, Any] = {
            "n_songs": int(len(y_all)), "n_unclassified": int(len(unc)),
            "cnn_accuracy_forced_all": float(np.mean([v.top_index == t for v, t in zip(votes, y_all, strict=True)])),
            "cnn_decided_right_all": classified_ok / len(y_all),
            "topk_oracle_on_unclassified": {
                k: float(np.mean([t in np.argsort(-s, kind="stable")[:k] for s, t in zip(shares, y, strict=True)]))
                for k in (2, 3)},
            "seeds": [],
        }
        print(f"{split_name}: {len(y_all)} songs, {len(unc)} unclassified by the CNN", flush=True)
        if split_name == "shifted" and args.picture:
            picture = [(data["df"]["track_id"][i], data["df"]["genre"][i], data["slices"][i], votes[i].probabilities)
                       for i in unc]
        for (gen, gmeta), per in zip(gans, params, strict=True):
            t0 = time.perf_counter()
            seed = int((gmeta.train_config or {}).get("seed", 0))
            rd = readings_for(data, unc, gen, gmeta.version, cnn, n_classes, standardize, args.cache_dir)
            ev = [evidence_from_readings(r, v, K_MAX) for r, v in zip(rd, shares, strict=True)]
            rng = np.random.default_rng(1000 + seed)
            ev_id = [evidence_from_readings(identity_readings(v), v, K_MAX) for v in shares]
            ev_rnd = [evidence_from_readings(random_genre_readings(r, rng), v, K_MAX) for r, v in zip(rd, shares,
                                                                                                   strict=True)]
            main_p = per["shifted-chain val" if args.tune_catalog else "in-domain val"]
            preds: dict[str, list[int | None]] = {
                "forced_argmax": list(forced), "tta": tta,
                "gan": decisions(ev, per["in-domain val"]),
                "gan_forced": decisions(ev, per["in-domain val"], threshold=0.0),
                "gan_reading_only": decisions(ev, main_p, threshold=0.0, cost_weight=0.0, vote_weight=0.0),
                "gan_conf_only": decisions(ev, main_p, threshold=0.0, cost_weight=0.0, vote_weight=0.0,
                                           score="confidence"),
                "gan_cost_only": decisions(ev, main_p, threshold=0.0, cost_weight=COST_ONLY_WEIGHT, vote_weight=0.0),
                "identity_ctrl": decisions(ev_id, main_p),
                "random_ctrl": decisions(ev_rnd, main_p),
            }
            if args.tune_catalog:
                preds["gan_shiftval"] = decisions(ev, main_p)
                preds["gan_shiftval_forced"] = decisions(ev, main_p, threshold=0.0)
            rep = {name: system_report(y, preds[name], ref_ok) for name in systems}
            split_res["seeds"].append({
                "gan": gmeta.url, "version": gmeta.version, "seed": seed, "systems": rep,
                "decided_right_all_with_gan": (classified_ok + rep[gan_system]["n_right"]) / len(y_all),
                "diagnosis": diagnosis(rd, shares, y), "seconds": time.perf_counter() - t0,
            })
            print(f"  seed {seed}: " + ", ".join(f"{n} {rep[n]['accuracy']:.3f}" for n in systems)
                  + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
        results["splits"][split_name] = split_res

    lines = format_tables(results, systems)
    print("\n".join(lines))
    verdicts = [done_check(results, name) for name in dict.fromkeys(["gan", gan_system])]
    print("\n".join(verdicts))
    if args.picture and picture:
        from genre_core.report_gan import draw_translations, translation_example

        (gen, gmeta), p = gans[0], params[0]["shifted-chain val" if args.tune_catalog else "in-domain val"]
        examples = [translation_example(tid, genre, sl, vp, gen, cnn, cnn_meta.classes, top_k=max(2, p["top_k"]),
                                        threshold=p["threshold"], cost_weight=p["cost_weight"],
                                        vote_weight=p["vote_weight"], standardize=standardize)
                    for tid, genre, sl, vp in picture[:args.picture_songs]]
        draw_translations(args.picture, examples, title=f"GAN {gmeta.version}: unclassified shifted songs")
        print(f"picture: {args.picture}")
    results["verdicts"] = verdicts
    results["wall_s"] = time.perf_counter() - t_start
    if args.out_json:
        with open(args.out_json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, default=float)
    if not args.no_record:
        record("GAN refine ablation (unclassified songs)", [
            f"- CNN {results['cnn']}; GAN bundles {', '.join(results['gans'])}",
            "- accuracy over the unclassified subset (undecided = not right); flips/McNemar against forced "
            "argmax; mean [min..max] over the GAN seeds", "", "```", *lines, "```", "",
            *[f"- {v}" for v in verdicts], f"- wall time {results['wall_s']:.0f} s",
        ], argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
