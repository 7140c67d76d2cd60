"""The GAN ablation table of the report, read from what ``benchmarks/gan_ablation.py`` produced.

Two sources are accepted:

* the JSON written with ``--out-json FILE`` (every figure, per split and per GAN seed): each system's
  figures are summarised over the seeds as ``mean [min..max]``, as the script prints them;
* a markdown file holding the script's tables (e.g. ``benchmarks/RESULTS.md``): the tables whose first
  column is ``system``, from the last ``## ...ablation...`` section when there is one, with their ``###``
  headings and the ``done criterion`` line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

HEADER = ["system", "accuracy", "coverage", "acc. on decided", "wrong->right", "right->wrong", "McNemar p"]
JSON_KEYS = [("accuracy", ".3f"), ("coverage", ".2f"), ("accuracy_on_decided", ".3f"), ("wrong_to_right", ".1f"),
             ("right_to_wrong", ".1f"), ("mcnemar_p", ".3g")]
HOW_TO_GET = ("python benchmarks/gan_ablation.py --cnn models/default/cnn --gan GAN_BUNDLE [--gan ...] "
              "--out-json ablation.json, then pass --ablation ablation.json (or --ablation benchmarks/RESULTS.md)")


class AblationError(ValueError):
    """The file is not an ablation result of benchmarks/gan_ablation.py."""


@dataclass
class AblationTable:
    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Ablation:
    source: str
    heading: str = ""
    tables: list[AblationTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_ablation(path: str) -> Ablation:
    """Read an ablation JSON or markdown file (see the module docstring); AblationError when it holds none."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            results = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AblationError(f"{path} is not valid JSON: {exc}") from exc
        return from_results(results, path)
    return from_markdown(text, path)


def _aggregate(values: list[float], fmt: str) -> str:
    v = np.array(values, dtype=float)
    if len(v) == 0 or np.isnan(v).all():
        return "n/a"
    if len(v) == 1 or np.allclose(v, v[0], equal_nan=True):
        return format(v[0], fmt)
    return f"{format(np.nanmean(v), fmt)} [{format(np.nanmin(v), fmt)}..{format(np.nanmax(v), fmt)}]"


def from_results(results: dict, source: str) -> Ablation:
    """Tables from the JSON of ``gan_ablation.py --out-json``."""
    splits = results.get("splits") if isinstance(results, dict) else None
    if not isinstance(splits, dict) or not splits:
        raise AblationError(f"{source} has no 'splits': not a JSON written by benchmarks/gan_ablation.py --out-json")
    out = Ablation(source=source, heading=f"CNN {results.get('cnn', '?')}, GAN bundles "
                   + ", ".join(map(str, results.get("gans", []))))
    for name, split in splits.items():
        seeds = split.get("seeds") or []
        systems = list(seeds[0]["systems"]) if seeds else []
        rows = []
        for system in systems:
            reports = [s["systems"][system] for s in seeds]
            rows.append([system] + [_aggregate([_num(r.get(k)) for r in reports], fmt) for k, fmt in JSON_KEYS])
        title = (f"{name}: {split.get('n_unclassified', '?')} of {split.get('n_songs', '?')} songs unclassified "
                 f"by the CNN; {len(seeds)} GAN seed(s)")
        out.tables.append(AblationTable(title=title, header=list(HEADER), rows=rows))
    if results.get("verdict"):
        out.notes.append(str(results["verdict"]))
    return out


def _num(v: object) -> float:
    return math.nan if v is None else float(v)  # type: ignore[arg-type]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def from_markdown(text: str, source: str) -> Ablation:
    """Tables with a ``system`` column from markdown (the last ``## ...ablation...`` section when present)."""
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith("## ") and "ablation" in ln.lower()]
    heading = ""
    if starts:
        heading = lines[starts[-1]][3:].strip()
        end = next((i for i in range(starts[-1] + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines = lines[starts[-1] + 1:end]
    out = Ablation(source=source, heading=heading)
    title, i = "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("### "):
            title = line[4:].strip()
        elif line.lstrip("- ").lower().startswith("done criterion"):
            out.notes.append(line.lstrip("- ").strip())
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(_cells(lines[i]))
                i += 1
            body = [r for r in block[1:] if not all(set(c) <= set("-: ") for c in r)]
            if block[0] and block[0][0].lower() == "system":
                out.tables.append(AblationTable(title=title, header=block[0], rows=body))
            continue
        i += 1
    if not out.tables:
        raise AblationError(f"{source} holds no ablation table (a markdown table whose first column is 'system')")
    return out
