"""Starting or joining Ray, and checking a resource request before anything launches: Ray Train
retries a worker group it cannot place every 60 s, forever and without an error, so an impossible
request is refused here (docs/architecture.md §4.6)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import yaml

from mrisr_ray.errors import UserInputError
from mrisr_ray.resources import Resources
from mrisr_ray.signals import keep_sigterm_as_ctrl_c

QUIET_RAY = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # Worker prints go straight to the driver's console (the print patch echoes them twice).
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
}
# Ray Train's preemption watcher reports spot-node preemptions; a local runtime has no node to
# lose, and the watcher costs a Python process (~2 CPU-seconds on a 2-core laptop) per training.
LOCAL_RAY = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


# Set in processes that must not reach MLflow (Ray Train workers: they may run on nodes where
# the head's tracking server is not reachable; `train/logger.py` logs for them). Its value says why.
NO_TRACKING_ENV = "MRISR_RAY_NO_TRACKING"
HEAD_RESOURCE = "node:__internal_head__"  # every Ray head node has one unit of it
HEAD_NODE = "head"  # the head's name among `node_types()`
# The autoscaling config that `ray up` leaves on the head (override: AUTOSCALING_CONFIG_ENV).
AUTOSCALING_CONFIG_ENV = "MRISR_RAY_AUTOSCALING_CONFIG"
DEFAULT_AUTOSCALING_CONFIG = "~/ray_bootstrap_config.yaml"


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join `address`, or start a local Ray runtime, unless one is already connected."""
    # Without an address, ray.init joins the cluster RAY_ADDRESS names, else starts a local one.
    local = not address and not os.environ.get("RAY_ADDRESS")
    settings = {**QUIET_RAY, **LOCAL_RAY} if local else QUIET_RAY
    for key, value in settings.items():
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return
    runtime_env = {"env_vars": {k: os.environ[k] for k in settings}}
    # The dashboard (ray[default]) also serves the state API that Ray Train's placement-group
    # cleaner polls; without it that actor warns every few seconds.
    on_sigterm = signal.getsignal(signal.SIGTERM)
    if address:
        ray.init(address=address, runtime_env=runtime_env)
    else:
        ray.init(num_cpus=num_cpus, runtime_env=runtime_env)
    keep_sigterm_as_ctrl_c(on_sigterm)


def check_max_failures(max_failures: int) -> None:
    """Ray's restarts of a training from its last checkpoint (`FailureConfig.max_failures`)."""
    if max_failures < 0:
        raise UserInputError(f"--max-failures must be 0 or more, got {max_failures}")


def check_local_request(resources: Resources, gpu_option: str) -> None:
    """Refuse, before Ray starts, what this machine cannot give (`gpu_option`: how the command
    asked for GPUs, for the message)."""
    import torch

    workers = resources.workers  # at least 1: `Resources.check`, which both callers ran
    if resources.use_gpu:
        if not torch.cuda.is_available():
            raise UserInputError(f"{gpu_option}: no CUDA device is available on this machine")
        if workers > torch.cuda.device_count():
            raise UserInputError(f"--workers {workers} needs {workers} GPUs, this machine has "
                                 f"{torch.cuda.device_count()} (one GPU per DDP worker)")
    elif resources.cpus > (os.cpu_count() or 1):
        raise UserInputError(f"--workers {workers} needs {resources.cpus:g} CPUs, this "
                             f"machine has {os.cpu_count()}")
    if resources.worker_resource:
        raise UserInputError(f"--worker-resource {resources.worker_resource} places workers on the "
                             "nodes of a Ray cluster: pass --address too")


@dataclass(frozen=True)
class NodeType:
    """Nodes the cluster has or can start: `count` of them (None: as many as needed)."""

    name: str
    resources: dict[str, float]
    count: int | None


