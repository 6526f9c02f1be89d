"""cluster.yaml is a real Ray autoscaler config: Ray's own validator accepts it (offline)."""

import copy

import jsonschema
import pytest
import yaml
from helpers import REPO
from ray.autoscaler._private.util import prepare_config, validate_config


def load():
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_validator():
    config = load()
    validate_config(prepare_config(copy.deepcopy(config)))
    assert config["head_node_type"] in config["available_node_types"]
    assert "2.60.0" in config["docker"]["image"]
    assert any("pip install -q -e /home/ray/mrisr-ray" in c for c in config["setup_commands"])
    assert any("127.0.0.1" in c for c in config["head_setup_commands"])  # MLflow not exposed


def test_validator_catches_mistakes():
    broken = load()
    broken["available_node_types"]["gpu_worker"]["min_wrokers"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))
    wrong_head = load()
    wrong_head["head_node_type"] = "missing"
    with pytest.raises(ValueError):
        validate_config(prepare_config(wrong_head))
