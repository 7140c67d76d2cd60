"""Render a demo catalog of synthesized songs with known genres (MIDI composition + FluidSynth).

Each song is rendered with one of --soundfonts (default: every installed soundfont of
genre_core.synth.render.SOUNDFONTS), drawn so that every (genre, soundfont) cell of each split gets songs.
The reserved MuseScore General soundfonts are refused.

Writes <out>/audio/<genre>/<track_id>.flac and <out>/catalog.parquet with track_id, audio_uri (absolute),
genre, style, split (train/val/test, or "shifted") and each song's generation parameters. --genres may also name
styles outside the ten-genre taxonomy (folk, latin, house, ambient, gospel; "outside" = all five): their songs have
genre null (no genre of the taxonomy is right), the style in `style`, and split val or test (never train); they
serve only to choose and test the out-of-taxonomy rule (genre-job calibrate). With
--reference-soundfont, every train song is also rendered through that soundfont without recording effects
(<out>/reference/<genre>/<track_id>.flac, column reference_uri; the soundfont's file name in reference_soundfont):
the clean targets of the GAN's training pairs.
--revoiced N adds N more inputs to each of those pairs: the same notes re-voiced (each instrument, with probability
0.8, another of its General MIDI family, its synthesis parameters offset: filter, resonance, envelopes, vibrato),
through a soundfont drawn from --soundfonts, with a recording chain of its own; rows <track_id>-r<k> of split
train with the song's genre and reference_uri (a CNN trained on such a catalog trains on them too; the shipped CNN
trains on a catalog without them).

Examples:
  genre-job make-catalog --per-genre 100 --out data/demo
  genre-job make-catalog --per-genre 20 --preset shifted --out data/shifted
  genre-job make-catalog --per-genre 10 --soundfonts timgm6mb,fluidr3 --out data/two-fonts
  genre-job make-catalog --per-genre 3 --out s3://bucket/catalog --preview grid.png
  genre-job make-catalog --per-genre 100 --reference-soundfont fluidr3 --out data/paired
  genre-job make-catalog --per-genre 100 --reference-soundfont fluidr3 --revoiced 2 --out data/paired
  genre-job make-catalog --per-genre 80 --genres outside --soundfonts timgm6mb,fluidr3,fluidr3mono,csound \\
      --out data/outside
  genre-job make-catalog --per-genre 30 --seed 7 --split val --out data/val      # new validation songs only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from genre_core import storage
from genre_core.config import GENRES
from genre_core.synth.catalog import SongSpec, plan_catalog, reference_spec, render_song, revoiced_spec
from genre_core.synth.effects import PRESETS
from genre_core.synth.outside_styles import OUTSIDE_NAMES
from genre_core.synth.render import SOUNDFONTS, SynthSetupError, find_fluidsynth, resolve_soundfonts

CATALOG_SCHEMA = pa.schema([
    ("track_id", pa.string()), ("audio_uri", pa.string()), ("genre", pa.string()), ("style", pa.string()),
    ("split", pa.string()),
    ("duration_s", pa.float32()), ("sample_rate", pa.int32()), ("tempo", pa.float32()), ("key", pa.string()),
    ("scale", pa.string()), ("swing", pa.float32()), ("progression", pa.string()), ("instruments", pa.string()),
    ("bass_style", pa.string()), ("comp_style", pa.string()), ("drums", pa.string()), ("form", pa.string()),
    ("arrangement", pa.string()),
    ("soundfont", pa.string()), ("effects", pa.string()), ("seed", pa.int64()), ("preset", pa.string()),
])
# with --reference-soundfont; null outside split train
REFERENCE_FIELDS = [pa.field("reference_uri", pa.string()), pa.field("reference_soundfont", pa.string())]


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder: local path or s3:// URL")
    parser.add_argument("--per-genre", type=int, default=100, help="songs per genre (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="catalog seed; same seed, same audio (default 0)")
    parser.add_argument("--soundfonts", default="all",
                        help="comma list of soundfonts, each a short name (" + ", ".join(SOUNDFONTS) + ") or a "
                             ".sf2/.sf3 path; 'all' = every installed one of the short names (default)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="recording effects: default (mixed), shifted (harsh recording chain, own split), none")
    parser.add_argument("--genres", default=",".join(GENRES),
                        help="comma-separated subset of the 10 genres and of the styles outside the taxonomy ("
                             + ", ".join(OUTSIDE_NAMES) + "; 'outside' = all of them); default: the 10 genres")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each song (default 30)")
    parser.add_argument("--format", dest="audio_format", default="flac", choices=["flac", "wav"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--reference-soundfont", default=None, metavar="SOUNDFONT",
                        help="also render every train song through this soundfont (a short name or path) with no "
                             "recording effects, as the clean target of the GAN's training pairs (reference_uri)")
    parser.add_argument("--revoiced", type=int, default=0, metavar="N",
                        help="with --reference-soundfont: N re-voiced renders of each train song as more inputs of "
                             "its GAN training pair (rows <track_id>-r<k>; default 0)")
    parser.add_argument("--split", default=None, choices=["train", "val", "test"],
                        help="put every song in this split (ids prefixed '<split>-'), e.g. new validation songs for "
                             "genre-job calibrate; default: train/val/test 70/10/20 (outside styles: val/test)")
    parser.add_argument("--preview", default=None, metavar="FILE.png",
                        help="also draw a grid of log-mel spectrograms, one row per genre")


def _store(spec: SongSpec, out: str, folder: str) -> tuple[str, dict]:
    data, params = render_song(spec)
    name = f"{storage.safe_name(spec.track_id)}.{spec.audio_format}"  # a track_id never becomes a path
    uri = storage.absolute(storage.join(out, folder, spec.genre, name))
    storage.write_bytes(uri, data)
    return uri, params


def _render_and_store(job: tuple[SongSpec, str, str | None, int, list[str]]) -> list[dict]:
    """The song's row, and with a reference soundfont (train songs only) the rows of its re-voicings."""
    spec, out, reference, revoicings, soundfonts = job
    genre = None if spec.genre in OUTSIDE_NAMES else spec.genre  # an outside song has no genre of the taxonomy
    paired = reference is not None and spec.split == "train"
    reference_uri = _store(reference_spec(spec, reference), out, "reference")[0] if paired else None
    revoiced = [revoiced_spec(spec, k, soundfonts) for k in range(1, revoicings + 1)] if paired else []
    rows = []
    for s in [spec, *revoiced]:
        uri, params = _store(s, out, "audio")
        rows.append({"track_id": s.track_id, "audio_uri": uri, "genre": genre, "style": s.genre, "split": s.split,
                     "duration_s": s.seconds, "sample_rate": s.sample_rate, **params})
        if reference is not None:
            rows[-1].update(reference_uri=reference_uri,
                            reference_soundfont=os.path.basename(reference) if paired else None)
    return rows


