"""Ray resources of the labelling and training jobs (infrastructure, not algorithm): pool sizes, CPUs/GPUs, batch
sizes, training workers.

Read from the ``resources:`` section of the job's YAML config (``--config`` of label, ``--resources`` of train);
unknown keys are rejected. On a machine without GPUs set ``num_gpus: 0`` and the same actors run on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genre_core.config import from_dict, read_yaml


@dataclass(frozen=True)
class DecodeResources:
    concurrency: int = 2          # decode actors (CPU only)
    num_cpus: float = 0.5
    songs_per_block: int = 16     # songs per decode call (one block); fewer on a small catalog
    # Decode in the CNN actors instead of a pool of its own (concurrency and num_cpus then unused, and each CNN
    # call takes one block, not cnn.batch_size songs): on a machine
    # without a GPU the spectrograms then never travel between processes (benchmarks/RESULTS.md,
    # "Issue 7, third pass"); with GPUs keep it off, so that many CPU workers feed few GPU actors.
    in_cnn_actors: bool = False

    def block_size(self, n_songs: int, decoders: int) -> int:
        """Songs per block for a catalog of ``n_songs``: ``songs_per_block``, or fewer when the catalog is small,
        so that each of the ``decoders`` actors gets at least two blocks and none idles while another decodes
        everything."""
        return max(1, min(self.songs_per_block, -(-n_songs // (2 * decoders))))


@dataclass(frozen=True)
class PoolResources:
    concurrency: int = 1          # actors in the pool
    num_cpus: float = 0.5         # fractional: on small machines the pools share the cores
    num_gpus: float = 0.0
    batch_size: int = 16          # songs per actor call
    forward_slices: int = 16      # slices per CNN pass, translations per GAN pass (CPU: small is fastest, RESULTS.md)
    device: str = "auto"          # auto | cpu | cuda


@dataclass(frozen=True)
class RetryResources:
    """What survives a dead process: finite, so that a file that kills its decoder every time fails the job
    after a few tries instead of retrying forever (Ray Data's own defaults are unlimited)."""

    actor_restarts: int = 3       # restarts of each decode, CNN or GAN actor that died
    actor_task: int = 3           # reruns of a batch that was in flight on an actor that died


@dataclass(frozen=True)
class ResourcesConfig:
    decode: DecodeResources = field(default_factory=DecodeResources)
    cnn: PoolResources = field(default_factory=PoolResources)
    gan: PoolResources = field(default_factory=lambda: PoolResources(batch_size=4))
    rows_per_file: int = 10_000   # label rows per data file of the labels table (one writer call each)
    torch_threads: int = 1        # per actor
    retries: RetryResources = field(default_factory=RetryResources)

    @property
    def decoders(self) -> int:
        """How many actors decode: the CNN actors when ``decode.in_cnn_actors``, else the decode pool."""
        return self.cnn.concurrency if self.decode.in_cnn_actors else self.decode.concurrency


def load_resources(path: str | None) -> ResourcesConfig:
    """The ``resources`` section of a YAML config (defaults when ``path`` is None or the section is absent)."""
    if path is None:
        return ResourcesConfig()
    return from_dict(ResourcesConfig, read_yaml(path).get("resources"), "resources")


@dataclass(frozen=True)
class TrainDecodeResources:
    concurrency: int = 1          # actors that decode and slice the training songs (CPU only)
    num_cpus: float = 0.5
    songs_per_block: int = 4      # songs per decode call (one Ray Data block)


@dataclass(frozen=True)
class TrainResources:
    """Ray resources of `genre-job train` (section ``resources:`` of ``--resources FILE``): the Ray Train workers
    and the Ray Data pool that decodes the songs they train on."""

    workers: int = 2              # DDP training workers (gloo on CPUs, NCCL on GPUs)
    num_cpus: float = 0.5         # per worker
    num_gpus: float = 0           # per worker; > 0: the workers train on GPUs
    torch_threads: int = 1        # per worker
    shuffle_buffer: int = 2048    # slices in each worker's local shuffle buffer (mixes slices of many songs)
    gan_shuffle_buffer: int = 256  # train gan: pairs in each worker's local shuffle buffer (musicnn's: 420 KB a pair)
    max_failures: int = 3         # restarts of the worker group from the last checkpoint after a worker died
    # train cnn, musicnn head: the most train and val songs whose outputs (~70 KB a song) the driver holds; with
    # more, l2 and tau/m are chosen on a stratified sample of that many and the final fit streams every train song
    head_songs_in_memory: int = 20000
    decode: TrainDecodeResources = field(default_factory=TrainDecodeResources)


def load_train_resources(path: str | None) -> TrainResources:
    """The ``resources`` section of a training resources file (defaults when ``path`` is None)."""
    if path is None:
        return TrainResources()
    return from_dict(TrainResources, read_yaml(path).get("resources"), "resources")
