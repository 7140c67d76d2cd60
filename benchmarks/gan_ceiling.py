"""What the GAN stage could gain at best: the CNN reading the clean render of the songs it leaves unclassified.

The GAN stage's generator learns to turn a slice into how the same notes sound through the reference soundfont with
no recording effects (genre_core.training.gan). A perfect generator would hand the CNN exactly that render. This
benchmark renders it with FluidSynth (from each catalog row's seed and style: genre_core.synth.catalog.reference_spec)
for the songs the CNN leaves unclassified in --catalog, a catalog of `genre-job make-catalog` (e.g. validation songs
of a soundfont held out from the CNN), and compares on those songs:

  forced       the forced vote on the song as it is (what the GAN stage must beat)
  perfect w    the combined votes (1 - w) v + w g of the rule (genre_core.refine.decide, threshold 0), g the
               CNN's votes on the clean render, for w = 0.1 .. 1: every song decided, as the issue's "beats the
               forced vote" counts them

So it bounds what any generator trained toward that reference can give, and says whether a shortfall is the
design's (little to gain even with a perfect G) or the generator's (it does not reach the clean render). Nothing is
tuned here; run it on validation songs. Before rendering, the first song is rendered again from its row and must
match its audio file byte for byte (else the catalog's rows do not describe its songs and the benchmark stops).

  python benchmarks/gan_ceiling.py --cnn CNN --catalog data/opl3-val/catalog.parquet
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import record  # noqa: E402

from genre_core import storage  # noqa: E402
from genre_core.artifacts import load_cnn_bundle  # noqa: E402
from genre_core.features import slice_mel  # noqa: E402
from genre_core.inference import slice_probabilities  # noqa: E402
from genre_core.metrics import mcnemar_exact  # noqa: E402
from genre_core.refine import RefineParams  # noqa: E402
from genre_core.refine import decide as refine_decide  # noqa: E402
from genre_core.synth.catalog import SongSpec, reference_spec, render_song  # noqa: E402
from genre_core.synth.render import resolve_soundfonts  # noqa: E402
from genre_core.voting import decide as vote_decide  # noqa: E402
from jobs.mel_cache import DEFAULT_CACHE_DIR, load_catalog_mels  # noqa: E402

WEIGHTS = tuple(round(0.1 * i, 1) for i in range(1, 11))


def row_spec(row: pd.Series, soundfont: str) -> SongSpec:
    """The spec that renders a catalog row's song (``index`` only names files, so it is not needed)."""
    return SongSpec(track_id=str(row["track_id"]), genre=str(row["style"]), index=0, seed=int(row["seed"]),
                    split=str(row["split"]), preset=str(row["preset"]), soundfont=soundfont,
                    seconds=float(row["duration_s"]), sample_rate=int(row["sample_rate"]),
                    audio_format=os.path.splitext(str(row["audio_uri"]))[1].lstrip(".") or "flac")