def node_types() -> list[NodeType]:
    """What the cluster can grow to: with an autoscaler, the head node and the worker node types
    it can start (their counts include those already up), published by Ray's GCS (autoscaler v2,
    KubeRay) or read from the autoscaling config on this machine (`ray up` leaves it on the head,
    where `tune` runs); without one, the nodes alive now."""
    import ray

    # Ray's private state API, as Ray Train 2.60 itself reads it for the same check
    # (worker_group.py: InsufficientClusterResourcesError); re-check on a Ray upgrade.
    from ray._private.state import state

    alive = [NodeType(HEAD_NODE if HEAD_RESOURCE in node["Resources"] else f"node {node['NodeID'][:8]}",
                      dict(node["Resources"]), 1) for node in ray.nodes() if node["Alive"]]
    published = state.get_cluster_config()
    if published is not None and published.node_group_configs:
        types = [NodeType(group.name, dict(group.resources),
                          None if group.max_count == -1 else group.max_count)
                 for group in published.node_group_configs]
    else:
        types = autoscaling_config_types(Path(os.environ.get(AUTOSCALING_CONFIG_ENV,
                                                             DEFAULT_AUTOSCALING_CONFIG)).expanduser())
    if not types:
        return alive
    return [node for node in alive if node.name == HEAD_NODE] + types


def autoscaling_config_types(path: Path) -> list[NodeType]:
    """The worker node types of a Ray autoscaling config (cluster.yaml as `ray up` completes it).
    Each is capped by the config's `max_workers` too, which caps all worker types together: with
    several types the sum is an upper bound, so a request is never refused wrongly."""
    if not path.is_file():
        return []
    config = yaml.safe_load(path.read_text()) or {}
    cluster_cap = config.get("max_workers")  # over all worker types together

    def count(spec: dict) -> int | None:
        counts = [c for c in (spec.get("max_workers"), cluster_cap) if c is not None]
        return min(counts) if counts else None

    return [NodeType(name, {k: float(v) for k, v in (spec.get("resources") or {}).items()}, count(spec))
            for name, spec in (config.get("available_node_types") or {}).items()
            if name != config.get("head_node_type")]


def check_cluster_request(resources: Resources, head_cpus: float = 0.0) -> None:
    """Refuse what the Ray cluster can never give, counting the nodes its autoscaler may start:
    one worker must fit on one node, all workers on the nodes there are or can be. `head_cpus`:
    what must also fit on the head node (a study's trial drivers)."""
    types = node_types()
    bundle, total = resources.per_worker(), resources.total()
    total["CPU"] = total.get("CPU", 0) + head_cpus
    driver = f" + {head_cpus:g} CPU for the trial driver" if head_cpus else ""
    if not any(fits(bundle, t.resources) for t in types if t.count != 0):
        raise UserInputError(f"no node of the Ray cluster, and no node type its autoscaler can start, "
                             f"has {show(bundle)} for one worker (it has {describe_types(types)})")
    for name, needed in total.items():
        reachable = sum(t.resources[name] * (float("inf") if t.count is None else t.count)
                        for t in types if t.resources.get(name, 0) > 0)
        if needed > reachable:
            raise UserInputError(f"the Ray cluster can have at most {reachable:g} {name} (nodes now and "
                                 f"those its autoscaler can start); {resources.describe()}{driver} "
                                 f"needs {needed:g}")
    head = next((t for t in types if t.name == HEAD_NODE), None)  # node_types lists it when alive
    if head_cpus and head is not None and head.resources.get("CPU", 0) < head_cpus:
        raise UserInputError(f"the Ray head node has {head.resources.get('CPU', 0):g} CPUs; each "
                             f"trial driver runs there and needs {head_cpus:g}")


def fits(bundle: dict[str, float], capacity: dict[str, float]) -> bool:
    return all(capacity.get(name, 0) >= amount for name, amount in bundle.items())


def show(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{name}: {amount:g}" for name, amount in resources.items()) + "}"


def describe_types(types: list[NodeType]) -> str:
    """e.g. "node 3f2a9c1b {CPU: 2}; gpu_worker {CPU: 8, GPU: 1}" (no memory or node-id entries)."""
    def shown(name: str) -> bool:
        return ":" not in name and "memory" not in name

    return "; ".join(f"{t.name} {show({k: v for k, v in t.resources.items() if shown(k)})}"
                     for t in types[:6]) or "no nodes"
