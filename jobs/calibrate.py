"""Fit a CNN bundle's calibrated confidence and its out-of-taxonomy rule on validation songs; write a new bundle.

Reads the model's slice logits and embeddings for
  * --catalog (one or more): songs of the taxonomy (genre set): split 'train' gives the statistics of the
    feature_distance and outside_tags scores, split 'val' the calibration and, with the outside songs, the rule
    (more validation songs than a training catalog's own: a catalog of new songs made with make-catalog --split
    val);
  * --outside: songs of styles outside the taxonomy (genre null, as `genre-job make-catalog --genres outside`
    renders them), split 'val' only.
Test songs are never read. The confidence is temperature-scaled (genre_core/calibration.py); the rule compares
every out-of-distribution score of genre_core/outside.py, each weighed against the song's calibrated confidence
with several weights, on the validation songs, each at the lowest threshold that turns away at most
--max-coverage-drop of the validation songs of the taxonomy; of those that leave enough outside songs unclassified
it keeps the one with the highest accuracy on the decided validation songs of the taxonomy (the comparison table
is printed and kept in the bundle). The weights are copied unchanged; the new bundle has a new
version, so a nightly `genre-job label` run relabels every track with it. Rerun it on every newly trained model
(`make models` does).

Examples:
  genre-job calibrate --cnn models/default/cnn --catalog data/corpus/catalog.parquet \\
      --catalog data/val/catalog.parquet --outside data/outside/catalog.parquet --out models/default/cnn
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import pandas as pd

from genre_core.config import ConfigError
from genre_core.schema import read_catalog

DEFAULT_MAX_COVERAGE_DROP = 0.03


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cnn", required=True, help="the CNN bundle to calibrate (local or s3://)")
    parser.add_argument("--catalog", required=True, action="append",
                        help="catalog of songs of the taxonomy with splits train and val (e.g. the training catalog); "
                             "repeat it to add catalogs (their songs are pooled)")
    parser.add_argument("--outside", required=True,
                        help="catalog of songs outside the taxonomy (genre null), split val used")
    parser.add_argument("--out", required=True, help="bundle directory to write (may be --cnn itself)")
    parser.add_argument("--max-coverage-drop", type=float, default=DEFAULT_MAX_COVERAGE_DROP,
                        help="share of the validation songs of the taxonomy that the rule may turn away "
                             f"(default {DEFAULT_MAX_COVERAGE_DROP})")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="feature worker processes")
    parser.add_argument("--audio-root", default=None, help="if set, every audio_uri must lie inside it")


def _songs(df, split: str, classes: list[str], inside: bool):
    part = df[df["split"] == split] if "split" in df.columns else df.iloc[:0]
    if inside:
        part = part[part["genre"].isin(classes)]
    else:
        part = part[part["genre"].isna() | ~part["genre"].isin(classes)] if "genre" in part else part
    return part


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    from genre_core.artifacts import load_cnn_bundle, save_cnn_bundle
    from genre_core.calibration import calibration_figures, fit_temperature
    from genre_core.features import slice_mel
    from genre_core.inference import slice_outputs
    from genre_core.models.genre_head import outside_tag_columns
    from genre_core.outside import ScoredSongs, fit_rule
    from jobs.mel_cache import decode_log_mels
    from jobs.train import refuse_reserved_soundfonts

    model, meta = load_cnn_bundle(args.cnn)
    classes = list(meta.classes)
    catalogs, outside = [read_catalog(u) for u in args.catalog], read_catalog(args.outside)
    for df, url in (*zip(catalogs, args.catalog, strict=True), (outside, args.outside)):
        refuse_reserved_soundfonts(df, url)
        if url != args.outside and "genre" not in df.columns:
            raise ValueError(f"catalog {url} has no genre column")
    catalog = pd.concat(catalogs, ignore_index=True)
    ids = pd.concat([catalog["track_id"], outside["track_id"]])
    if ids.duplicated().any():
        raise ValueError(f"track_id(s) {sorted(set(ids[ids.duplicated()]))[:5]} appear in more than one catalog")
    parts = {"train": _songs(catalog, "train", classes, True), "val": _songs(catalog, "val", classes, True),
             "outside": _songs(outside, "val", classes, False)}
    for name, part in parts.items():
        if part.empty:
            raise ValueError(f"no {name} songs: --catalog needs songs of the model's genres in splits train and val, "
                             "--outside songs of other styles (genre null) in split val")
    print("calibrating " + meta.version + ": " + ", ".join(f"{k} {len(v)} songs" for k, v in parts.items()),
          flush=True)
    fc = meta.feature_config
    tasks = [(str(t), str(u)) for part in parts.values() for t, u in zip(part["track_id"], part["audio_uri"],
                                                                           strict=True)]
    mels, errors = decode_log_mels(tasks, fc, args.workers, args.audio_root)
    for tid, err in errors.items():
        print(f"  skipping {tid}: {err}", flush=True)
    slices = {tid: slice_mel(mel, fc) for tid, mel in mels.items()}
    del mels
    torch.set_num_threads(os.cpu_count() or 1)
    scored = {}
    for name, part in parts.items():
        ids = [str(t) for t in part["track_id"] if str(t) in slices]
        logits, embeddings = slice_outputs(model, [slices[t] for t in ids])
        labels = [classes.index(g) for g in part.set_index("track_id").loc[ids, "genre"]] if name != "outside" else None
        scored[name] = ScoredSongs(logits, embeddings, labels)
        print(f"{name}: model outputs of {len(ids)} songs", flush=True)

    calibration = fit_temperature(scored["val"].logits, scored["val"].labels)
    fitted = calibration_figures(calibration, scored["val"].logits, scored["val"].labels)
    print(f"calibration: temperature {calibration.temperature:.3f} (validation NLL {calibration.val_nll:.3f}, "
          f"ECE {fitted['ece']:.3f} on the songs it was fitted on)", flush=True)
    rule = fit_rule(scored["train"], scored["val"], scored["outside"], meta.voting.tau, meta.voting.margin,
                    calibration, args.max_coverage_drop, outside_tag_columns(meta.backbone))
    print(format_table(rule.selection["table"]))
    print(f"out-of-taxonomy rule: {rule.score} - {rule.confidence_weight:g} x logit(confidence) > "
          f"{rule.threshold:.4g}", flush=True)
    metrics = dict(meta.metrics)
    metrics["calibrated_from"] = meta.metrics.get("calibrated_from", meta.version)  # the trained weights' bundle
    metrics["calibration_val"] = fitted
    metrics["calibration_skipped"] = sorted(errors)
    new = dataclasses.replace(meta, calibration=calibration, outside=rule, metrics=metrics, version="",
                              created_at="", weights_sha256="")
    saved = save_cnn_bundle(args.out, model.cpu(), new)
    print(f"wrote bundle {saved.url} version {saved.version}", flush=True)
    return 0


def format_table(table: list[dict]) -> str:
    """The comparison of the out-of-distribution scores, as a markdown table: each score's rows by confidence
    weight (the bundle keeps every row)."""
    head = ("| score | confidence weight | AUROC | threshold | coverage (taxonomy) | accuracy on decided (taxonomy) | "
            "outside songs unclassified |\n|---|---|---|---|---|---|---|")
    rows = [f"| {r['score']} | {r.get('confidence_weight', 0.0):g} | {r['auroc']:.3f} | {r['threshold']:.4g} | "
            f"{r['inside_coverage_before']:.3f} -> {r['inside_coverage']:.3f} | "
            f"{r['inside_accuracy_decided_before']:.4f} -> {r['inside_accuracy_decided']:.4f} | "
            f"{r['outside_unclassified_before']:.3f} -> {r['outside_unclassified']:.3f} |" for r in table]
    return "\n".join([head, *rows])


if __name__ == "__main__":
    from jobs.cli import run_module

    sys.exit(run_module(__doc__, build_parser, run))
