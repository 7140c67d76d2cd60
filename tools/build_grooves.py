#!/usr/bin/env python
"""Build the compact groove file shipped with genre_core from the Groove MIDI Dataset.

Usage::

    python tools/build_grooves.py --src ../shared/data/groove-midi \\
        --out genre_core/synth/data/grooves.json.gz

Reads ``info.csv`` in the source folder, keeps every ``beat`` (not ``fill``) performance in 4-4,
converts note-on times to beats, maps the Roland TD-11 extended note numbers to General MIDI
percussion notes and cuts each performance into 2-bar (8-beat) windows. Human timing (no
quantisation) and velocities are kept. The output is gzipped JSON, byte-for-byte deterministic
(sorted input, no randomness, gzip mtime 0).

Source: Magenta Groove MIDI Dataset (Gillick, Roberts, Engel, Eck, Bamman, ICML 2019), CC BY 4.0.
See genre_core/synth/data/GROOVES_ATTRIBUTION.md.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import mido

FORMAT_VERSION = 1
WINDOW_BEATS = 8  # 2 bars of 4-4
BEATS_PER_BAR = 4
# A hit up to this many beats before a window's first downbeat belongs to that window (a downbeat
# played early), so window offsets lie in [-EARLY, WINDOW_BEATS - EARLY).
EARLY = 0.125
MIN_HITS = 8  # per window
MIN_HITS_PER_BAR = 3  # each bar of a window must be played (no half-empty windows)
DEFAULT_MAX_PER_STYLE = 400
DEFAULT_MAX_BYTES = 3 * 1024 * 1024

# Roland TD-11 extended map (as recorded in the dataset) -> nearest General MIDI drum note.
TD11_TO_GM: dict[int, int] = {
    36: 36,  # kick
    37: 37,  # snare cross-stick -> side stick
    38: 38,  # snare head
    39: 39,  # hand clap
    40: 38,  # snare rim (rimshot) -> acoustic snare
    22: 42,  # hi-hat closed edge -> closed hi-hat
    26: 46,  # hi-hat open edge -> open hi-hat
    42: 42,  # hi-hat closed bow
    44: 44,  # hi-hat pedal
    46: 46,  # hi-hat open bow
    48: 48,  # tom 1 head -> hi-mid tom
    50: 48,  # tom 1 rim -> hi-mid tom
    45: 45,  # tom 2 head -> low tom
    47: 45,  # tom 2 rim -> low tom
    43: 43,  # tom 3 (floor) head -> high floor tom
    58: 43,  # tom 3 rim -> high floor tom
    49: 49,  # crash 1 bow -> crash 1
    55: 49,  # crash 1 edge -> crash 1
    57: 57,  # crash 2 bow -> crash 2
    52: 57,  # crash 2 edge -> crash 2
    51: 51,  # ride bow -> ride 1
    59: 51,  # ride edge -> ride 1
    53: 53,  # ride bell
}


def map_note(note: int) -> int | None:
    """GM drum note for a recorded note, or None to drop it."""
    if note in TD11_TO_GM:
        return TD11_TO_GM[note]
    if 35 <= note <= 81:  # already a GM percussion note
        return note
    return None


def read_rows(src: Path) -> list[dict[str, str]]:
    with open(src / "info.csv", newline="", encoding="utf-8") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if r["beat_type"] == "beat" and r["time_signature"] == "4-4"
        ]
    rows.sort(key=lambda r: r["midi_filename"])
    return rows


def note_beats(path: Path, bpm_hint: float) -> list[tuple[float, int, int]]:
    """(beat, gm_note, velocity) for every note-on in the file, in time order.

    With a single tempo (every file in the dataset) a beat is ticks / ticks_per_beat. Should a file
    carry tempo changes, times are converted to seconds through the tempo map and then to beats at
    the ``bpm`` column of info.csv (the click the drummer played to).
    """
    mid = mido.MidiFile(path)
    tpb = mid.ticks_per_beat
    merged = list(mido.merge_tracks(mid.tracks))
    tempos = {m.tempo for m in merged if m.type == "set_tempo"}
    constant = len(tempos) <= 1
    tempo = next(iter(tempos)) if tempos else 500000
    events: list[tuple[float, int, int]] = []
    tick = 0
    seconds = 0.0
    for msg in merged:
        if msg.time:
            seconds += mido.tick2second(msg.time, tpb, tempo) if not constant else 0.0
            tick += msg.time
        if msg.type == "set_tempo":
            tempo = msg.tempo
        elif msg.type == "note_on" and msg.velocity > 0:
            gm = map_note(msg.note)
            if gm is None:
                continue
            beat = tick / tpb if constant else seconds * bpm_hint / 60.0
            events.append((beat, gm, int(msg.velocity)))
    return events


def cut_windows(events: list[tuple[float, int, int]]) -> list[tuple[int, list[list]]]:
    """2-bar windows of a performance: list of (first bar index, [[offset, note, vel], ...])."""
    if not events:
        return []
    last = max(b for b, _, _ in events)
    by_window: dict[int, list[list]] = defaultdict(list)
    for beat, note, vel in events:
        k = int((beat + EARLY) // WINDOW_BEATS)
        if k < 0:
            continue
        offset = round(beat - k * WINDOW_BEATS, 3)
        by_window[k].append([offset, note, vel])
    out = []
    for k in sorted(by_window):
        # the window must be fully inside the performance (no truncated last window)
        if (k + 1) * WINDOW_BEATS - EARLY > last + EARLY:
            continue
        ev = sorted(by_window[k], key=lambda e: (e[0], e[1], e[2]))
        if len(ev) < MIN_HITS:
            continue
        bar0 = sum(1 for e in ev if e[0] < BEATS_PER_BAR - EARLY)
        if bar0 < MIN_HITS_PER_BAR or len(ev) - bar0 < MIN_HITS_PER_BAR:
            continue
        out.append((k * WINDOW_BEATS // BEATS_PER_BAR, ev))
    return out


def build(src: Path, max_per_style: int) -> dict:
    rows = read_rows(src)
    # style -> list (per file, sorted by filename) of list of window records
    per_style: dict[str, list[list[dict]]] = defaultdict(list)
    for r in rows:
        style = r["style"].split("/")[0].strip().lower()
        bpm = float(r["bpm"])
        events = note_beats(src / r["midi_filename"], bpm)
        wins = cut_windows(events)
        if not wins:
            continue
        recs = [
            {
                "style": style,
                "substyle": r["style"],
                "bpm": int(bpm) if bpm.is_integer() else bpm,
                "drummer": r["drummer"],
                "source": r["midi_filename"],
                "bar": bar,
                "events": ev,
            }
            for bar, ev in wins
        ]
        per_style[style].append(recs)

    grooves: dict[str, list[dict]] = {}
    for style in sorted(per_style):
        files = per_style[style]
        # round-robin over the performances so a capped style still spans every drummer and song
        picked: list[dict] = []
        depth = 0
        while len(picked) < max_per_style and any(depth < len(f) for f in files):
            for f in files:
                if depth < len(f) and len(picked) < max_per_style:
                    picked.append(f[depth])
            depth += 1
        picked.sort(key=lambda g: (g["source"], g["bar"]))
        grooves[style] = picked
    return {
        "format": FORMAT_VERSION,
        "window_beats": WINDOW_BEATS,
        "event_fields": ["beat_offset", "gm_note", "velocity"],
        "source": "Magenta Groove MIDI Dataset (Gillick, Roberts, Engel, Eck, Bamman, ICML 2019), CC BY 4.0",
        "grooves": grooves,
    }


def encode(data: dict) -> bytes:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")
    buf = io.BytesIO()
    # filename "" and mtime 0 keep the gzip header free of anything that varies between builds
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, required=True, help="groove-midi folder (with info.csv)")
    ap.add_argument("--out", type=Path, required=True, help="output .json.gz")
    ap.add_argument("--max-per-style", type=int, default=DEFAULT_MAX_PER_STYLE)
    ap.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    if not (args.src / "info.csv").is_file():
        print(f"error: {args.src}/info.csv not found", file=sys.stderr)
        return 2
    cap = args.max_per_style
    while True:
        data = build(args.src, cap)
        blob = encode(data)
        if len(blob) <= args.max_bytes or cap <= 10:
            break
        cap = int(cap * 0.8)  # shrink deterministically until the file fits
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(blob)

    if not args.quiet:
        grooves = data["grooves"]
        print(f"{'style':<14}{'windows':>8}{'files':>7}{'drummers':>10}{'events':>9}")
        total_w = total_e = 0
        for style, gs in grooves.items():
            n_ev = sum(len(g["events"]) for g in gs)
            n_files = len({g["source"] for g in gs})
            n_dr = len({g["drummer"] for g in gs})
            total_w += len(gs)
            total_e += n_ev
            print(f"{style:<14}{len(gs):>8}{n_files:>7}{n_dr:>10}{n_ev:>9}")
        print(f"{'total':<14}{total_w:>8}{'':>7}{'':>10}{total_e:>9}")
        notes = Counter(e[1] for gs in grooves.values() for g in gs for e in g["events"])
        print("GM notes:", dict(sorted(notes.items())))
        print(f"cap per style: {cap}; wrote {args.out} ({len(blob):,} bytes, {len(blob) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
