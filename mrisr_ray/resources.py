"""What one training asks of Ray: its DDP workers and the CPUs and GPUs of each worker."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mrisr_ray.errors import UserInputError


def resolve_device(device: str) -> bool:
    """`--device auto|cpu|cuda` → True when running on a GPU (whether one exists is checked where
    it is used: locally or on the Ray cluster)."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise UserInputError(f"--device must be auto, cpu or cuda, got {device!r}")
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


@dataclass(frozen=True)
class Resources:
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # 0: train on CPUs; < 1 shares a GPU (one worker only: DDP)
    # A custom Ray resource (`ray start --resources '{"NAME": N}'`) of which each worker takes
    # one unit: places folds on the nodes that declare it (at most N workers per node).
    worker_resource: str | None = None

    def check(self) -> Resources:
        """These resources, if Ray can place them (checked before anything launches)."""
        if self.workers < 1:
            raise UserInputError(f"--workers must be at least 1, got {self.workers}")
        if not self.cpus_per_worker > 0:
            raise UserInputError(f"--cpus-per-worker must be more than 0, got {self.cpus_per_worker:g}")
        if not self.gpus_per_worker >= 0:
            raise UserInputError(f"--gpus-per-worker must be 0 or more, got {self.gpus_per_worker:g}")
        return self

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    @property
    def cpus(self) -> float:
        return self.workers * self.cpus_per_worker

    @property
    def gpus(self) -> float:
        return self.workers * self.gpus_per_worker

    def on_gpu(self, use_gpu: bool) -> Resources:
        """These resources for a training on GPUs (a whole GPU per worker unless a share is set)
        or on CPUs (no GPU asked for)."""
        return replace(self, gpus_per_worker=(self.gpus_per_worker or 1.0) if use_gpu else 0.0)

    def per_worker(self) -> dict[str, float]:
        """Ray's `resources_per_worker`."""
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.use_gpu else {}),
                **({self.worker_resource: 1.0} if self.worker_resource else {})}

    def total(self) -> dict[str, float]:
        """What all the workers of one training take together."""
        return {name: amount * self.workers for name, amount in self.per_worker().items()}

    def describe(self) -> str:
        gpu = f", {self.gpus_per_worker:g} GPU" if self.use_gpu else ""
        custom = f", 1 {self.worker_resource}" if self.worker_resource else ""
        return f"{self.workers} worker(s) × ({self.cpus_per_worker:g} CPU{gpu}{custom})"
