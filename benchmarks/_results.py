"""Append a dated, machine-stamped entry to benchmarks/RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def machine() -> str:
    """CPU model, core count and architecture of this machine."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.machine()}"


def record(title: str, lines: list[str], argv: list[str] | None = None) -> None:
    """Append ``## title (date)`` with the command, the machine and ``lines`` to RESULTS.md."""
    command = "python " + " ".join([os.path.relpath(sys.argv[0])] + (argv if argv is not None else sys.argv[1:]))
    with open(RESULTS, "a", encoding="utf-8") as fh:
        fh.write(f"\n## {title} ({datetime.date.today()})\n\n- command: `{command}`\n- machine: {machine()}\n")
        fh.write("\n".join(lines) + "\n")
