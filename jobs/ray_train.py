"""What `genre-job train cnn` and `genre-job train gan` share on Ray Train: the TorchTrainer run (its workers sized
by ``resources:``, restarts after a worker died, checkpoints under ``--checkpoints``), each worker's set-up, the
checkpoint it writes and resumes from, and the memory figures the workers report.

A training loop (``genre_core.training``: ``CNNTrainLoop``, ``GANTrainLoop``) has ``state_dict()`` /
``load_state_dict()`` of tensors, numbers and strings only; rank 0 saves it with ``torch.save`` and every load
uses ``weights_only=True`` (no pickle of code).
"""

from __future__ import annotations

import hashlib
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jobs.resources import TrainResources

STATE_FILE = "state.pt"


@dataclass
class Fitted:
    """What the driver gets back from the workers: the last checkpoint's loop state."""

    state: dict[str, Any]
    checkpoint_path: str


def run_name(kind: str, *parts: str) -> str:
    """A run name that a rerun of the same training finds again (and resumes from its last checkpoint)."""
    return f"train-{kind}-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def arrow_path(url: str) -> tuple[str, dict[str, Any]]:
    """(path, keyword arguments) for Ray's readers, writers and run storage, which take a pyarrow filesystem: a
    local folder (made absolute: workers do not run in this directory), or s3:// through the project's S3 settings
    (genre_core/storage.py: endpoint, retries)."""
    if not url.startswith("s3://"):
        return os.path.abspath(url), {}
    import pyarrow.fs

    from genre_core.storage import s3_filesystem

    return url[len("s3://"):], {"filesystem": pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(s3_filesystem()))}


PROGRESS_EVERY_S = 30.0


class _WrittenRows:
    """While a dataset is written to ``url``, print every ``every`` seconds how many rows its finished Parquet files
    hold: Ray Data's own progress bars are off in non-interactive logs, and a pairs or features phase runs for many
    minutes. A file still being written has no footer yet and is counted once it is finished."""

    def __init__(self, url: str, what: str, every: float = PROGRESS_EVERY_S) -> None:
        from genre_core import storage

        self.fs, self.path = storage.filesystem(url)
        self.what, self.every, self.t0 = what, every, time.perf_counter()
        self.rows: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="written-rows", daemon=True)
        self._thread.start()

    def count(self) -> int:
        import pyarrow.parquet as pq

        self.fs.invalidate_cache(self.path)  # the files are written by other processes
        found = self.fs.glob(self.path + "/*.parquet") if self.fs.exists(self.path) else []
        for f in found:
            if f not in self.rows:
                try:
                    with self.fs.open(f, "rb") as fh:
                        self.rows[f] = pq.read_metadata(fh).num_rows
                except (OSError, ValueError):  # not finished yet (pyarrow: ArrowInvalid, a ValueError)
                    pass
        return sum(self.rows.values())

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                rows = self.count()
            except OSError:  # a listing that failed (S3): the write goes on, the next round tries again
                continue
            print(f"{self.what}: {rows} rows written ({time.perf_counter() - self.t0:.0f} s)", flush=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def write_parquet(ds: Any, url: str, what: str) -> None:
    """Write ``ds`` as Parquet files under ``url`` (local or s3://), printing the rows written so far every
    PROGRESS_EVERY_S seconds, as ``what``.

    The write tasks reserve no CPU: the actor pools feeding them hold their CPU shares for the whole run, and a write
    task asking for Ray's default of one CPU found none left on a 2-CPU machine (decode 0.5 + two CNN actors 0.5
    each), so blocks piled up in the object store until backpressure stopped every stage (`train gan` on 2,100 songs,
    Ray 2.60). Two at a time: writing is I/O, and each holds a block in memory."""
    path, kw = arrow_path(url)
    watcher = _WrittenRows(url, what)
    try:
        ds.write_parquet(path, ray_remote_args={"num_cpus": 0}, concurrency=2, **kw)
    finally:
        watcher.stop()


def storage_args(path: str) -> dict[str, Any]:
    """RunConfig's storage arguments for ``path`` (:func:`arrow_path`)."""
    root, kw = arrow_path(path)
    return {"storage_path": root, **({"storage_filesystem": kw["filesystem"]} if kw else {})}


def fit(worker_loop: Callable[[dict[str, Any]], None], loop_config: dict[str, Any], res: TrainResources,
        datasets: dict[str, Any], *, name: str, checkpoints: str, dataset_config: Any = None) -> Fitted:
    """Run ``worker_loop`` on ``res.workers`` Ray Train workers (DDP: gloo on CPUs, NCCL on GPUs) until it
    returns; the loop state of its last checkpoint."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    use_gpu = res.num_gpus > 0
    trainer = TorchTrainer(
        worker_loop, train_loop_config={**loop_config, "resources": res},
        scaling_config=ScalingConfig(num_workers=res.workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": res.num_cpus, **({"GPU": res.num_gpus}
                                                                                    if use_gpu else {})}),
        run_config=RunConfig(name=name, failure_config=FailureConfig(max_failures=res.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             logging_config=LoggingConfig(log_level="WARNING"), **storage_args(checkpoints)),
        datasets=datasets, **({"dataset_config": dataset_config} if dataset_config is not None else {}),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError("training ended without a checkpoint")
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)
    return Fitted(state=state, checkpoint_path=result.checkpoint.path)


# ---- in a worker ---------------------------------------------------------------------------------------------

@dataclass
class Worker:
    """This Ray Train worker: its rank, its device (resolved here, in its own process) and a log that only rank 0
    prints."""

    rank: int
    world_size: int
    device: torch.device

    def log(self, msg: str) -> None:
        if self.rank == 0:
            print(msg, flush=True)


def worker(res: TrainResources) -> Worker:
    """Set up this worker (``res.torch_threads`` torch threads) and describe it."""
    import ray.train
    import ray.train.torch

    torch.set_num_threads(res.torch_threads)
    ctx = ray.train.get_context()
    return Worker(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device())


def resume(loop: Any, device: torch.device) -> bool:
    """Load the last checkpoint's state into ``loop`` where Ray Train hands one (a restart or a rerun)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as d:
        loop.load_state_dict(torch.load(Path(d) / STATE_FILE, map_location=device, weights_only=True))
    return True


def report(state: dict[str, Any], metrics: dict[str, Any], rank: int) -> None:
    """Report ``metrics`` with a checkpoint of ``state`` (written by rank 0 only)."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        saved = None
        if rank == 0:
            torch.save(state, Path(tmp) / STATE_FILE)
            saved = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=saved)


def peak_rss_mb() -> float:
    """Peak resident memory of this process: its own pages and the pages of the node's shared object store that it
    has read blocks from (zero-copy), which the object store's size bounds, not the worker."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def private_mb() -> float:
    """This process's own resident memory now (RssAnon: heap, tensors, buffers; no shared or file pages)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class PeakPrivate:
    """The largest :func:`private_mb` seen, sampled every ``every`` batches of an iterator it passes through."""

    def __init__(self, every: int = 8) -> None:
        self.every, self.peak = every, private_mb()

    def watch(self, items: Iterator[Any]) -> Iterator[Any]:
        for i, item in enumerate(items):
            if i % self.every == 0:
                self.peak = max(self.peak, private_mb())
            yield item
        self.peak = max(self.peak, private_mb())


def max_over_workers(value: float, device: torch.device) -> float:
    if not torch.distributed.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return float(t.item())
