"""cluster.yaml is a real Ray autoscaler config: Ray's own validator accepts it (offline); and
resource requests are checked against the node types such a cluster's autoscaler can start."""

import copy

import jsonschema
import pytest
import yaml
from helpers import REPO
from ray.autoscaler._private.util import prepare_config, validate_config

from mrisr_ray.errors import UserInputError
from mrisr_ray.ray_runtime import AUTOSCALING_CONFIG_ENV, check_cluster_request
from mrisr_ray.resources import Resources


def load():
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_validator():
    config = load()
    validate_config(prepare_config(copy.deepcopy(config)))
    assert config["head_node_type"] in config["available_node_types"]
    assert "2.60.0" in config["docker"]["image"]
    assert any("pip install -q -e /home/ray/mrisr-ray" in c for c in config["setup_commands"])
    # MLflow: `mrisr-ray ui` (always on 127.0.0.1) on the head's own disk; the dashboard on loopback.
    (ui,) = [c for c in config["head_setup_commands"] if "mrisr-ray ui" in c]
    assert "--workdir /home/ray/" in ui and "/shared" not in ui and "--host" not in ui
    assert "--dashboard-host=127.0.0.1" in config["head_start_ray_commands"][-1]
    # Ray token auth on every node, the token copied from the user's machine, never written here.
    assert config["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    starts = config["head_start_ray_commands"][-1] + config["worker_start_ray_commands"][-1]
    assert starts.count("RAY_AUTH_MODE=token") == 2 and "RAY_AUTH_TOKEN=" not in yaml.safe_dump(config)
    assert config["available_node_types"]["gpu_worker"]["resources"]["GPU"] == 1  # checked by `tune`
    assert "-v /shared:/shared" in config["docker"]["run_options"]  # the host's EFS mount, in the container


def test_validator_catches_mistakes():
    broken = load()
    broken["available_node_types"]["gpu_worker"]["min_wrokers"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))
    wrong_head = load()
    wrong_head["head_node_type"] = "missing"
    with pytest.raises(ValueError):
        validate_config(prepare_config(wrong_head))


@pytest.mark.ray
def test_requests_count_the_nodes_the_autoscaler_can_start(ray_session, monkeypatch, tmp_path):
    """The local test cluster has no GPU; cluster.yaml's autoscaler can add up to four 1-GPU
    nodes (`gpu_worker`, min_workers 0), so GPU requests wait for it instead of failing."""
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    monkeypatch.setenv(AUTOSCALING_CONFIG_ENV, str(tmp_path / "no-autoscaler.yaml"))
    with pytest.raises(UserInputError, match=r"autoscaler can start, has \{CPU: 1, GPU: 1\}"):
        check_cluster_request(Resources(gpus_per_worker=1.0))
    with pytest.raises(UserInputError, match=rf"at most {cpus} CPU .*\+ 0\.1 CPU for the trial driver"):
        check_cluster_request(Resources(workers=cpus), head_cpus=0.1)  # the driver takes a worker's CPU
    check_cluster_request(Resources(workers=cpus - 1), head_cpus=0.1)

    monkeypatch.setenv(AUTOSCALING_CONFIG_ENV, str(REPO / "cluster.yaml"))
    check_cluster_request(Resources(workers=4, gpus_per_worker=1.0), head_cpus=0.1)
    with pytest.raises(UserInputError, match=r"at most 4 GPU .* needs 5$"):
        check_cluster_request(Resources(workers=5, gpus_per_worker=1.0))
    with pytest.raises(UserInputError, match=r"\{CPU: 1, GPU: 2\} for one .*gpu_worker \{CPU: 8, GPU: 1\}"):
        check_cluster_request(Resources(gpus_per_worker=2.0))
    with pytest.raises(UserInputError, match=r"has \{CPU: 1, fold_node: 1\} for one worker"):
        check_cluster_request(Resources(worker_resource="fold_node"))
