"""`device: auto` is resolved by each actor in its own process, from the GPUs Ray reserved for it, never on the
driver (which may be a CPU-only head node). A local Ray that declares one GPU (this machine has none, so a CUDA run
cannot happen): the driver, with no GPU reserved, would say cpu; a CNN actor given num_gpus=1 says cuda, and finding
no CUDA device there it refuses to run on the CPU; a CNN actor given num_gpus=0 runs on the CPU."""

from __future__ import annotations

import pytest
import ray
import torch

from jobs.label_pipeline import CNNActor, actor_device
from jobs.models import DEFAULT_MODELS


@pytest.fixture()
def ray_with_a_gpu():
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.mark.skipif(torch.cuda.is_available(), reason="shows the refusal that a machine without CUDA gives")
def test_the_cnn_actor_not_the_driver_resolves_device_auto(ray_with_a_gpu):
    assert actor_device("auto") == torch.device("cpu")       # the driver: no GPU reserved for it
    actor = ray.remote(CNNActor)
    args = (f"{DEFAULT_MODELS}/cnn", "auto", 1, 16, True)
    on_cpu = actor.options(num_cpus=0.5, num_gpus=0).remote(*args)
    assert ray.get(on_cpu.__ray_call__.remote(lambda self: str(self.device))) == "cpu"
    on_gpu = actor.options(num_cpus=0.5, num_gpus=1).remote(*args)
    with pytest.raises(ray.exceptions.RayActorError, match="GPU reserved for this process"):
        ray.get(on_gpu.__ray_ready__.remote())
