"""Catalog-level faults stop the labelling job before any work: exit code 2, a message naming the rows or the
file at fault, nothing written (not even an empty labels table). Faults the Parquet footers show (a file that is
not Parquet, a missing column, no catalog) stop it before Ray starts; faults in the rows (null, blank or duplicate
track_ids, null audio_uris) are found by the planning tasks on the cluster, which read the catalog."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import ray

from jobs import label
from jobs.cli import run_job

URIS = [f"/audio/{i}.flac" for i in range(4)]
ROW_FAULTS = {"null track_id", "empty track_id", "duplicate track_id", "null audio_uri"}


def _catalog(path: Path, **columns) -> str:
    pd.DataFrame(columns).to_parquet(path)
    return str(path)


def _faults(tmp: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (catalog path, fragments the error message must hold)."""
    folder = tmp / "folder"
    folder.mkdir()
    _catalog(folder / "part-0.parquet", track_id=["a", "b"], audio_uri=URIS[:2])
    (folder / "part-1.parquet").write_bytes(b"PAR1 this is not Parquet")
    (tmp / "junk.parquet").write_bytes(b"\x00" * 100)
    return {
        "null track_id": (_catalog(tmp / "null.parquet", track_id=["a", "b", None, "d"], audio_uri=URIS),
                          ["null or empty track_id in row(s) [2]"]),
        "empty track_id": (_catalog(tmp / "empty.parquet", track_id=["a", " ", "c", ""], audio_uri=URIS),
                           ["null or empty track_id in row(s) [1, 3]"]),
        "duplicate track_id": (_catalog(tmp / "dup.parquet", track_id=["a", "b", "c", "a"], audio_uri=URIS),
                               ["duplicate track_id(s): 'a' in rows [0, 3]"]),
        "missing column": (_catalog(tmp / "cols.parquet", track_id=["a", "b", "c", "d"], uri=URIS),
                           ["lacks required column(s) ['audio_uri']", "'uri'"]),
        "null audio_uri": (_catalog(tmp / "nouri.parquet", track_id=["a", "b", "c", "d"],
                                    audio_uri=[URIS[0], None, URIS[2], URIS[3]]),
                           ["null audio_uri in row(s) [1]", "['b']"]),
        "unreadable file": (str(tmp / "junk.parquet"), ["not readable Parquet", str(tmp / "junk.parquet")]),
        "unreadable file in a folder": (str(folder), ["not readable Parquet", str(folder / "part-1.parquet")]),
        "no catalog": (str(tmp / "nope.parquet"), ["catalog not found", str(tmp / "nope.parquet")]),
    }


@pytest.mark.parametrize("fault", ["null track_id", "empty track_id", "duplicate track_id", "missing column",
                                   "null audio_uri", "unreadable file", "unreadable file in a folder",
                                   "no catalog"])
def test_catalog_fault_stops_the_job_before_any_work(fault, tmp_path, capsys):
    catalog, fragments = _faults(tmp_path)[fault]
    out = tmp_path / "labels"
    assert run_job(label, ["--catalog", catalog, "--output", str(out), "--config", "configs/label-local.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: catalog ") and catalog in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not out.exists()  # nothing written
    if fault in ROW_FAULTS:
        assert ray.is_initialized()  # the planning tasks read the rows
        ray.shutdown()
    else:
        assert not ray.is_initialized()  # no work started
