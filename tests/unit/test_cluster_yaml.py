"""cluster.yaml is a valid Ray cluster launcher config (against the schema that ships with Ray), and its images run
the Python and the Ray that requirements.lock and pyproject.toml need."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import jsonschema
import ray.autoscaler
import tomllib
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


def _load():
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def _images(cfg: dict) -> list[str]:
    docker = [cfg["docker"], *(t["docker"] for t in cfg["available_node_types"].values() if "docker" in t)]
    return [d[k] for d in docker for k in ("image", "head_image", "worker_image") if k in d]


def _locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip()] = version.split(";")[0].strip()
    return pins


def test_cluster_yaml_validates_against_rays_schema():
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(_load(), schema)


def test_cluster_shape_head_runs_nothing_cpu_and_gpu_workers():
    cfg = _load()
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"] == {"CPU": 0}
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith("g5.")
    assert types["gpu_worker"]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert types["gpu_worker"]["docker"]["worker_image"].endswith("-gpu")
    assert "--gpus all" in types["gpu_worker"]["docker"]["worker_run_options"]
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())
    assert any("pip install" in c and "genre-tagger" in c for c in cfg["setup_commands"])


def test_every_image_runs_the_locked_ray_on_a_python_that_the_lock_and_pyproject_accept():
    """Each image's tag names its Ray and Python (rayproject/ray:RAY-pyXY-PLATFORM). Its Python must satisfy the
    Requires-Python of every locked package (read from the installed distributions, which `make setup` installs from
    the lock) and pyproject's requires-python, whose lower bound must itself satisfy the lock."""
    pins = _locked()
    needs = {name: SpecifierSet(metadata.metadata(name)["Requires-Python"] or "")
             for name in [*pins, "torch"] if metadata.metadata(name)}
    requires = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    lowest = Version(next(s.version for s in requires if s.operator == ">="))
    too_old = sorted(n for n, spec in needs.items() if lowest not in spec)
    assert not too_old, f"pyproject's requires-python {requires} admits Pythons that {too_old} refuse"
    images = _images(_load())
    assert images
    for image in images:
        m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-(cpu|gpu|cu\d+)", image)
        assert m, f"{image}: not a rayproject/ray:VERSION-pyXY-PLATFORM tag"
        assert m.group(1) == pins["ray"], f"{image} runs Ray {m.group(1)}, the lock pins {pins['ray']}"
        python = Version(f"{m.group(2)}.{m.group(3)}")
        refused = sorted(n for n, spec in needs.items() if python not in spec)
        assert not refused, f"{image} runs Python {python}, which {refused} refuse"
        assert python in requires


def test_schema_rejects_a_broken_config():
    import jsonschema.exceptions
    import pytest

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    broken = _load()
    broken["available_node_types"]["gpu_worker"]["min_workers"] = "zero"
    with pytest.raises(jsonschema.exceptions.ValidationError):
        jsonschema.validate(broken, schema)
