"""genre-job explains itself: every subcommand's --help has an example; errors say what to do next."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from jobs import calibrate, evaluate, label, labels, make_catalog, train
from jobs.cli import SUBCOMMANDS, main, run_job

HELP_ARGV = [[], ["make-catalog"], ["train"], ["train", "cnn"], ["train", "gan"], ["evaluate"], ["label"],
             ["labels"], ["calibrate"]]
COMMAND_LINE = re.compile(r"^\s+(genre-job|python -m jobs\.\w+)( [a-z-]+)* --", re.MULTILINE)


def test_the_help_cases_cover_every_subcommand() -> None:
    assert {argv[0] for argv in HELP_ARGV if argv} == set(SUBCOMMANDS)


@pytest.mark.parametrize("argv", HELP_ARGV, ids=lambda a: " ".join(a) or "genre-job")
def test_help_exits_0_with_an_example(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Example" in out
    assert COMMAND_LINE.search(out), out  # an actual command line under the heading


@pytest.mark.parametrize("module", [make_catalog, train, evaluate, label, labels, calibrate],
                         ids=lambda m: m.__name__)
def test_python_m_help_has_the_same_examples(module, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run_job(module, ["--help"])
    assert exc.value.code == 0 and "Example" in capsys.readouterr().out


def test_errors_say_what_to_do_next(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_job(evaluate, []) == 2
    err = capsys.readouterr().err
    assert "give --labels and --truth" in err and "--catalog" in err

    pd.DataFrame({"track_id": ["a"], "genre": ["rock"]}).to_parquet(tmp_path / "truth.parquet")
    assert run_job(evaluate, ["--labels", str(tmp_path / "nothing"), "--truth", str(tmp_path / "truth.parquet")]) == 2
    assert f"label a catalog first with `genre-job label --catalog CATALOG --output {tmp_path / 'nothing'}`" in \
        capsys.readouterr().err

    assert run_job(labels, ["show", "--output", str(tmp_path / "labels")]) == 1
    assert "Label a catalog first: `genre-job label --catalog CATALOG" in capsys.readouterr().err

    assert run_job(label, ["--catalog", str(tmp_path / "none.parquet"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "catalog not found" in err and "genre-job make-catalog --per-genre 8 --out DIR" in err
