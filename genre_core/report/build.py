"""Assemble the evaluation report: labels + truth (+ models and audio for a few songs, + an ablation file)
-> one self-contained HTML page and the JSON-ready evaluation it shows.

Sections: summary (headline metrics, runs and model versions), status breakdown, confusion matrix,
per-genre precision/recall, coverage-accuracy curves over the vote thresholds, what the GAN stage changed,
the GAN ablation table, a gallery of unclassified songs (a slice before and after translation) and a
per-slice genre timeline of a few songs. A part that cannot be drawn (no GAN stage in the run, no models,
audio unavailable, no ablation file) is replaced by a note that says why and what to do.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from genre_core.artifacts import BundleError
from genre_core.errors import TrackError
from genre_core.report import figures
from genre_core.report.ablation import HOW_TO_GET, AblationError, load_ablation
from genre_core.report.evaluation import evaluate_merged, merge_with_truth, outside_summary
from genre_core.report.html import Section, esc, fmt, img, kv_table, metrics_row, note, page, para, table
from genre_core.report.songs import SongAnalyser, SongSlices
from genre_core.schema import DECIDED_STATUSES, STATUS_GAN_RESOLVED, STATUS_UNCLASSIFIED

CURVE_TABLE_THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


@dataclass
class ReportRequest:
    """What to build the report from. ``cnn_url``/``gan_url`` are the bundles for the per-song pictures
    (None: those sections say why they are missing, with ``models_note``)."""

    labels: pd.DataFrame
    truth: pd.DataFrame
    classes: list[str]
    labels_source: str = ""
    truth_source: str = ""
    cnn_url: str | None = None
    gan_url: str | None = None
    models_note: str = ""
    ablation_path: str | None = None
    gallery: int = 4
    timeline: int = 3
    title: str = "genre-tagger evaluation report"


@dataclass
class Report:
    html: str
    evaluation: dict[str, Any]
    notes: list[str] = field(default_factory=list)   # every "could not draw X because Y" of the page
    songs: dict[str, SongSlices] = field(default_factory=dict)  # the songs analysed from their audio


def build_report(req: ReportRequest, progress: Callable[[str], None] | None = None) -> Report:
    """The report page and its figures (see the module docstring)."""
    say = progress or (lambda _msg: None)
    merged = merge_with_truth(req.labels, req.truth, req.classes)
    ev = evaluate_merged(merged, req.classes)
    ev["outside_taxonomy"] = outside_summary(req.labels, req.truth)
    notes: list[str] = []
    analyser = _load_analyser(req, ev, notes)
    tau_m = _thresholds(analyser, ev)
    say("figures: status, confusion, per-genre, coverage curves")
    sections = [
        _summary(req, ev),
        _status(ev),
        Section("confusion", "Confusion matrix", img(figures.confusion_figure(ev["confusion"]["matrix"], req.classes),
                "confusion matrix", "rows: true genre; columns: the forced vote (argmax of the votes), whether or not "
                "the song was decided; error rows have no vote and are left out")),
        _per_genre(ev, req.classes),
        _curves(ev, tau_m),
        _calibration(ev),
        _outside(ev),
        _gan_stage(ev),
        _ablation(req.ablation_path, notes),
    ]
    cache: dict[str, SongSlices | None] = {}
    say("songs: gallery and timeline from the audio")
    sections.append(_gallery(req, merged, analyser, ev, cache, notes))
    sections.append(_timeline(req, merged, analyser, cache, notes))
    if notes:
        sections.append(Section("notes", "Notes", "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"))
    subtitle = (f"{ev['n_songs']} songs of {req.truth_source or 'the truth catalog'} against the labels of "
                f"{req.labels_source or 'the labels'}")
    songs = {tid: song for tid, song in cache.items() if song is not None}
    return Report(html=page(req.title, subtitle, sections), evaluation=ev, notes=notes, songs=songs)


# ---- models -------------------------------------------------------------------------------------------------

def _load_analyser(req: ReportRequest, ev: dict[str, Any], notes: list[str]) -> SongAnalyser | None:
    if req.cnn_url is None:
        notes.append(req.models_note or "no models given: the per-song pictures are left out")
        return None
    gan_url = req.gan_url if ev["gan_stage"]["ran"] else None
    try:
        analyser = SongAnalyser(req.cnn_url, gan_url)
    except (BundleError, FileNotFoundError, ValueError) as exc:
        notes.append(f"could not load the models for the per-song pictures: {exc}")
        return None
    used = ev["runs"]["model_versions"]
    if used and analyser.cnn_version not in used:
        notes.append(f"the labels come from CNN {', '.join(used)} but the pictures use CNN {analyser.cnn_version} "
                     f"({req.cnn_url}); pass --models with the bundles the labels were made with")
    if ev["gan_stage"]["ran"] and analyser.gan_version is None:
        notes.append("the run had a GAN stage but no GAN bundle was found next to the CNN bundle: the gallery shows "
                     "the songs before translation only")
    elif analyser.gan_version and analyser.gan_version not in ev["gan_stage"]["gan_versions"]:
        notes.append(f"the labels come from GAN {', '.join(ev['gan_stage']['gan_versions'])} but the gallery uses "
                     f"GAN {analyser.gan_version}")
    return analyser


def _thresholds(analyser: SongAnalyser | None, ev: dict[str, Any]) -> tuple[float, float] | None:
    """The run's tau and margin, when the loaded CNN bundle is the one the labels come from."""
    if analyser is None or analyser.cnn_version not in ev["runs"]["model_versions"]:
        return None
    return analyser.cnn_meta.voting.tau, analyser.cnn_meta.voting.margin