def _render_to(job: tuple[SongSpec, str]) -> str:
    spec, path = job
    if not os.path.exists(path):
        data, _ = render_song(spec)
        with open(path + ".tmp", "wb") as fh:
            fh.write(data)
        os.replace(path + ".tmp", path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cnn", default="models/default/cnn")
    parser.add_argument("--catalog", required=True, help="a make-catalog catalog (songs with a genre are used)")
    parser.add_argument("--reference-soundfont", default="fluidr3", help="the GAN's reference (default fluidr3)")
    parser.add_argument("--soundfonts", default="all",
                        help="the catalog's soundfonts, as make-catalog --soundfonts took them (default: all); the "
                             "first song is rendered again through the one its row names")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="decoded log-mels and the clean renders")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    torch.set_num_threads(max(1, args.workers))
    cnn, meta = load_cnn_bundle(args.cnn)
    fc, voting = meta.feature_config, meta.voting
    reference = resolve_soundfonts(args.reference_soundfont)[0]
    df, mels = load_catalog_mels(args.catalog, fc, None, args.cache_dir, args.workers)
    missing = sorted({"style", "seed", "preset", "duration_s", "sample_rate", "soundfont"} - set(df.columns))
    if missing:
        print(f"error: {args.catalog} lacks {missing}: the clean renders are made from make-catalog's columns",
              file=sys.stderr)
        return 2
    cls = {g: i for i, g in enumerate(meta.classes)}
    df = df[[np.asarray(mels[t]).shape[1] >= fc.slice_frames for t in df["track_id"]]].reset_index(drop=True)
    probs = slice_probabilities(cnn, [slice_mel(np.asarray(mels[t]), fc) for t in df["track_id"]])
    unc = [i for i, p in enumerate(probs) if not vote_decide(p, voting.tau, voting.margin).classified]
    if not unc:
        print("the CNN classifies every song: nothing to translate")
        return 0

    first = df.iloc[0]
    own = [p for p in resolve_soundfonts(args.soundfonts) if os.path.basename(p) == first["soundfont"]]
    if not own or render_song(row_spec(first, own[0]))[0] != storage.read_bytes(str(first["audio_uri"])):
        print(f"error: {first['track_id']} rendered again from its row (soundfont {first['soundfont']}) is not "
              f"{first['audio_uri']}: the catalog's rows do not describe its songs (another version of the composer, "
              "or a soundfont that is not installed?)", file=sys.stderr)
        return 2

    key = hashlib.sha256(f"{os.path.abspath(args.catalog)}\t{reference}".encode()).hexdigest()[:16]
    out = os.path.join(args.cache_dir, f"clean-renders-{key}")
    os.makedirs(out, exist_ok=True)
    jobs = [(reference_spec(row_spec(df.iloc[i], reference), reference),
             os.path.join(out, f"{storage.safe_name(df['track_id'].iloc[i])}.flac")) for i in unc]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        paths = list(pool.map(_render_to, jobs, chunksize=2))
    render_s = time.perf_counter() - t0
    clean = df.iloc[unc][["track_id", "genre"]].assign(audio_uri=paths, split="val")
    clean_catalog = os.path.join(out, "catalog.parquet")
    clean.to_parquet(clean_catalog)
    _, clean_mels = load_catalog_mels(clean_catalog, fc, None, args.cache_dir, args.workers)

    y = np.array([cls[df["genre"].iloc[i]] for i in unc])
    v = np.stack([probs[i].mean(axis=0) for i in unc])
    clean_probs = slice_probabilities(cnn, [slice_mel(np.asarray(clean_mels[t]), fc) for t in clean["track_id"]])
    g = np.stack([p.mean(axis=0) for p in clean_probs])
    forced_ok = v.argmax(1) == y
    lines = [f"- CNN {meta.version}; {len(df)} songs of {args.catalog}, **{len(unc)} unclassified** by the CNN; "
             f"clean renders through {os.path.basename(reference)} ({render_s:.0f} s)",
             "", "| system | accuracy on the unclassified songs | wrong->right | right->wrong | McNemar p |",
             "|---|---|---|---|---|",
             f"| forced vote | {forced_ok.mean():.3f} ({forced_ok.sum()}/{len(unc)}) | - | - | - |"]
    for w in WEIGHTS:
        ok = np.array([refine_decide(vi, gi, RefineParams(w, 0.0)).best_index == yi
                       for vi, gi, yi in zip(v, g, y, strict=True)])
        m = mcnemar_exact(forced_ok, ok)  # b: right -> wrong, c: wrong -> right
        lines.append(f"| perfect G, w {w:.1f} | {ok.mean():.3f} ({ok.sum()}/{len(unc)}) | {m['c']} | {m['b']} | "
                     f"{m['p_value']:.3g} |")
    decided = np.mean([vote_decide(p, voting.tau, voting.margin).classified for p in clean_probs])
    lines += ["", f"- the CNN's own rule classifies {decided:.3f} of the clean renders of these songs",
              f"- wall time {time.perf_counter() - t_start:.0f} s"]
    print("\n".join(lines))
    if not args.no_record:
        record("GAN stage ceiling: the CNN on the clean renders of the songs it leaves unclassified", lines, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
