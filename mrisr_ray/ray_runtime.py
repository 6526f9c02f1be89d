"""Starting or joining Ray, and checking a resource request before anything launches: Ray Train
retries a worker group it cannot place every 60 s, forever and without an error, so an impossible
request is refused here (docs/architecture.md §4.6)."""

from __future__ import annotations

import os

from mrisr_ray.errors import UserInputError
from mrisr_ray.resources import Resources

QUIET_RAY = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # Worker prints go straight to the driver's console (the print patch echoes them twice).
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
}


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join `address`, or start a local Ray runtime, unless one is already connected."""
    for key, value in QUIET_RAY.items():
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return
    runtime_env = {"env_vars": {k: os.environ[k] for k in QUIET_RAY}}
    # The dashboard (ray[default]) also serves the state API that Ray Train's placement-group
    # cleaner polls; without it that actor warns every few seconds.
    if address:
        ray.init(address=address, runtime_env=runtime_env)
    else:
        ray.init(num_cpus=num_cpus, runtime_env=runtime_env)


def check_local_request(resources: Resources) -> None:
    """Refuse, before Ray starts, what this machine cannot give."""
    import torch

    workers = resources.workers
    if workers < 1:
        raise UserInputError(f"--workers must be at least 1, got {workers}")
    if resources.use_gpu:
        if not torch.cuda.is_available():
            raise UserInputError("--device cuda: no CUDA device is available on this machine")
        if workers > torch.cuda.device_count():
            raise UserInputError(f"--workers {workers} needs {workers} GPUs, this machine has "
                                 f"{torch.cuda.device_count()} (one GPU per DDP worker)")
    elif resources.cpus > (os.cpu_count() or 1):
        raise UserInputError(f"--workers {workers} needs {resources.cpus:g} CPUs, this "
                             f"machine has {os.cpu_count()}")


def check_cluster_request(resources: Resources) -> None:
    """Refuse what the connected Ray cluster cannot give (total resources)."""
    import ray

    total = ray.cluster_resources()
    if resources.cpus > total.get("CPU", 0):
        raise UserInputError(f"the Ray cluster has {total.get('CPU', 0):g} CPUs, the request needs "
                             f"{resources.cpus:g}")
    if resources.use_gpu and resources.gpus > total.get("GPU", 0):
        raise UserInputError(f"the Ray cluster has {total.get('GPU', 0):g} GPUs, the request needs "
                             f"{resources.gpus:g}")