# ---- sections from the labels alone ---------------------------------------------------------------------------

def _summary(req: ReportRequest, ev: dict[str, Any]) -> Section:
    gan = ev["gan_stage"]
    heads = [("songs evaluated", str(ev["n_songs"])), ("accuracy (forced vote)", fmt(ev["accuracy"])),
             ("coverage (songs decided)", fmt(ev["coverage"], ".2f")),
             ("accuracy on decided songs", fmt(ev["accuracy_on_classified"])),
             ("resolved by the GAN stage", str(gan["n_resolved"]) if gan["ran"] else "no GAN stage")]
    runs = ev["runs"]
    rows = [("labels", req.labels_source), ("truth", req.truth_source), ("runs", ", ".join(runs["run_ids"])),
            ("CNN model", ", ".join(runs["model_versions"])), ("GAN model", ", ".join(runs["gan_versions"]) or "-"),
            ("features", ", ".join(runs["feature_versions"])),
            ("labelled", f"{runs['labelled_from']} .. {runs['labelled_to']}")]
    body = metrics_row(heads) + para(
        "Accuracy: share of the songs whose forced vote (the genre with the most slice votes) is the true genre; an "
        "error or missing label counts as wrong. Coverage: share of the songs given a genre (classified or "
        "gan_resolved). Accuracy on decided songs: among those, the share given the true genre."
    ) + kv_table(rows)
    return Section("summary", "Summary", body)


def _status(ev: dict[str, Any]) -> Section:
    rows = []
    for r in ev["status_breakdown"]:
        if r["status"] == "missing" and not r["songs"]:
            continue
        kinds = ", ".join(f"{k} {v}" for k, v in r.get("error_kinds", {}).items())
        means = r.get("right_means", kinds)
        if r.get("reasons"):
            means += "; by reason: " + ", ".join(f"{k} {v}" for k, v in r["reasons"].items())
        rows.append([r["status"], r["songs"], fmt(r["share"], ".2f"), fmt(r.get("right", "")), means])
    body = img(figures.status_figure(ev["status_breakdown"]), "songs per status",
               "songs per status; the solid part of a bar is the songs counted right (last column)") + table(
        ["status", "songs", "share", "right", "right means / error kinds"], rows)
    return Section("status", "Status breakdown", body)


