"""Leave-one-soundfont-out evaluation of the musicnn genre model: the tag prior alone vs. the trained head.

Each catalog given is one soundfont's songs (``genre-job make-catalog --soundfonts NAME``; never a MuseScore
General soundfont: those are reserved for evaluation outside the project). For each soundfont in turn, its songs
are the test songs; the head is trained on the other soundfonts' songs (the first ``--train-per-genre`` of each
genre train, the rest validate), with l2 and the voting thresholds chosen leave-one-soundfont-out on those
validation songs only. Prints forced accuracy, coverage and accuracy on decided songs per held-out soundfont.

    python benchmarks/soundfont_holdout.py --catalogs /tmp/loso/TimGM6mb /tmp/loso/FluidR3_GM ... \
        --cache /tmp/loso/outputs.npz
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genre_core.config import GENRES, AudioConfig, load_config  # noqa: E402
from genre_core.decoding import decode_song  # noqa: E402
from genre_core.models.genre_head import new_genre_model  # noqa: E402
from genre_core.training.cnn import evaluate_songs  # noqa: E402
from genre_core.training.head import (  # noqa: E402
    HeadSong,
    backbone_outputs,
    head_probabilities,
    prior_probabilities,
    train_head,
)
from jobs.models import backbone_dir  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "musicnn.yaml")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalogs", nargs="+", required=True, help="one make-catalog folder per soundfont")
    ap.add_argument("--cache", default=None, help="npz file caching the backbone outputs per track")
    ap.add_argument("--train-per-genre", type=int, default=4, help="songs per genre and soundfont that train")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    cfg = load_config(CONFIG)
    model, _ = new_genre_model(backbone_dir(cfg.cnn.backbone), GENRES, cfg.cnn.precision)
    n_tags = model.backbone.n_tags
    frames = [pd.read_parquet(os.path.join(c, "catalog.parquet")).assign(group=os.path.basename(c.rstrip("/")))
              for c in args.catalogs]
    df = pd.concat(frames, ignore_index=True)
    df["key"] = df["group"] + "/" + df["track_id"]
    cache = dict(np.load(args.cache)) if args.cache and os.path.exists(args.cache) else {}
    todo = [k for k in df["key"] if k not in cache]
    t0 = time.perf_counter()
    if todo:
        uri = dict(zip(df["key"], df["audio_uri"], strict=True))
        audio_cfg = AudioConfig(sample_rate=cfg.features.sample_rate)
        slices = [decode_song(uri[k], cfg.features, audio_cfg)[0] for k in todo]
        for k, out in zip(todo, backbone_outputs(model, slices), strict=True):
            cache[k] = out
        if args.cache:
            np.savez(args.cache, **cache)
    print(f"backbone outputs: {len(todo)} songs computed, {len(df) - len(todo)} cached "
          f"({time.perf_counter() - t0:.1f} s)")
    df["rank"] = df.groupby(["group", "genre"]).cumcount()
    songs = [HeadSong(r.key, GENRES.index(r.genre), cache[r.key], r.group) for r in df.itertuples()]
    rank = dict(zip(df["key"], df["rank"], strict=True))
    rows = []
    for held in sorted(df["group"].unique()):
        test = [s for s in songs if s.group == held]
        rest = [s for s in songs if s.group != held]
        train = [s for s in rest if rank[s.song_id] < args.train_per_genre]
        val = [s for s in rest if rank[s.song_id] >= args.train_per_genre]
        result = train_head(model.head, n_tags, train, val, log=lambda _: None)
        labels = [s.genre_index for s in test]
        prior = evaluate_songs(prior_probabilities(model.head, test, n_tags), labels, result.voting)
        head = evaluate_songs(head_probabilities(result.head, test, n_tags), labels, result.voting)
        rows.append({"held_out": held, "n_test": len(test), "prior_forced": prior["song_accuracy"],
                     "head_forced": head["song_accuracy"], "head_coverage": head["coverage"],
                     "head_acc_decided": head["accuracy_on_classified"], "l2": result.l2,
                     "tau": result.voting.tau, "margin": result.voting.margin})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"mean: prior forced {table.prior_forced.mean():.3f}, head forced {table.head_forced.mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
