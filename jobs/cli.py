"""``genre-job <subcommand>``: one console script in front of the jobs.

Each subcommand is a module in ``jobs/`` exposing ``build_parser(parser)`` and ``run(args) -> int``;
``python -m jobs.<module>`` runs the same code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module in jobs/
SUBCOMMANDS: dict[str, str] = {
    "make-catalog": "jobs.make_catalog",
    "train": "jobs.train",
    "evaluate": "jobs.evaluate",
    "label": "jobs.label",
    "labels": "jobs.labels",
    "calibrate": "jobs.calibrate",
}

EPILOG = """Examples:
  genre-job make-catalog --per-genre 8 --out data/demo
  genre-job label --catalog data/demo/catalog.parquet --output data/demo/labels
  genre-job labels show --output data/demo/labels --track rock-00001
  genre-job evaluate --labels data/demo/labels --truth data/demo/catalog.parquet --out data/demo/report

`genre-job SUBCOMMAND --help` says what each one does, with examples."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="genre-job",
        description="genre-tagger: label a music catalog with genres (slice-and-vote CNN + GAN refinement).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip()
        sp = sub.add_parser(
            name, help=doc.splitlines()[0] if doc else name, description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.build_parser(sp)
        sp.set_defaults(_run=module.run)
    args = parser.parse_args(argv)
    return int(args._run(args) or 0)


def run_module(module_doc: str | None, build_parser, run, argv: list[str] | None = None) -> int:
    """Shared ``if __name__ == '__main__'`` body for ``python -m jobs.<name>``."""
    parser = argparse.ArgumentParser(
        description=(module_doc or "").strip(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    build_parser(parser)
    return int(run(parser.parse_args(argv)) or 0)


def run_job(module, argv: list[str]) -> int:
    """Run a job module (``jobs.<name>``) with command-line arguments ``argv``, as its ``__main__`` would."""
    return run_module(module.__doc__, module.build_parser, module.run, argv)


if __name__ == "__main__":
    sys.exit(main())