def _per_genre(ev: dict[str, Any], classes: Sequence[str]) -> Section:
    pg = ev["per_genre"]
    rows = [[c, fmt(pg[c]["precision"]), fmt(pg[c]["recall"]), pg[c]["support"]] for c in classes]
    body = img(figures.per_genre_figure(pg, classes), "precision and recall per genre",
               "precision and recall of the forced vote per genre") + table(
        ["genre", "precision", "recall", "songs"], rows)
    return Section("per-genre", "Per-genre precision and recall", body)


def _curves(ev: dict[str, Any], tau_m: tuple[float, float] | None) -> Section:
    curves = ev["coverage_curves"]
    operating = (ev["coverage"], ev["accuracy_on_classified"])
    top = curves["top_share"]
    rows = []
    for t in CURVE_TABLE_THRESHOLDS:
        i = min(range(len(top["threshold"])), key=lambda k: abs(top["threshold"][k] - t))
        rows.append([fmt(t, ".2f"), fmt(top["coverage"][i], ".2f"), fmt(top["accuracy"][i]), top["n_decided"][i]])
    text = ("Each song's votes are shares summing to 1. Deciding a song only when its top share (or its margin to "
            "the runner-up) reaches a threshold trades coverage for accuracy; the curves replay that rule on these "
            "labels' votes against the truth. The dot is this run's own rule (top share >= tau and margin >= m, "
            "then the GAN stage if any).")
    if tau_m is not None:
        text += f" The labels' CNN bundle uses tau {tau_m[0]:.2f} and margin {tau_m[1]:.2f}."
    body = img(figures.coverage_curve_figure(curves, operating, tau_m[0] if tau_m else None),
               "coverage and accuracy over the vote threshold") + para(text) + table(
        ["top-share threshold", "coverage", "accuracy on decided", "songs decided"], rows)
    return Section("coverage", "Coverage and accuracy over the vote threshold", body)


def _calibration(ev: dict[str, Any]) -> Section:
    c = ev["calibration"]
    title = "Confidence: is it the probability of being right?"
    if not c["n_songs"]:
        return Section("calibration", title, note(
            "No label here has a confidence: the labels' CNN bundle was not calibrated (`genre-job calibrate`), or "
            "the labels were made before confidence meant a probability (their vote share was in that column)."))
    text = (f"A song's confidence is the model's calibrated probability that the top genre of its votes (its label, "
            f"or its forced vote when unclassified) is right, fitted on validation songs. Over these {c['n_songs']} "
            f"songs its mean is {c['mean_confidence']:.3f} and the share right {c['accuracy']:.3f}; the expected "
            f"calibration error (ECE: the songs-weighted mean gap between confidence and the share right, over 10 "
            f"equal-width bins) is {c['ece']:.3f}, and {fmt(c['ece_decided'])} over the {c['n_decided']} decided "
            "songs. The vote share is in the labels' vote_share column.")
    rows = [[f"{b['low']:.1f}-{b['high']:.1f}", b["n"], fmt(b["confidence"]), fmt(b["accuracy"])]
            for b in c["reliability"] if b["n"]]
    body = img(figures.reliability_figure(c["reliability"], c["ece"]), "reliability diagram") + para(text) + table(
        ["confidence bin", "songs", "mean confidence", "share right"], rows)
    return Section("calibration", title, body)


def _outside(ev: dict[str, Any]) -> Section:
    o = ev["outside_taxonomy"]
    title = "Songs outside the taxonomy"
    if not o["n_songs"]:
        return Section("outside", title, note(
            "The truth catalog has no song of a style outside the taxonomy (genre null, style set, as `genre-job "
            "make-catalog --genres outside` renders them), so nothing here says how often such songs are turned "
            "away."))
    rows = [[style, r["songs"], r["unclassified"], fmt(r["unclassified_share"], ".2f"), r["outside_taxonomy"],
             r["given_a_genre"]] for style, r in o["per_style"].items()]
    rows.append(["all", o["songs"], o["unclassified"], fmt(o["unclassified_share"], ".2f"), o["outside_taxonomy"],
                 o["given_a_genre"]])
    text = ("No genre of the taxonomy is right for these songs: the right outcome is unclassified, either because "
            "their votes were ambiguous or, reason outside_taxonomy, because the out-of-taxonomy rule found their "
            "slices unlike the songs of every genre. They are left out of every other section of this page.")
    return Section("outside", title, para(text) + table(
        ["style", "songs", "unclassified", "share", "of which outside_taxonomy", "given a genre (wrong)"], rows))


