"""Ray resources come from the job config; unknown keys are rejected with the allowed ones named."""

from __future__ import annotations

import dataclasses

import pytest

from genre_core.config import ConfigError
from jobs.resources import (
    DecodeResources,
    PoolResources,
    ResourcesConfig,
    RetryResources,
    TrainResources,
    load_resources,
    load_train_resources,
)


def test_shipped_configs_load():
    local = load_resources("configs/label-local.yaml")
    assert local.cnn == PoolResources(concurrency=2, num_cpus=0.75, num_gpus=0, forward_slices=16, device="cpu")
    assert local.decode.in_cnn_actors and local.decoders == 2
    # the pools fit the 2 CPUs of the machine they are for, GAN pool included (no decode pool of its own)
    assert local.cnn.concurrency * local.cnn.num_cpus + local.gan.concurrency * local.gan.num_cpus <= 2
    cluster = load_resources("configs/label-cluster.yaml")
    assert cluster.cnn.num_gpus == 0.5 and cluster.gan.device == "auto"  # resolved in each actor
    assert not cluster.decode.in_cnn_actors and cluster.decoders == 32  # CPU workers feed the GPU actors
    assert load_resources(None) == ResourcesConfig()
    assert local.retries == cluster.retries == RetryResources(actor_restarts=3, actor_task=3)


def test_shipped_training_resources_load():
    local = load_train_resources("configs/train-local.yaml")
    assert local.workers == 2 and local.num_gpus == 0
    # the training workers and the decode pool fit the 2 CPUs of the machine they are for
    assert local.workers * local.num_cpus + local.decode.concurrency * local.decode.num_cpus <= 2
    cluster = load_train_resources("configs/train-cluster.yaml")
    assert cluster.num_gpus == 1 and cluster.workers == 4   # one DDP worker per GPU of the 4 g5 workers
    assert load_train_resources(None) == TrainResources()


def test_retries_are_configurable(tmp_path):
    cfg = tmp_path / "r.yaml"
    cfg.write_text("resources:\n  retries: {actor_restarts: 5}\n")
    assert load_resources(str(cfg)).retries == RetryResources(actor_restarts=5, actor_task=3)


def test_unknown_keys_are_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("resources:\n  cnn: {concurency: 2}\n")
    with pytest.raises(ConfigError, match="concurency.*allowed"):
        load_resources(str(bad))
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_resources(str(bad))


def test_small_catalogs_get_smaller_blocks_so_every_decoding_actor_has_work():
    decode = DecodeResources(songs_per_block=16)
    assert decode.block_size(3000, decoders=2) == 16
    assert decode.block_size(40, decoders=2) == 10    # 4 blocks: two per actor
    assert decode.block_size(3, decoders=2) == 1
    assert decode.block_size(0, decoders=2) == 1
    assert DecodeResources(songs_per_block=8).block_size(100, decoders=32) == 2


def test_the_decoding_actors_are_the_cnn_actors_when_they_decode():
    separate = ResourcesConfig(decode=DecodeResources(concurrency=4), cnn=PoolResources(concurrency=3))
    assert separate.decoders == 4
    assert dataclasses.replace(separate, decode=DecodeResources(concurrency=4, in_cnn_actors=True)).decoders == 3
