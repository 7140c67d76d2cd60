"""Read published labels: a summary of the latest label per track, or one track's label explained.

Only published runs are visible (runs still being written, or that died, are not).

Examples:
  genre-job labels show --output data/demo/labels
  genre-job labels show --output s3://bucket/labels --track rock-00012
"""

from __future__ import annotations

import argparse
import sys

from genre_core.label_store import latest_labels, manifests


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["show"], help="show: summary, or one track with --track")
    parser.add_argument("--output", required=True, help="labels root written by `genre-job label`")
    parser.add_argument("--track", default=None, help="explain the latest label of this track_id")


def explain(row, classes: list[str]) -> str:
    """A few lines on why a track got its label: status and reason, votes per genre, versions."""
    genre = row["genre"] if isinstance(row["genre"], str) else None
    gan = row["gan_version"] if isinstance(row["gan_version"], str) else "-"
    lines = [f"track {row['track_id']}: {row['status']}" + (f" -> {genre}" if genre else "")]
    reasons = {
        "classified": "its slices' votes were clear (confidence and margin above the model's thresholds)",
        "gan_resolved": "its votes were ambiguous; GAN translation to the candidate genres decided it",
        "unclassified": "its votes were ambiguous and the GAN stage could not decide it either",
    }
    lines.append("reason: " + (row["error"] if row["status"] == "error" else reasons.get(row["status"], "?")))
    if row["probabilities"] is not None and len(row["probabilities"]):
        lines.append(f"votes ({row['n_slices']} slices; confidence {row['confidence']:.3f}, "
                     f"margin {row['margin']:.3f}):")
        order = sorted(range(len(classes)), key=lambda i: -row["probabilities"][i])
        for i in order:
            share = float(row["probabilities"][i])
            lines.append(f"  {classes[i]:>10} {share:6.3f} {'#' * int(round(share * 40))}")
    lines.append(f"model {row['model_version']}, gan {gan}, features {row['feature_version']}, "
                 f"run {row['run_id']}, labelled {row['labelled_at']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    runs = manifests(args.output)
    df = latest_labels(args.output)
    if args.track is not None:
        hit = df[df["track_id"] == args.track]
        if hit.empty:
            print(f"error: no published label for track {args.track!r} under {args.output}", file=sys.stderr)
            return 1
        print(explain(hit.iloc[0], df.attrs["classes"]))
        return 0
    print(f"{len(runs)} published run(s) under {args.output}; latest labels of {len(df)} tracks")
    if not df.empty:
        print("status: " + ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().sort_index().items()))
        print("genre:  " + ", ".join(f"{k} {v}" for k, v in df["genre"].value_counts().sort_index().items()))
        for m in runs[-5:]:
            print(f"  run {m.run_id} ({m.mode}, {m.n_rows} tracks, published {m.published_at}, "
                  f"model {m.model_version})")
    return 0


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
