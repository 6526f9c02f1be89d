"""One fold through Ray Train (`mrisr_ray.train.run.train`, 1 worker, MLflow logging) vs the
same worker loop called directly without Ray, in one run, at two scales: the demo's tiny fold
and a fold of at least 60 s of compute (target there: Ray at most 1.3× the plain loop).

    python benchmarks/ray_overhead.py

Both sides train with one torch thread (a Ray worker with 1 CPU sets that, `train/worker.py`).
The JSON records the machine's CPUs (`machine.cpu_count`) and those threads
(`torch_threads_per_worker`) apart.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import host, write_result

from mrisr_ray.config import load_config
from mrisr_ray.data.cache import Cache
from mrisr_ray.data.synthetic import prepare_synthetic_cache
from mrisr_ray.ray_runtime import ensure_ray
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.loop import LoopContext
from mrisr_ray.train.run import TrainRequest, train
from mrisr_ray.train.session import train_session
from mrisr_ray.workdir import Workdir

TINY = ["data.patch_size=32", "circle.first_width=16", "circle.min_width=8", "circle.blocks=4",
        "circle.critic_widths=[8, 16, 16, 16]", "circle.critic_fc=32", "train.batch_size=16",
        "train.val_max_slices=3"]
SCALES = {"demo": ["train.epochs=2", "train.max_patches_per_epoch=64"],
          "fold60": ["train.epochs=4", "train.max_patches_per_epoch=1024"]}
WORKER_THREADS = 1  # torch threads of a Ray worker with 1 CPU, and of the plain loop


def plain_loop(config, cache: Cache) -> float:
    """The same training session as a Ray worker runs, called directly (checkpoints included)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(WORKER_THREADS)  # like one Ray worker with 1 CPU
    try:
        started = time.perf_counter()
        fold = cache.splits.fold(0)
        with tempfile.TemporaryDirectory() as folder:
            train_session(config, cache, fold.train, fold.val, LoopContext(), Path(folder),
                          lambda result: None)
        return time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)


def through_ray(config, cache: Cache, root: Path) -> float:
    workdir = Workdir(root)
    started = time.perf_counter()
    train(TrainRequest(config=config, cache=cache.path, workdir=workdir,
                       tracking=Tracking.for_workdir(workdir), fold=0, device="cpu"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=list(SCALES))
    args = parser.parse_args()
    ensure_ray()  # a running cluster, as in `tune`: start-up is not part of a fold
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache_path = Path(tmp) / "cache"
        prepare_synthetic_cache(cache_path, n_subjects=8, n_slices=16, n_folds=2, test_fraction=0.2)
        cache = Cache.open(cache_path)
        for scale in args.scales:
            config = load_config("circle", overrides=[*TINY, *SCALES[scale]])
            plain = plain_loop(config, cache)
            ray_seconds = through_ray(config, cache, Path(tmp) / scale)
            rows.append({"scale": scale, "plain_s": round(plain, 2), "ray_s": round(ray_seconds, 2),
                         "ratio": round(ray_seconds / plain, 3)})
            print(rows[-1], flush=True)
    path = write_result("ray_overhead", {"torch_threads_per_worker": WORKER_THREADS, "rows": rows,
                                         "target_ratio_fold60": 1.3}, machine_info=host())
    print(f"-> {path}")


if __name__ == "__main__":
    main()