def _gan_stage(ev: dict[str, Any]) -> Section:
    g = ev["gan_stage"]
    if not g["ran"]:
        return Section("gan", "What the GAN stage changed", note(
            "No GAN stage in this run: the labels carry no GAN version and no song is gan_resolved, so the songs the "
            "CNN found ambiguous stay unclassified. (A GAN stage runs when the models folder holds a gan/ bundle "
            "made for its CNN; see the README, 'The GAN stage'.)"))
    rows = [["GAN model", ", ".join(g["gan_versions"]) or "-"],
            ["songs the CNN left unclassified", g["n_cnn_unclassified"]],
            ["decided by the GAN stage (gan_resolved)", g["n_resolved"]],
            ["... of which right", g["n_resolved_right"]],
            ["... of which differ from the forced vote", g["n_changed_from_vote"]],
            ["still unclassified", g["n_still_unclassified"]],
            ["accuracy of the forced vote on these songs", fmt(g["accuracy_forced_vote"])],
            ["accuracy of the GAN stage on these songs (undecided = wrong)", fmt(g["accuracy_gan"])],
            ["wrong -> right / right -> wrong vs the forced vote", f"{g['wrong_to_right']} / {g['right_to_wrong']}"],
            ["exact McNemar p (GAN stage vs forced vote)", fmt(g["mcnemar_p"], ".3g")]]
    return Section("gan", "What the GAN stage changed", kv_table(rows))


def _ablation(path: str | None, notes: list[str]) -> Section:
    title = "GAN ablation"
    if not path:
        return Section("ablation", title, note(f"No ablation file given. To get one: {HOW_TO_GET}."))
    try:
        ab = load_ablation(path)
    except (OSError, AblationError) as exc:
        notes.append(f"ablation table left out: {exc}")
        return Section("ablation", title, note(f"Could not read the ablation file: {exc}. To get one: {HOW_TO_GET}."))
    body = para(f"From {ab.source}" + (f": {ab.heading}" if ab.heading else "") + ". Systems compared on the songs "
                "the CNN left unclassified (see benchmarks/gan_ablation.py for each system).")
    for t in ab.tables:
        body += f"<h3>{esc(t.title)}</h3>" + table(t.header, t.rows)
    for n in ab.notes:
        body += para(n)
    return Section("ablation", title, body)


# ---- sections that need the audio and the models --------------------------------------------------------------

def _interleave(*groups: Sequence[str]) -> list[str]:
    out: list[str] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


def _analyse(ids: Sequence[str], n: int, merged: pd.DataFrame, analyser: SongAnalyser,
             cache: dict[str, SongSlices | None], notes: list[str]) -> list[SongSlices]:
    """Up to ``n`` songs of ``ids`` (in order) analysed from their audio. A song whose audio cannot be read is
    noted once and skipped; after ``2 n + 2`` such songs the rest is not tried."""
    rows = merged.set_index("track_id")
    out: list[SongSlices] = []
    failures = 0
    for tid in ids:
        if len(out) == n or failures > 2 * n + 1:
            break
        if tid not in cache:
            r = rows.loc[tid]
            try:
                cache[tid] = analyser.song(tid, str(r["audio_uri"]), r["truth"], r["status"], r["decided"])
            except TrackError as exc:
                cache[tid] = None
                notes.append(f"audio of {tid} unavailable ({exc.describe()}): left out of the pictures")
                failures += 1
        song = cache[tid]
        if song is not None:
            out.append(song)
    return out


