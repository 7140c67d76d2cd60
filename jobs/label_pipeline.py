"""Ray wiring of the labelling job: where each genre_core stage runs and with which resources.

    catalog rows --(blocks of songs)--> decode actor pool (DecodeStage, CPU)
      --> CNN actor pool (CNNVoter; classified songs drop their spectrograms)
          [decode.in_cnn_actors: the CNN actors decode their blocks themselves (DecodeAndVoteActor)]
      --> GAN actor pool (GANStage; only unclassified songs carry spectrograms, others pass untouched)
      --> writer actor (LabelFileWriter): label rows -> data files of the labels table, ``rows_per_file`` a file
      --> driver: the files' metadata -> one Iceberg commit per ``commit_every`` songs (RunCommitter)

One linear Ray Data pipeline (no filter + union, which would re-run the upstream stages). Every stage is an
actor pool: a worker process imports its libraries and loads its model or mel filters once, whereas stateless
decode tasks ran in workers that Ray retired whenever they idled under back-pressure, paying that start-up again
(see benchmarks/RESULTS.md, "Profile hotspot of the labelling job"). Fault tolerance is set explicitly from
``resources.retries``: a dead actor is restarted and the batch it held is rerun. Every stage is deterministic,
so a rerun yields the same rows; a rerun batch rewrites its own data file (deterministic names), and the driver
commits each track exactly once (genre_core/label_commit.py).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from genre_core.config import AudioConfig
from genre_core.decoding import DecodeStage, as_column
from genre_core.label_commit import RunCommitter
from genre_core.label_writer import PART_COLUMN, LabelFileWriter, read_part
from genre_core.labelling import CNNVoter
from genre_core.stages import GANStage, no_gan_columns
from jobs.label_plan import Plan, todo_blocks
from jobs.models import ModelSet
from jobs.resources import ResourcesConfig, RetryResources

if TYPE_CHECKING:
    import torch

PROGRESS_EVERY_S = 10.0


def init_ray(address: str | None = None, num_cpus: int | None = None, include_dashboard: bool = False) -> None:
    """Connect to a cluster (``address`` or RAY_ADDRESS, as `ray job submit` sets) or start a new local Ray (with
    the dashboard, whose state API Ray Train's controller watches, when ``include_dashboard``).

    Never anything in between: a plain ``ray.init()`` would join whatever cluster /tmp/ray last recorded on this
    machine, and wait forever when that cluster is gone."""
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address)
        else:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=include_dashboard)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = sys.stderr.isatty()  # bars flood non-interactive logs; we print lines instead


def actor_device(device: str) -> torch.device:
    """``device`` (``auto``, ``cpu``, ``cuda``) resolved in the calling actor's own process, where Ray has set the
    GPUs reserved for it (``num_gpus``): the driver may run on a CPU-only head node."""
    from genre_core.models.cnn import resolve_device

    return resolve_device(device, gpu_reserved=bool(ray.get_gpu_ids()))


# Columns that hold a string or None. Ray Data hands a column that is None in every row of a block (a block of
# error rows has no genre, one of valid songs no error) to the next stage as float NaN: passed on as such, it
# would meet the same column as strings in another block and fail the whole run. (Votes never are None: a song
# without votes carries a NaN row, so that the column has one shape in every block.)
_NULLABLE_OBJECT_COLUMNS = ("genre", "error", "reason")


def restore_nulls(batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` with each all-null column that Ray Data turned into float NaN given back as None values."""
    for col in _NULLABLE_OBJECT_COLUMNS:
        values = batch.get(col)
        if values is not None and values.dtype.kind == "f" and np.isnan(values).all():
            batch[col] = as_column([None] * len(values))
    return batch


class CNNActor(CNNVoter):
    """Pool 1: batched CNN + voting. Classified and error rows leave their spectrograms here; without a GAN stage
    after it (``last_stage``) every row does, and the row is final (``cnn_status`` = ``status``)."""

    def __init__(self, bundle_url: str, device: str, torch_threads: int, forward_slices: int,
                 last_stage: bool) -> None:
        import torch

        torch.set_num_threads(torch_threads)
        super().__init__(bundle_url, device=actor_device(device), batch_slices=forward_slices,
                         drop_classified_slices=True)
        self.last_stage = last_stage

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = super().__call__(restore_nulls(batch))
        if self.last_stage:
            del out["slices"]
            out["cnn_status"] = out["status"]
            out.update(no_gan_columns(len(out["status"]), len(self.classes)))
        return out


class DecodeAndVoteActor:
    """Decoding and pool 1 in one actor (``decode.in_cnn_actors``, for machines without a GPU): a block's
    spectrograms are voted on by the process that computed them instead of travelling to another one."""

    def __init__(self, decode_kwargs: dict[str, Any], cnn_kwargs: dict[str, Any]) -> None:
        self.decode = DecodeStage(**decode_kwargs)
        self.vote = CNNActor(**cnn_kwargs)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self.vote(self.decode(batch))


class GANActor(GANStage):
    """Pool 2: GAN refinement of the unclassified songs in each batch."""

    def __init__(self, gan_url: str, cnn_url: str, device: str, torch_threads: int, forward_slices: int) -> None:
        import torch

        torch.set_num_threads(torch_threads)
        super().__init__(gan_url, cnn_url, device=actor_device(device), batch_slices=forward_slices)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = restore_nulls(batch)
        # Ray Data hands a batch's arrays read-only; torch warns when it wraps one (and must never write to it), so
        # the slices this stage translates (pool 1 kept them for the ambiguous songs only) are copied first.
        batch["slices"] = as_column([None if s is None else np.array(s, np.float32) for s in batch["slices"]])
        return super().__call__(batch)


def _actor_pool(size: int, num_cpus: float, num_gpus: float, retries: RetryResources) -> dict[str, Any]:
    """The ``map_batches`` arguments of a fixed-size pool of actors that each take numpy batches, with restarts.

    Ray 2.60 takes max_restarts / max_task_retries only as ``**ray_remote_args``, which it warns are deprecated
    (removed in Ray 2.64) with no named parameter to replace them. They stay: without them Ray Data restarts an actor
    and retries its task forever, so a song that kills its actor would stall the run. Revisit on a Ray upgrade."""
    return {"compute": ray.data.ActorPoolStrategy(size=size), "batch_format": "numpy", "num_cpus": num_cpus,
            "num_gpus": num_gpus, "max_restarts": retries.actor_restarts, "max_task_retries": retries.actor_task}


def ray_map(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """``map(fn, items)`` as Ray tasks (the commit's file rewrites); in this process for one item or none. The tasks
    reserve no CPU: they run beside the pools, which may hold every CPU while a run commits."""
    if len(items) <= 1:
        return [fn(i) for i in items]
    task = ray.remote(num_cpus=0)(fn)
    return ray.get([task.remote(i) for i in items])


class WriterActor(LabelFileWriter):
    """The writer actor: label rows -> data files of the labels table, ``rows_per_file`` rows a call."""

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return super().__call__(restore_nulls(batch))


def build_dataset(plan: Plan, models: ModelSet, res: ResourcesConfig, audio_root: str | None,
                  writer: dict[str, Any]):
    """The pipeline over the plan's todo (catalog rows in blocks of ``decode.songs_per_block``), ending in the
    writer actor."""
    ds = ray.data.from_arrow_refs(todo_blocks(plan, res.decode.block_size(plan.n_todo, res.decoders)))
    decode_kwargs = {"feature_cfg": models.feature_config,
                     "audio_cfg": AudioConfig(sample_rate=models.feature_config.sample_rate), "root": audio_root}
    cnn_kwargs = {"bundle_url": models.cnn_url, "device": res.cnn.device, "torch_threads": res.torch_threads,
                  "forward_slices": res.cnn.forward_slices, "last_stage": not models.gan_url}
    cnn_pool = _actor_pool(res.cnn.concurrency, res.cnn.num_cpus, res.cnn.num_gpus, res.retries)
    if res.decode.in_cnn_actors:  # one block per call, decoded and voted on in the same process
        ds = ds.map_batches(DecodeAndVoteActor, batch_size=None, **cnn_pool,
                            fn_constructor_kwargs={"decode_kwargs": decode_kwargs, "cnn_kwargs": cnn_kwargs})
    else:
        # DecodeStage comes from a torch-free module: decode workers never import torch
        ds = ds.map_batches(DecodeStage, fn_constructor_kwargs=decode_kwargs, batch_size=None,
                            **_actor_pool(res.decode.concurrency, res.decode.num_cpus, 0, res.retries))
        ds = ds.map_batches(CNNActor, fn_constructor_kwargs=cnn_kwargs, batch_size=res.cnn.batch_size, **cnn_pool)
    if models.gan_url:
        ds = ds.map_batches(
            GANActor, fn_constructor_kwargs={"gan_url": models.gan_url, "cnn_url": models.cnn_url,
                                             "device": res.gan.device, "torch_threads": res.torch_threads,
                                             "forward_slices": res.gan.forward_slices},
            batch_size=res.gan.batch_size,
            **_actor_pool(res.gan.concurrency, res.gan.num_cpus, res.gan.num_gpus, res.retries),
        )
    # one long-lived writer reserving no CPU (the pools may hold them all; a task per file would wait for a fresh
    # worker process each time); restarted like any actor, a rerun batch rewrites its own file
    return ds.map_batches(WriterActor, fn_constructor_kwargs=writer, batch_size=res.rows_per_file,
                          **_actor_pool(1, 0, 0, res.retries))


def label_tracks(plan: Plan, models: ModelSet, res: ResourcesConfig, committer: RunCommitter, run_id: str,
                 audio_root: str | None = None, curated_column: str | None = None) -> dict[str, Any]:
    """Run the pipeline over the plan's todo; the workers write the label rows, ``committer`` commits them as they come
    (every ``commit_every`` songs, and what is left at the end). Returns run statistics."""
    started = time.perf_counter()
    metadata, io = committer.target
    writer = {"metadata": metadata, "io": io, "classes": models.classes, "curated_column": curated_column,
              "versions": {"model_version": models.cnn_version, "gan_version": models.gan_version,
                           "feature_version": models.feature_version, "run_id": run_id}}
    ds = build_dataset(plan, models, res, audio_root, writer)
    n_todo = plan.n_todo
    done, last_print = 0, time.perf_counter()
    stats: dict[str, Any] = {"cnn_unclassified": 0, "gan_songs": 0, "gan_slices": 0}
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):  # each written file as soon as it is
        if not done:  # start-up of the pools (processes, imports, models) and the first file's trip
            stats["first_labels_s"], stats["first_labels_rows"] = time.perf_counter() - started, int(batch["n"].sum())
        for key in ("cnn_unclassified", "gan_songs", "gan_slices"):
            stats[key] += int(batch[key].sum())
        for value in batch[PART_COLUMN]:
            part = read_part(value)
            done += len(part.track_ids)
            stats["pipeline_s"] = time.perf_counter() - started
            if committer.add(part, stats) is not None:
                print(f"committed {committer.manifest.n_rows}/{n_todo} tracks (commit {committer.manifest.commit})",
                      flush=True)
        now = time.perf_counter()
        if now - last_print >= PROGRESS_EVERY_S or done == n_todo:
            rate = done / (now - started)
            eta = (n_todo - done) / rate if rate > 0 else float("nan")
            print(f"labelled {done}/{n_todo} tracks ({rate:.1f} songs/s, eta {eta:.0f} s)", flush=True)
            last_print = now
    stats["pipeline_s"] = time.perf_counter() - started
    committer.commit(stats)
    return stats
