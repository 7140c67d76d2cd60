"""The progress lines of a long Parquet write (jobs.ray_train._WrittenRows): rows of finished files only."""

import re
import time

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.ray_train import _WrittenRows


def test_counts_the_rows_of_finished_files_and_prints_them_while_the_write_runs(tmp_path, capsys):
    out = tmp_path / "pairs"
    watcher = _WrittenRows(str(out), "training pairs", every=0.05)
    try:
        assert watcher.count() == 0  # the folder does not exist yet
        out.mkdir()
        pq.write_table(pa.table({"track_id": ["a"] * 7}), out / "0.parquet")
        pq.write_table(pa.table({"track_id": ["b"] * 5}), out / "1.parquet")
        (out / "2.parquet").write_bytes(b"PAR1 a file still being written")  # no footer yet
        assert watcher.count() == 12
        deadline = time.time() + 10
        while "12 rows written" not in capsys.readouterr().out:
            assert time.time() < deadline, "no progress line with the finished files' rows"
            time.sleep(0.05)
        pq.write_table(pa.table({"track_id": ["c"] * 3}), out / "2.parquet")  # now finished
        assert watcher.count() == 15
    finally:
        watcher.stop()
    assert not watcher._thread.is_alive()
    lines = capsys.readouterr().out.strip().splitlines()
    assert all(re.fullmatch(r"training pairs: \d+ rows written \(\d+ s\)", x) for x in lines)
