"""Read published labels: a summary of the latest label per track, or why one track got its label.

Only published runs are visible (runs still being written, or that died, are not). With --track, the
explanation shows the votes per genre, the status and its reason (the voting thresholds and GAN refine
parameters are read from the bundles under --models when their versions match the label's), the model
versions and the run.

Examples:
  genre-job labels show --output data/demo/labels
  genre-job labels show --output s3://bucket/labels --track rock-00012
  genre-job labels show --output s3://bucket/labels --track rock-00012 --models s3://bucket/models/v2
"""

from __future__ import annotations

import argparse
import difflib
import sys

from genre_core import storage
from genre_core.artifacts import BundleError, CNNBundle, read_bundle_meta
from genre_core.explain import explain
from genre_core.label_store import latest_labels, manifests
from genre_core.models.gan import GANBundle
from jobs.models import bundle_urls


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["show"], help="show: summary, or one track with --track")
    parser.add_argument("--output", required=True, help="labels root written by `genre-job label`")
    parser.add_argument("--track", default=None, help="explain the latest label of this track_id")
    parser.add_argument("--models", default=None,
                        help="models folder the labels were made with, for the thresholds in the explanation "
                             "(default: $GENRE_TAGGER_MODELS, else models/default)")


def bundle_metadata(models: str | None) -> tuple[CNNBundle | None, GANBundle | None]:
    """The CNN and GAN bundles' metadata under ``models`` (bundle.json only; None where there is none)."""
    root, cnn_url = bundle_urls(models)
    found: list[CNNBundle | GANBundle | None] = []
    for url, cls in ((cnn_url, CNNBundle), (storage.join(root, "gan"), GANBundle)):
        try:
            found.append(cls.from_json(read_bundle_meta(url)))
        except BundleError:
            found.append(None)
    return found[0], found[1]  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    runs = manifests(args.output)
    if not runs:
        print(f"error: no published labels under {args.output}. Label a catalog first: "
              f"`genre-job label --catalog CATALOG --output {args.output}` (a run becomes visible when it is "
              "published)", file=sys.stderr)
        return 1
    df = latest_labels(args.output)
    if args.track is not None:
        hit = df[df["track_id"] == args.track]
        if hit.empty:
            near = difflib.get_close_matches(args.track, df["track_id"].tolist(), n=3)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            print(f"error: no published label for track {args.track!r} under {args.output}.{hint} List the "
                  f"labels with `genre-job labels show --output {args.output}`.", file=sys.stderr)
            return 1
        cnn, gan = bundle_metadata(args.models)
        print(explain(hit.iloc[0].to_dict(), df.attrs["classes"], cnn, gan))
        return 0
    print(f"{len(runs)} published run(s) under {args.output}; latest labels of {len(df)} tracks")
    if not df.empty:
        print("status: " + ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().sort_index().items()))
        print("genre:  " + ", ".join(f"{k} {v}" for k, v in df["genre"].value_counts().sort_index().items()))
        for m in runs[-5:]:
            print(f"  run {m.run_id} ({m.mode}, {m.n_rows} tracks, published {m.published_at}, "
                  f"model {m.model_version})")
        print(f"explain one label: genre-job labels show --output {args.output} --track {df['track_id'].iloc[0]}")
    return 0


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
