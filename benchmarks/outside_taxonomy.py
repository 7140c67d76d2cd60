"""Songs outside the taxonomy and calibrated confidence: the done-criteria figures of a calibrated CNN bundle.

    python benchmarks/outside_taxonomy.py --cnn models/default/cnn --catalog data/corpus/catalog.parquet \\
        --outside data/outside/catalog.parquet --outside-heldout data/outside-opl3/catalog.parquet

Labels, with the production labeller (``genre_core.labelling``: decode, the model, the vote rule, the bundle's
out-of-taxonomy rule and calibration), only songs that chose nothing (`genre-job calibrate` reads the train and
val splits):

* the ``test`` split of ``--catalog`` (songs of the taxonomy; repeat it to pool the test songs of several
  catalogs, e.g. the training corpus's and a catalog of new songs made with ``make-catalog --split test``: the
  ECE of 10 bins over a couple of hundred songs is noisy, and a larger held-out split measures it better);
* the ``test`` split of ``--outside`` (new songs of the outside styles, the soundfonts the choice used);
* every song of ``--outside-heldout`` (outside styles rendered with a soundfont the choice did not use).

Each option can be repeated: the figures are judged on the pooled songs, and each catalog's are printed below
them (catalogs rendered with other seeds may reuse track ids; each is labelled on its own).

Prints, against the done criteria of the out-of-taxonomy issue: the share of outside songs left unclassified
(>= 0.60; per style too), the in-taxonomy coverage and accuracy on decided songs with the rule and without it
(the vote rule alone, replayed on the same votes: the drop must be <= 5 points and the accuracy must not fall),
and the expected calibration error of ``confidence`` on the in-taxonomy test songs (<= 0.05) with its
reliability bins. ``--cache DIR`` keeps the label rows per bundle version and catalog; ``--record`` appends the
figures to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import record  # noqa: E402

from genre_core.calibration import expected_calibration_error, reliability  # noqa: E402
from genre_core.labelling import CNNVoter, label_catalog  # noqa: E402
from genre_core.schema import REASON_OUTSIDE, STATUS_CLASSIFIED, read_catalog, vote_shares  # noqa: E402
from genre_core.voting import decide  # noqa: E402


def labelled(voter: CNNVoter, df: pd.DataFrame, name: str, cache: str | None) -> pd.DataFrame:
    """Label rows of ``df`` (cached under ``cache`` by bundle version, track ids and audio), joined to the catalog."""
    # by track id and audio: catalogs rendered with other seeds reuse the same track ids
    key = hashlib.sha256("\n".join(sorted(df["track_id"] + "\t" + df["audio_uri"])).encode()).hexdigest()[:12]
    path = os.path.join(cache, f"{voter.bundle.version}-{name}-{key}.parquet") if cache else None
    if path and os.path.exists(path):
        rows = pd.read_parquet(path)
    else:
        t0 = time.perf_counter()
        rows = label_catalog(df, voter)
        print(f"{name}: labelled {len(rows)} songs in {time.perf_counter() - t0:.0f} s", flush=True)
        if path:
            os.makedirs(cache, exist_ok=True)
            rows.to_parquet(path)
    keep = [c for c in ("track_id", "genre", "style", "soundfont") if c in df.columns]
    return df[keep].rename(columns={"genre": "truth"}).merge(rows, on="track_id", how="left")


def vote_decided(rows: pd.DataFrame, voter: CNNVoter) -> np.ndarray:
    """Whether the vote rule alone (no out-of-taxonomy rule) decides each row: replayed on its own votes."""
    tau, m = voter.voting.tau, voter.voting.margin
    return np.array([s is not None and decide(s[None, :], tau, m).classified
                     for s in (vote_shares(p) for p in rows["probabilities"])])


def pooled(voter: CNNVoter, urls: list[str], name: str, cache: str | None, test_only: bool) -> pd.DataFrame:
    """Label rows of the catalogs ``urls`` (their test split when ``test_only``), each tagged with its catalog."""
    parts = []
    for url in urls:
        df = read_catalog(url)
        parts.append(labelled(voter, df[df["split"] == "test"] if test_only else df, name, cache).assign(catalog=url))
    return pd.concat(parts, ignore_index=True)


def forced_right_of(rows: pd.DataFrame, voter: CNNVoter) -> np.ndarray:
    """Whether each song's forced vote (the top vote share, whatever the rules say) is its true genre."""
    forced = [None if s is None else voter.bundle.classes[int(np.argmax(s))]
              for s in (vote_shares(p) for p in rows["probabilities"])]
    return np.array([f == t for f, t in zip(forced, rows["truth"], strict=True)])


def taxonomy_line(rows: pd.DataFrame, voter: CNNVoter, name: str) -> str:
    """Coverage and accuracy on decided songs of songs of the taxonomy, without the out-of-taxonomy rule (the vote
    rule replayed on the same votes) and with it, judged against the done criteria on exact counts; ``rows`` carry
    ``forced_right`` (:func:`forced_right_of`)."""
    right = (rows["genre"] == rows["truth"]).to_numpy(bool)
    decided = (rows["status"] == STATUS_CLASSIFIED).to_numpy(bool)
    before, forced_right = vote_decided(rows, voter), rows["forced_right"].to_numpy(bool)
    cov0, cov1 = before.mean(), decided.mean()
    r0, n0, r1, n1 = int(forced_right[before].sum()), int(before.sum()), int(right[decided].sum()), int(decided.sum())
    return (f"{name}: coverage {cov0:.3f} -> {cov1:.3f} (drop {100 * (cov0 - cov1):.1f} points; <= 5: "
            f"{met(cov0 - cov1 <= 0.05 + 1e-9)}), accuracy on decided {r0}/{n0} = {r0 / max(n0, 1):.4f} -> "
            f"{r1}/{n1} = {r1 / max(n1, 1):.4f} (does not fall: {met(r1 * n0 >= r0 * n1)}); "
            f"{int((rows['reason'] == REASON_OUTSIDE).sum())} turned away as outside the taxonomy")


