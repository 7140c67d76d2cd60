"""genre_core.report.ablation: the GAN ablation tables from the JSON or the markdown of gan_ablation.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genre_core.report.ablation import HEADER, AblationError, from_results, load_ablation

RESULTS_MD = Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md"
# the systems issue 4 asks for: (a) forced argmax, (b) TTA, (c) the GAN stage, (d) the two controls
SYSTEMS = {"forced_argmax", "tta", "gan", "identity_ctrl", "random_ctrl"}


def test_markdown_of_the_recorded_results() -> None:
    ab = load_ablation(str(RESULTS_MD))
    assert "ablation" in ab.heading.lower()  # the last ablation section of RESULTS.md
    assert len(ab.tables) >= 1  # one per evaluated split
    for t in ab.tables:
        assert t.header[0] == "system" and SYSTEMS <= {r[0] for r in t.rows}
        assert all(len(r) == len(t.header) for r in t.rows)
    assert any(n.startswith("done criterion") for n in ab.notes)


def _system(acc: float) -> dict:
    return {"accuracy": acc, "coverage": 1.0, "accuracy_on_decided": acc, "n_right": 1, "wrong_to_right": 2,
            "right_to_wrong": 1, "mcnemar_p": None}


def test_json_is_summarised_over_seeds(tmp_path: Path) -> None:
    results = {"cnn": "cnn-1", "gans": ["gan-s0", "gan-s1"], "verdict": "done criterion: not met",
               "splits": {"shifted": {"n_songs": 10, "n_unclassified": 4, "seeds": [
                   {"systems": {"forced_argmax": _system(0.5), "gan": _system(0.4)}},
                   {"systems": {"forced_argmax": _system(0.5), "gan": _system(0.6)}}]}}}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(results))
    ab = load_ablation(str(path))
    assert ab.heading == "CNN cnn-1, GAN bundles gan-s0, gan-s1" and ab.notes == ["done criterion: not met"]
    (table,) = ab.tables
    assert table.title.startswith("shifted: 4 of 10 songs unclassified by the CNN; 2 GAN seed(s)")
    assert table.header == HEADER
    assert table.rows == [["forced_argmax", "0.500", "1.00", "0.500", "2.0", "1.0", "n/a"],
                          ["gan", "0.500 [0.400..0.600]", "1.00", "0.500 [0.400..0.600]", "2.0", "1.0", "n/a"]]


def test_files_without_ablation_tables_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"rows": []}')
    (tmp_path / "x.md").write_text("# notes\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    with pytest.raises(AblationError, match="not a JSON written by benchmarks/gan_ablation.py"):
        load_ablation(str(tmp_path / "x.json"))
    with pytest.raises(AblationError, match="holds no ablation table"):
        load_ablation(str(tmp_path / "x.md"))
    with pytest.raises(AblationError):
        from_results([], "list")  # type: ignore[arg-type]
