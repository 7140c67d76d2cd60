"""Faults with real processes: a decode worker and a CNN actor killed mid-run, the driver of a backfill killed
after its first commit (and the backfill resumed), transient S3 errors injected by a real HTTP proxy in front of
the moto server; credentials never leak.

Every run labels the same 8 rendered songs and must commit exactly the labels of an undisturbed run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bad_audio import song_samples, two_hour_wav
from s3_fault_proxy import FaultInjectingS3Proxy

from genre_core import storage
from genre_core.label_runs import history, orphan_files, runs
from genre_core.label_table import locate, open_table, read_labels
from jobs import label
from jobs.cli import run_job

REPO = Path(__file__).resolve().parents[2]
# small blocks, batches, files and commits: many tasks to kill in the middle of, and commits as the run goes
SMALL_PARTS = """resources:
  decode: {concurrency: 2, num_cpus: 0.5, songs_per_block: 2}
  cnn: {concurrency: 1, num_cpus: 0.5, num_gpus: 0, batch_size: 2, device: cpu}
  gan: {concurrency: 1, num_cpus: 0.5, num_gpus: 0, batch_size: 4, device: cpu}
  rows_per_file: 2
  torch_threads: 1
  retries: {actor_restarts: 3, actor_task: 3}
labels:
  commit_every: 2