def _by_confidence(df: pd.DataFrame, ascending: bool = True) -> list[str]:
    return df.sort_values(["confidence", "track_id"], ascending=[ascending, True])["track_id"].tolist()


def _no_songs_note(req: ReportRequest, merged: pd.DataFrame, analyser: SongAnalyser | None, n_songs: int,
                   flag: str) -> str | None:
    """Why a section of song pictures is left out (``n_songs`` asked for with ``flag``), or None."""
    if n_songs <= 0:
        return f"Left out ({flag} 0)."
    if analyser is None:
        return "Left out: no models to analyse songs with. " + (req.models_note or "")
    if "audio_uri" not in merged.columns:
        return "Left out: the truth catalog has no audio_uri column, so the songs' audio cannot be found."
    return None


def _gallery(req: ReportRequest, merged: pd.DataFrame, analyser: SongAnalyser | None, ev: dict[str, Any],
             cache: dict[str, SongSlices | None], notes: list[str]) -> Section:
    title = "Unclassified songs before and after translation"
    why = _no_songs_note(req, merged, analyser, req.gallery, "--gallery")
    if why:
        return Section("gallery", title, note(why))
    assert analyser is not None
    undecided = merged[merged["status"].isin([STATUS_UNCLASSIFIED, STATUS_GAN_RESOLVED])]
    if undecided.empty:
        return Section("gallery", title, note("No song of these labels was left unclassified by the CNN."))
    ids = _interleave(_by_confidence(undecided[undecided["status"] == STATUS_GAN_RESOLVED]),
                      _by_confidence(undecided[undecided["status"] == STATUS_UNCLASSIFIED]))
    songs = _analyse(ids, req.gallery, merged, analyser, cache, notes)
    if not songs:
        return Section("gallery", title, note("Left out: the audio of the unclassified songs could not be read "
                                              "(see the notes at the end of this page)."))
    if analyser.generators is None:
        why = ("No GAN stage in this run: these are the songs the CNN could not decide, before translation only "
               "(the middle slice of each, as the CNN sees it)." if not ev["gan_stage"]["ran"] else
               "The run had a GAN stage but its bundle is not available here: the songs before translation only.")
        body = note(why) + img(figures.spectrogram_figure(songs, analyser.classes),
                               "spectrograms of unclassified songs", "least confident songs first")
        return Section("gallery", title, body)
    examples = [analyser.translation(s) for s in songs]
    from genre_core.report.translations import draw_translations

    buf = io.BytesIO()
    draw_translations(buf, examples)
    caption = ("each row: a song's middle slice x, the CNN's features f of it (what the GAN translates) with the "
               "CNN's vote, the translation G(f) with the GAN vote (the CNN on every translated slice of the song) "
               "and the combined vote that decided it, and the change G(f) - f")
    return Section("gallery", title, img(buf.getvalue(), "slices before and after GAN translation", caption))


def _timeline(req: ReportRequest, merged: pd.DataFrame, analyser: SongAnalyser | None,
              cache: dict[str, SongSlices | None], notes: list[str]) -> Section:
    title = "Per-slice genre timeline"
    why = _no_songs_note(req, merged, analyser, req.timeline, "--timeline")
    if why:
        return Section("timeline", title, note(why))
    assert analyser is not None
    decided = merged[merged["status"].isin(list(DECIDED_STATUSES))]
    wrong = decided[decided["decided"] != decided["truth"]]
    right = decided[decided["decided"] == decided["truth"]]
    undecided = merged[merged["status"] == STATUS_UNCLASSIFIED]
    ids = _interleave(_by_confidence(undecided), _by_confidence(wrong), _by_confidence(right, ascending=False))
    songs = _analyse(ids, req.timeline, merged, analyser, cache, notes)
    body = (img(figures.timeline_figure(songs, analyser.classes), "per-slice genre timeline",
                "the CNN's genre probabilities slice by slice (one ~3 s slice per column), for an unclassified, a "
                "wrongly and a rightly decided song where the labels have them")
            if songs else note("Left out: the audio of the chosen songs could not be read."))
    return Section("timeline", title, body)