def run(args: argparse.Namespace) -> int:
    genres = [n for g in args.genres.split(",") if g.strip()
              for n in (OUTSIDE_NAMES if g.strip() == "outside" else [g.strip()])]
    unknown = sorted(set(genres) - set(GENRES) - set(OUTSIDE_NAMES))
    if unknown:
        print(f"error: unknown genre(s) {unknown}; choose from {', '.join(GENRES + OUTSIDE_NAMES)} or 'outside'",
              file=sys.stderr)
        return 2
    if args.per_genre < 1:
        print("error: --per-genre must be at least 1", file=sys.stderr)
        return 2
    if args.revoiced < 0 or (args.revoiced and not args.reference_soundfont):
        print("error: --revoiced takes N >= 0 and needs --reference-soundfont (it adds inputs to the GAN's pairs)",
              file=sys.stderr)
        return 2
    try:
        find_fluidsynth()
        soundfonts = resolve_soundfonts(args.soundfonts)
        reference = None
        if args.reference_soundfont:
            fonts = resolve_soundfonts(args.reference_soundfont)
            if len(fonts) != 1:
                raise SynthSetupError(f"--reference-soundfont names one soundfont, got {args.reference_soundfont!r}")
            reference = fonts[0]
    except SynthSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    out = storage.absolute(args.out)
    specs = plan_catalog(genres, args.per_genre, args.seed, args.preset, soundfonts, args.seconds, args.audio_format,
                         split=args.split)
    print(f"rendering {len(specs)} songs ({len(genres)} genres x {args.per_genre}) with {len(soundfonts)} "
          f"soundfont(s) ({', '.join(os.path.basename(p) for p in soundfonts)}), preset {args.preset}, "
          f"{args.workers} workers -> {out}", flush=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = pool.map(_render_and_store, [(s, out, reference, args.revoiced, soundfonts) for s in specs],
                           chunksize=2)
        rows = [row for song_rows in tqdm(results, total=len(specs), unit="song",
                                          mininterval=1.0 if sys.stderr.isatty() else 15.0) for row in song_rows]
    elapsed = time.perf_counter() - started

    schema = CATALOG_SCHEMA if reference is None else pa.schema([*CATALOG_SCHEMA, *REFERENCE_FIELDS])
    table = pa.Table.from_pylist(rows, schema=schema)
    catalog_url = storage.join(out, "catalog.parquet")
    fs, path = storage.filesystem(catalog_url)
    with fs.open(path, "wb") as fh:
        pq.write_table(table, fh)
    print(f"wrote {len(rows)} songs in {elapsed:.1f} s ({len(rows) / elapsed:.2f} songs/s); catalog: {catalog_url}")
    if args.preview:
        from genre_core.synth.preview import draw_preview

        draw_preview(rows, args.preview)
        print(f"preview: {os.path.abspath(args.preview)}")
    return 0


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
