"""Leave-one-soundfont-family-out: the tag prior alone, the musicnn genre head and the from-scratch slice CNN, on
the same songs.

    python benchmarks/soundfont_holdout.py --catalog data/corpus --cache musicnn-outputs.npz

The catalog is a make-catalog folder whose songs were rendered through several soundfonts (its ``soundfont``
column; never a MuseScore General one: those are reserved for evaluation outside the project). Soundfonts made
from the same recordings form a family (``genre_core.synth.render.SAMPLE_FAMILIES``: TimGM6mb with csound's
sf_GMbank, FluidR3 with FluidR3 Mono) and are held out together, or the held-out one would have been heard in
training. For each family in turn, **all** its songs are the test songs (none of them trains or tunes anything
in that fold); the other families' ``train`` songs (at most ``--train-per-genre`` per genre and soundfont) train
and their ``val`` songs choose every parameter:

- **prior**: musicnn's tags through the tag-to-genre map, no training; tau/margin chosen on the val songs;
- **head**: the shipped recipe (``genre_core.training.head.train_head``): l2 by the one-standard-error rule and
  tau/margin on leave-one-soundfont-out predictions of the val songs;
- **scratch**: the from-scratch slice CNN (``configs/default.yaml``'s features, ``train_cnn``), early stopping
  and tau/margin on the val songs.

Prints forced accuracy, coverage and accuracy on decided songs of each model per soundfont (scored in its
family's fold), and their means. ``--cache`` keeps the musicnn backbone's outputs per track (an .npz file) between runs.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _songs import musicnn_outputs, read_catalogs, scores, scratch_model, scratch_scores, scratch_slices  # noqa: E402

from genre_core.config import GENRES  # noqa: E402
from genre_core.training.cnn import Song, choose_voting, evaluate_songs  # noqa: E402
from genre_core.training.head import HeadSong, head_probabilities, prior_probabilities, train_head  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", nargs="+", required=True, help="make-catalog folder(s) of several soundfonts")
    ap.add_argument("--cache", default=None, help="npz file caching the musicnn backbone's outputs per track")
    ap.add_argument("--target-accuracy", type=float, default=0.90,
                    help="accuracy on decided validation songs that tau/margin must reach (default 0.90)")
    ap.add_argument("--no-scratch", action="store_true", help="leave out the from-scratch CNN (the slow column)")
    ap.add_argument("--train-per-genre", type=int, default=None,
                    help="train on at most N songs per genre and soundfont (default: every train song)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    df = read_catalogs(args.catalog)
    # the train songs that train (all songs of the held-out soundfont still test)
    rank = df.groupby(["split", "genre", "group"]).cumcount()
    df["trains"] = (df["split"] == "train") & (rank < (args.train_per_genre or len(df)))
    model, outputs = musicnn_outputs(df, args.cache)
    genre = dict(zip(df["track_id"], df["genre"].map(GENRES.index), strict=True))
    heads = {r.track_id: HeadSong(r.track_id, genre[r.track_id], outputs[r.track_id], r.group)
             for r in df.itertuples()}
    if not args.no_scratch:
        scratch_cfg, dense, plain = scratch_slices(df, set(df.loc[df["trains"], "track_id"]))
    rows = []
    for family in sorted(df["family"].unique()):
        rest = df[df["family"] != family]
        train_ids = list(rest.loc[rest["trains"], "track_id"])
        val_ids = list(rest.loc[rest["split"] == "val", "track_id"])
        val_labels = [genre[t] for t in val_ids]
        val = [heads[t] for t in val_ids]
        prior_voting, _ = choose_voting(prior_probabilities(model.head, val), val_labels, args.target_accuracy)
        result = train_head(model.head, [heads[t] for t in train_ids], val,
                            target_accuracy=args.target_accuracy, log=lambda _: None)
        if not args.no_scratch:
            scratch = scratch_model(scratch_cfg, [Song(t, genre[t], dense[t]) for t in train_ids],
                                    [Song(t, genre[t], plain[t]) for t in val_ids], args.target_accuracy)
        for held in sorted(df.loc[df["family"] == family, "group"].unique()):  # each soundfont of the family
            test_ids = list(df.loc[df["group"] == held, "track_id"])
            labels = [genre[t] for t in test_ids]
            test = [heads[t] for t in test_ids]
            row = {"held_out": held, "family": family, "n_test": len(test_ids), "n_train": len(train_ids),
                   "n_val": len(val_ids)}
            row |= scores(evaluate_songs(prior_probabilities(model.head, test), labels, prior_voting), "prior")
            row |= scores(evaluate_songs(head_probabilities(result.head, test), labels, result.voting), "head")
            row["head_l2"] = result.l2
            if not args.no_scratch:
                row |= scratch_scores(scratch, [plain[t] for t in test_ids], labels)
            rows.append(row)
            print(row, flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    means = table.drop(columns=["held_out", "family"]).mean(numeric_only=True)
    print("mean: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items() if k.split("_")[-1] in
                               ("forced", "coverage", "decided")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
