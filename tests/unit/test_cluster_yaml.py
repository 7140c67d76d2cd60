"""cluster.yaml is a valid Ray cluster launcher config (against the schema that ships with Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import ray.autoscaler
import yaml

REPO = Path(__file__).resolve().parents[2]


def _load():
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_rays_schema():
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(_load(), schema)


def test_cluster_shape_head_runs_nothing_cpu_and_gpu_workers():
    cfg = _load()
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"] == {"CPU": 0}
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith("g5.")
    assert types["gpu_worker"]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())
    assert any("pip install" in c and "genre-tagger" in c for c in cfg["setup_commands"])


def test_schema_rejects_a_broken_config():
    import jsonschema.exceptions
    import pytest

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    broken = _load()
    broken["available_node_types"]["gpu_worker"]["min_workers"] = "zero"
    with pytest.raises(jsonschema.exceptions.ValidationError):
        jsonschema.validate(broken, schema)