"""


def latest_labels(out: str, catalog: str | None = None) -> pd.DataFrame:
    return read_labels(locate(out, catalog_uri=catalog))


def manifests(out: str, catalog: str | None = None):
    return runs(open_table(locate(out, catalog_uri=catalog)))
COMPARED = ["track_id", "status", "genre", "error", "n_slices", "duration_s", "model_version", "feature_version"]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "small-parts.yaml"
    path.write_text(SMALL_PARTS)
    return str(path)


@pytest.fixture(scope="module")
def catalog(rendered_songs, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("faults") / "catalog.parquet"
    rendered_songs[["track_id", "audio_uri"]].to_parquet(path)
    return str(path)


@pytest.fixture(scope="module")
def undisturbed(local_ray, catalog, config, tmp_path_factory) -> pd.DataFrame:
    """The labels of an undisturbed run of the job over the 8 songs."""
    out = str(tmp_path_factory.mktemp("undisturbed") / "labels")
    assert run_job(label, ["--catalog", catalog, "--output", out, "--config", config]) == 0
    return latest_labels(out)


def assert_same_labels(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """One row per track, no more, no less; the same decisions and votes (float votes to 1e-5)."""
    assert len(got) == len(expected) and got["track_id"].is_unique
    got, expected = (df.sort_values("track_id", ignore_index=True) for df in (got, expected))
    pd.testing.assert_frame_equal(got[COMPARED], expected[COMPARED])
    np.testing.assert_allclose(np.stack(got["probabilities"]), np.stack(expected["probabilities"]), atol=1e-5)


# --- Ray worker processes of this test process ------------------------------------------------------------

def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _title(pid: int) -> str:
    """A Ray worker's process title: ``ray::<task or actor>[.<method>]`` while it runs something."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class WorkerKiller(threading.Thread):
    """Kills with SIGKILL, once per target, the first Ray worker of this process seen *running* a task whose
    process title starts with the target; ``kills`` lists (target, pid, title)."""

    def __init__(self, targets: list[str]) -> None:
        super().__init__(daemon=True)
        self.targets = list(targets)
        self.kills: list[tuple[str, int, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        pids, rescan = [], 0.0
        while self.targets and not self.stop.is_set():
            if time.monotonic() > rescan:
                pids, rescan = _descendants(os.getpid()), time.monotonic() + 0.05
            for pid in pids:
                title = _title(pid)
                for target in self.targets:
                    if title.startswith(target):
                        os.kill(pid, signal.SIGKILL)
                        self.kills.append((target, pid, title))
                        self.targets.remove(target)
                        break
            time.sleep(0.002)


def test_killing_a_decode_actor_and_the_cnn_actor_mid_batch_changes_nothing(local_ray, catalog, config,
                                                                             undisturbed, tmp_path):
    out = str(tmp_path / "labels")
    decode_batch = "ray::MapWorker(MapBatches(DecodeStage)).submit"
    cnn_batch = "ray::MapWorker(MapBatches(CNNActor)).submit"
    killer = WorkerKiller([decode_batch, cnn_batch])
    killer.start()
    try:
        assert run_job(label, ["--catalog", catalog, "--output", out, "--config", config]) == 0
    finally:
        killer.stop.set()
        killer.join()
    assert sorted(k[0] for k in killer.kills) == sorted([decode_batch, cnn_batch]), killer.kills
    (run,) = manifests(out)
    assert run.n_rows == 8 and run.commit == 4  # committed 2 songs at a time
    assert_same_labels(latest_labels(out), undisturbed)


def test_killing_an_actor_that_decodes_and_votes_mid_batch_changes_nothing(local_ray, catalog, undisturbed,
                                                                           tmp_path):
    """The layout of configs/label-local.yaml (the CNN actors decode their own blocks); the labels also equal those
    of the undisturbed run with a decode pool of its own."""
    config = tmp_path / "decode-in-cnn-actors.yaml"
    config.write_text(SMALL_PARTS.replace("decode: {concurrency: 2, num_cpus: 0.5, songs_per_block: 2}",
                                          "decode: {in_cnn_actors: true, songs_per_block: 2}"))
    out = str(tmp_path / "labels")
    batch = "ray::MapWorker(MapBatches(DecodeAndVoteActor)).submit"
    killer = WorkerKiller([batch])
    killer.start()
    try:
        assert run_job(label, ["--catalog", catalog, "--output", out, "--config", str(config)]) == 0
    finally:
        killer.stop.set()
        killer.join()
    assert [k[0] for k in killer.kills] == [batch], killer.kills
    assert manifests(out)[0].n_rows == 8
    assert_same_labels(latest_labels(out), undisturbed)


# --- the driver and S3 faults: the job as its own process with its own local Ray ---------------------------

def _start_job(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``python -m jobs.label ARGV`` as a new session (its Ray processes share it), output to ``log``."""
    with open(log, "wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "jobs.label", "--num-cpus", "2", *argv], cwd=REPO, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _end_session(sid: int) -> None:
    """SIGKILL what is left of the job's session (its Ray head processes and workers) and wait for it to go."""
    def members() -> list[int]:
        pids = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[3]) == sid:  # field 6 of stat: the session id
                        pids.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
        return pids

    for pid in members():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while members() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture()
def ray_tmp():
    """A private Ray temp dir (short path: Ray's unix sockets live in it) for a job process, removed after."""
    path = tempfile.mkdtemp(prefix="gt", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _rows_of(paths: list[str], rows_per_file: int) -> int:
    """Rows in these data files; a file the kill cut short (no footer) counts as a full one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 0
    for p in paths:
        try:
            n += pq.read_metadata(p).num_rows
        except pa.ArrowInvalid:
            n += rows_per_file
    return n


def test_a_backfill_killed_after_its_first_commit_resumes_with_only_the_rest(local_ray, rendered_songs, config,
                                                                            undisturbed, tmp_path, ray_tmp):
    """The backfill's driver is SIGKILLed once its first commit is in the table. Readers see what it committed
    (and never anything else of it); run again, it continues: it labels only the tracks its commits lack, and the
    work of both runs together (rows committed, rows written but lost with the driver, rows of the rerun) stays
    within 1.1x the catalog."""
    n_copies = 12  # 96 tracks: the 8 songs under 12 track_ids each
    catalog = tmp_path / "catalog.parquet"
    songs = rendered_songs[["track_id", "audio_uri"]]
    big = pd.concat([songs.assign(track_id=songs["track_id"] + f"-{k}") for k in range(n_copies)], ignore_index=True)
    big.to_parquet(catalog)
    out = tmp_path / "labels"
    table = locate(str(out))
    proc = _start_job(["--catalog", str(catalog), "--output", str(out), "--config", config, "--mode", "backfill"],
                      {**os.environ, "RAY_TMPDIR": ray_tmp}, tmp_path / "driver.log")
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the job committed nothing in 300 s"
            if (out / "catalog.db").exists():
                try:
                    if open_table(table).current_snapshot() is not None:
                        break
                except Exception:  # the table is being created this very moment
                    pass
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # the driver, right after its first commit
        proc.wait(timeout=30)
    finally:
        _end_session(proc.pid)
    assert proc.returncode == -signal.SIGKILL
    (killed,) = manifests(str(out))
    seen = latest_labels(str(out))
    assert 2 <= killed.n_rows < len(big) and len(seen) == killed.n_rows and seen["track_id"].is_unique
    assert (seen["run_id"] == killed.run_id).all()  # only committed rows are visible
    lost = _rows_of(orphan_files(table, older_than_s=0), 2)  # written by its workers, never committed

    assert run_job(label, ["--catalog", str(catalog), "--output", str(out), "--config", config,
                           "--mode", "backfill"]) == 0
    first, rerun = manifests(str(out))
    assert rerun.resumes == killed.run_id and rerun.started_at == killed.started_at
    assert rerun.n_todo == rerun.n_rows == len(big) - killed.n_rows  # only the tracks the killed run had not committed
    work = killed.n_rows + lost + rerun.n_rows
    print(f"killed after {killed.n_rows} committed (+{lost} written, lost), rerun labelled {rerun.n_rows}: work "
          f"{work} for {len(big)} tracks = {work / len(big):.3f}x")
    # what the kill costs is what was in flight: rows written since the driver's last commit (2-8 seen here, with
    # blocks of 2 songs on 2 decode actors), whatever the catalog's size; nothing committed is ever redone
    assert killed.n_rows + rerun.n_rows == len(big) and lost <= 12
    assert work <= 1.1 * len(big)
    after = latest_labels(str(out))
    assert len(after) == len(big) and after["track_id"].is_unique and set(after["run_id"]) == {first.run_id,
                                                                                             rerun.run_id}
    assert [c.run.run_id for c in history(open_table(table))][-1] == rerun.run_id
    for k in range(n_copies):  # every copy labelled like the undisturbed run
        part = after[after["track_id"].str.endswith(f"-{k}")]
        assert_same_labels(part.assign(track_id=part["track_id"].str.rsplit("-", n=1).str[0].astype("str")),
                           undisturbed)


def test_transient_s3_errors_are_retried_and_credentials_never_leak(s3_endpoint, rendered_songs, config,
                                                                    undisturbed, tmp_path, ray_tmp):
    fs = storage.s3_filesystem()  # straight to moto, no faults: the test's own setup
    bucket = "faults-proxy"
    if fs.exists(bucket):
        fs.rm(bucket, recursive=True)
    fs.mkdir(bucket)
    rows = []
    for tid, uri in zip(rendered_songs["track_id"], rendered_songs["audio_uri"], strict=True):
        key = f"{bucket}/audio/{Path(uri).name}"
        fs.put_file(uri, key)
        rows.append((tid, f"s3://{key}"))
    long_wav = two_hour_wav(song_samples(rendered_songs["audio_uri"].iloc[0]))
    fs.pipe(f"{bucket}/audio/two-hours.wav", long_wav)
    rows.append(("long-two-hours", f"s3://{bucket}/audio/two-hours.wav"))
    with fs.open(f"{bucket}/catalog.parquet", "wb") as fh:
        pd.DataFrame(rows, columns=["track_id", "audio_uri"]).to_parquet(fh)

    key_id, secret = "AKIAGT" + secrets.token_hex(7).upper(), "gtSecret/" + secrets.token_urlsafe(30)
    table_catalog = f"sqlite:///{tmp_path}/labels.db"
    with FaultInjectingS3Proxy(s3_endpoint) as proxy:
        env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url, "AWS_ACCESS_KEY_ID": key_id,
               "AWS_SECRET_ACCESS_KEY": secret, "RAY_TMPDIR": ray_tmp}
        proc = _start_job(["--catalog", f"s3://{bucket}/catalog.parquet", "--output", f"s3://{bucket}/labels",
                           "--table-catalog", table_catalog, "--config", config,
                           "--audio-root", f"s3://{bucket}/audio"], env, tmp_path / "job.log")
        try:
            proc.wait(timeout=400)
        finally:
            _end_session(proc.pid)
    log = (tmp_path / "job.log").read_text()
    assert proc.returncode == 0, log[-3000:]

    # the proxy really failed the first GET of the catalog and of every audio object, and the first PUT of
    # every data file and metadata file of the labels table; the job retried them all
    injected = {f"{method} {path}" for method, path in proxy.injected}
    assert f"GET /{bucket}/catalog.parquet" in injected
    assert {f"GET /{bucket}/audio/{Path(u).name}" for u in rendered_songs["audio_uri"]} <= injected
    (run,) = manifests(f"s3://{bucket}/labels", table_catalog)
    ice = open_table(locate(f"s3://{bucket}/labels", catalog_uri=table_catalog))
    data_files = [t.file.file_path.removeprefix("s3://") for t in ice.scan().plan_files()]
    table_files = [f"PUT /{f}" for f in data_files] + [f"PUT /{ice.metadata_location.removeprefix('s3://')}"]
    assert set(table_files) <= injected, sorted(injected)
    assert len(data_files) >= 3 and run.commit >= 3  # 9 rows in files of at most 2 rows, committed 2 at a time

    labels = latest_labels(f"s3://{bucket}/labels", table_catalog)
    assert len(labels) == 9 and labels["track_id"].is_unique
    assert_same_labels(labels[labels["track_id"] != "long-two-hours"], undisturbed)
    long = labels.set_index("track_id").loc["long-two-hours"]
    assert long["status"] in ("classified", "unclassified") and long["duration_s"] == pytest.approx(600.0, abs=0.01)
    # streamed, not downloaded: 600 s of 4 kHz 8-bit audio is 2.4 MB of the 28.8 MB object, plus read-ahead
    assert proxy.served[f"/{bucket}/audio/two-hours.wav"] < len(long_wav) / 3

    # the credentials appear nowhere: not in the job's output, the table's files and catalog, or Ray's logs
    leaks = [name for name, text in [("stdout/stderr", log)] if key_id in text or secret in text]
    for key in fs.find(f"{bucket}/labels"):
        data = fs.cat_file(key)
        leaks += [key] if key_id.encode() in data or secret.encode() in data else []
    catalog_db = (tmp_path / "labels.db").read_bytes()
    leaks += ["labels.db"] if key_id.encode() in catalog_db or secret.encode() in catalog_db else []
    n_logs = 0
    for path in Path(ray_tmp).rglob("*"):
        if path.is_file() and not path.is_symlink():
            n_logs += 1
            data = path.read_bytes()
            leaks += [str(path)] if key_id.encode() in data or secret.encode() in data else []
    assert n_logs > 10 and list(Path(ray_tmp).glob("ray/session_*/logs/*"))  # Ray did write its logs there
    assert leaks == []