def outside_line(rows: pd.DataFrame, voter: CNNVoter, name: str) -> str:
    """The share of outside songs left unclassified (>= 0.60), by the vote rule alone and per style."""
    uncl = (rows["status"] == "unclassified").to_numpy(bool)
    by_vote = ~vote_decided(rows, voter)
    per = ", ".join(f"{st} {g['status'].eq('unclassified').mean():.2f}" for st, g in rows.groupby("style"))
    return (f"{name}: unclassified {int(uncl.sum())}/{len(rows)} = {uncl.mean():.3f} (vote rule alone "
            f"{by_vote.mean():.3f}; >= 0.60: {met(uncl.mean() >= 0.6)}); per style: {per}")


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cnn", required=True, help="a CNN bundle calibrated by `genre-job calibrate`")
    ap.add_argument("--catalog", required=True, action="append",
                    help="catalog of the taxonomy; its test split is labelled (repeat to pool several catalogs)")
    ap.add_argument("--outside", required=True, action="append",
                    help="catalog of outside styles; its test split is labelled (repeat to pool several catalogs)")
    ap.add_argument("--outside-heldout", required=True, action="append",
                    help="outside styles of a soundfont the choice did not use (repeat to pool several catalogs)")
    ap.add_argument("--cache", default=None, help="folder keeping the label rows between runs")
    ap.add_argument("--record", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = ap.parse_args()

    voter = CNNVoter(args.cnn)
    bundle = voter.bundle
    if bundle.outside is None or bundle.calibration is None:
        print(f"error: {args.cnn} is not calibrated; run `genre-job calibrate` first", file=sys.stderr)
        return 2
    # catalogs rendered with other seeds reuse track ids: each catalog is labelled on its own, its rows tagged
    inside = pooled(voter, args.catalog, "inside-test", args.cache, test_only=True)
    inside["forced_right"] = forced_right_of(inside, voter)
    new = pooled(voter, args.outside, "outside-test", args.cache, test_only=True)
    held = pooled(voter, args.outside_heldout, "outside-heldout", args.cache, test_only=False)

    lines = [f"- bundle {bundle.version} (calibrated from {bundle.metrics.get('calibrated_from')}): rule "
             f"{bundle.outside.score} - {bundle.outside.confidence_weight:g} x logit(confidence) > "
             f"{bundle.outside.threshold:.4g} (ambiguous votes: {bundle.outside.score} > "
             f"{bundle.outside.threshold_for(False):.4g}), temperature "
             f"{bundle.calibration.temperature:.3f}, tau {voter.voting.tau}, margin {voter.voting.margin}"]
    lines.append(taxonomy_line(inside, voter, f"- taxonomy, test split ({len(inside)} songs)"))
    if len(args.catalog) > 1:
        lines += [taxonomy_line(g, voter, f"  - {url}, {len(g)} test songs")
                  for url, g in inside.groupby("catalog", sort=False)]
    for kind, rows in (("new songs", new), ("held-out soundfont", held)):
        sf = ", ".join(sorted(rows["soundfont"].unique()))
        lines.append(outside_line(rows, voter, f"- outside styles, {kind} ({sf}), {len(rows)} songs"))
        if rows["catalog"].nunique() > 1:
            lines += [outside_line(g, voter, f"  - {url}, {len(g)} songs")
                      for url, g in rows.groupby("catalog", sort=False)]
    decided = (inside["status"] == STATUS_CLASSIFIED).to_numpy(bool)
    forced_right = inside["forced_right"].to_numpy(bool)
    conf = inside["confidence"].to_numpy(np.float64)
    ece, ece_dec = expected_calibration_error(conf, forced_right), expected_calibration_error(conf[decided],
                                                                                             forced_right[decided])
    lines.append(f"- confidence on the taxonomy's test songs: ECE {ece:.3f} (<= 0.05: "
                 f"{met(ece <= 0.05)}); on the {int(decided.sum())} decided songs {ece_dec:.3f}; "
                 f"mean confidence {conf.mean():.3f}, share right {forced_right.mean():.3f}")
    bins = "; ".join(f"{b['low']:.1f}-{b['high']:.1f}: {b['n']} songs, conf {b['confidence']:.2f}, right "
                     f"{b['accuracy']:.2f}" for b in reliability(conf, forced_right) if b["n"])
    lines.append(f"- reliability bins (test): {bins}")
    if len(args.catalog) > 1:
        for url, g in inside.groupby("catalog", sort=False):
            c, r = conf[g.index], forced_right[g.index]
            lines.append(f"  - {url}, {len(g)} test songs: ECE {expected_calibration_error(c, r):.3f}, "
                         f"mean confidence {c.mean():.3f}, share right {r.mean():.3f}")
    table = bundle.outside.selection.get("table", [])
    if table:
        lines.append("- the comparison on validation songs that chose the rule (from the bundle):\n")
        from jobs.calibrate import format_table

        lines.append(format_table(table))
    print("\n".join(lines))
    if args.record:
        record("Songs outside the taxonomy and calibrated confidence", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
