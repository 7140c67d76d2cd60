"""A self-contained HTML page from plain pieces: escaped text, tables, PNG images embedded as base64.

No template engine, no JavaScript, no external CSS, fonts or images: the page opens offline from a single
file. Every value that goes into the page passes through :func:`esc`.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

STYLE = """
body { font-family: sans-serif; margin: 0 auto; max-width: 1100px; padding: 1em 2em; color: #212529; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #dee2e6; padding-bottom: 0.2em; margin-top: 1.6em; }
.sub { color: #495057; margin-top: 0; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #dee2e6; padding: 0.25em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f1f3f5; }
.headline { display: flex; flex-wrap: wrap; gap: 1em; }
.metric { border: 1px solid #dee2e6; border-radius: 6px; padding: 0.6em 1em; min-width: 9em; }
.metric b { display: block; font-size: 1.6em; }
.note { background: #fff9db; border-left: 4px solid #fab005; padding: 0.5em 0.8em; }
figure { margin: 0.8em 0; } figcaption { color: #495057; font-size: 0.9em; }
img { max-width: 100%; height: auto; }
code { background: #f1f3f5; padding: 0 0.2em; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: object, spec: str = ".3f") -> str:
    """A number for a table cell: ``n/a`` for None/NaN, integers as integers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def img(png: bytes, alt: str, caption: str = "") -> str:
    """A figure with the PNG embedded as a data URL."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">{cap}</figure>'


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A table; cells that are numbers are right-aligned (format them with :func:`fmt` first if needed)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for c in row:
            numeric = isinstance(c, (int, float)) or _looks_numeric(str(c))
            cells.append(f'<td class="n">{esc(c)}</td>' if numeric else f"<td>{esc(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv_table(rows: Sequence[tuple[str, object]]) -> str:
    """A two-column table of names and values, without a header."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def _looks_numeric(s: str) -> bool:
    try:
        float(s.split(" ")[0])
        return True
    except ValueError:
        return False


def para(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def metrics_row(items: Sequence[tuple[str, str]]) -> str:
    """Headline numbers as boxes: (label, value)."""
    boxes = "".join(f'<div class="metric"><b>{esc(v)}</b>{esc(k)}</div>' for k, v in items)
    return f'<div class="headline">{boxes}</div>'


@dataclass
class Section:
    anchor: str
    title: str
    body: str  # HTML, already escaped where needed


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole document."""
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>\n{s.body}\n</section>' for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head>\n<body>\n"
        f"<h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>\n<nav>{nav}</nav>\n{body}\n</body></html>\n"
    )
