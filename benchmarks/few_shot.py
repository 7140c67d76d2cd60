"""Few-shot adaptation, the catalog team's case: a soundfont the model never saw, 20 labelled songs per genre.

    python benchmarks/few_shot.py --base-catalog data/corpus --target-catalog data/opl3 \\
        --held-out OPL-3_FM_128M --cache musicnn-outputs.npz

1. **base**: the shipped recipe (what ``genre-job train cnn --config configs/musicnn.yaml`` runs:
   ``genre_core.training.head.train_head`` from the tag prior, the catalog's ``train`` songs, l2 and tau/margin
   leave-one-soundfont-out on its ``val`` songs) on the base catalog's songs of every soundfont but
   ``--held-out`` and the soundfonts made from the same recordings (``genre_core.synth.render.SAMPLE_FAMILIES``);
2. for each seed, ``--per-genre`` songs per genre drawn from the target catalog's ``train`` split (songs of the
   held-out soundfont), and on exactly those songs, held out for validation as the job does when a catalog has no
   ``val`` split (``split_by_song``, ``train.val_fraction`` of configs/musicnn.yaml):
   - **fine-tuned**: what ``genre-job train cnn --from BASE`` runs (``train_head`` from the base's head, the
     best cross-validated l2);
   - **scratch**: the from-scratch slice CNN (``configs/default.yaml``, ``train_cnn``);
3. each labels the target catalog's ``val`` and ``test`` songs (new songs of the held-out soundfont, never drawn
   for training) with its own thresholds: forced accuracy, coverage, accuracy on decided songs.

The backbone's outputs are computed once per song (``--cache`` keeps them between runs); the integration test
``tests/integration/test_train_musicnn.py`` runs the same fine-tuning through the command line.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _songs import MUSICNN_CONFIG, musicnn_outputs, read_catalogs, scores, scratch_model, scratch_scores, scratch_slices  # noqa: E402

from genre_core.config import GENRES, load_config  # noqa: E402
from genre_core.training.cnn import Song, evaluate_songs, split_by_song  # noqa: E402
from genre_core.training.head import BEST, HeadSong, head_probabilities, train_head  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-catalog", required=True, help="make-catalog folder of several soundfonts")
    ap.add_argument("--target-catalog", required=True, help="make-catalog folder of the held-out soundfont")
    ap.add_argument("--held-out", required=True, help="soundfont file name (no extension) of the target catalog")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--per-genre", type=int, default=20)
    ap.add_argument("--target-accuracy", type=float, default=0.90)
    ap.add_argument("--cache", default=None, help="npz file caching the musicnn backbone's outputs per track")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base_df, target = read_catalogs([args.base_catalog]), read_catalogs([args.target_catalog])
    if set(target["group"]) != {args.held_out}:
        raise SystemExit(f"the target catalog must be all {args.held_out} songs, not {sorted(set(target['group']))}")
    base_df = base_df[~base_df["family"].isin(set(target["family"]))]  # nor its relatives
    target["track_id"] = "target/" + target["track_id"]  # make-catalog's ids repeat from one catalog to the next
    df = pd.concat([base_df, target], ignore_index=True)
    model, outputs = musicnn_outputs(df, args.cache)
    genre = dict(zip(df["track_id"], df["genre"].map(GENRES.index), strict=True))
    heads = {r.track_id: HeadSong(r.track_id, genre[r.track_id], outputs[r.track_id], r.group)
             for r in df.itertuples()}

    def songs_of(frame: pd.DataFrame, split: str) -> list[HeadSong]:
        return [heads[t] for t in frame.loc[frame["split"] == split, "track_id"]]

    base = train_head(model.head, songs_of(base_df, "train"), songs_of(base_df, "val"),
                      target_accuracy=args.target_accuracy, log=lambda _: None)
    print(f"base: {len(songs_of(base_df, 'train'))} train songs of {sorted(set(base_df['group']))}, l2 {base.l2:g}, "
          f"tau {base.voting.tau} margin {base.voting.margin}", flush=True)
    test_ids = list(target.loc[target["split"].isin(["val", "test"]), "track_id"])
    labels = [genre[t] for t in test_ids]
    base_row = scores(evaluate_songs(head_probabilities(base.head, [heads[t] for t in test_ids]), labels,
                                     base.voting), "base")
    print(f"base on {len(test_ids)} new {args.held_out} songs: {base_row}", flush=True)
    scratch_cfg, dense, plain = scratch_slices(target, set(target.loc[target["split"] == "train", "track_id"]))
    val_fraction = load_config(MUSICNN_CONFIG).train.val_fraction
    rows = []
    for seed in args.seeds:
        pool = target[target["split"] == "train"]
        shots = pool.groupby("genre", group_keys=False).sample(n=args.per_genre, random_state=seed)
        tr, va = split_by_song([Song(t, genre[t], dense[t]) for t in shots["track_id"]], val_fraction, seed)
        tuned = train_head(base.head, [heads[s.song_id] for s in tr], [heads[s.song_id] for s in va],
                           target_accuracy=args.target_accuracy, l2_rule=BEST, log=lambda _: None)
        row = {"seed": seed, "n_shots": len(shots), "n_test": len(test_ids), **base_row}
        row |= scores(evaluate_songs(head_probabilities(tuned.head, [heads[t] for t in test_ids]), labels,
                                     tuned.voting), "tuned")
        row["tuned_l2"] = tuned.l2
        scratch = scratch_model(scratch_cfg, tr, [Song(s.song_id, s.genre_index, plain[s.song_id]) for s in va],
                                args.target_accuracy)
        row |= scratch_scores(scratch, [plain[t] for t in test_ids], labels)
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    mean = table.mean(numeric_only=True)
    print(f"mean over {len(rows)} seeds: base forced {mean.base_forced:.3f}, fine-tuned {mean.tuned_forced:.3f} "
          f"({100 * (mean.tuned_forced - mean.base_forced):+.1f} points), scratch {mean.scratch_forced:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
