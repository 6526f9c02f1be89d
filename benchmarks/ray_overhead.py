"""One fold through Ray Train (`mrisr_ray.train.run.train`, 1 worker, MLflow logging) vs the
same worker loop called directly without Ray, in one run, at two scales: the demo's tiny fold
and a fold of at least 60 s of compute (target there: Ray at most 1.3× the plain loop).

Then what a study trial pays for its folds (`trial` in the JSON): the folds of trial 0 of
benchmarks/hpo_efficiency.py (GAN-CPCE, configs/demo_cpce.yaml with its BASE overrides, on its
cohort) run three ways, each twice, alternating:
- `plain`: the training session called directly, fold after fold (no Ray);
- `fits`: one `TorchTrainer` fit per fold, as `tuning/trial.py` runs them (`train/run.py`);
- `one_fit`: one fit whose single worker trains the folds one after another, each with its own
  session and checkpoint folder, reporting every epoch with its checkpoint (`worker.RaySink`) to
  the product's MLflow logger: the Ray Train cost of a trial paid once instead of per fold
  (without the per-fold MLflow runs and best generators that `fits` also logs).
Each records its wall time and the machine's busy CPU-seconds (user, nice and system over all
processes, from /proc/stat: Ray's controller, helper actors and workers are processes of their
own; so is anything else the machine runs, so run it on an idle one).
`extra_fit_cpu_s_per_repeat`: per repeat, what each fit after a trial's first costs, (fits −
one_fit) / (folds − 1): Ray Train's per-fit processes and the fold's own MLflow run.

    python benchmarks/ray_overhead.py [--scales demo fold60] [--trial-folds 3]

All train with one torch thread (a Ray worker with 1 CPU sets that, `train/worker.py`).
The JSON records the machine's CPUs (`machine.cpu_count`) and those threads
(`torch_threads_per_worker`) apart.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray.train
import torch
from common import host, write_result
from hpo_efficiency import BASE, COHORT, base_config
from ray.train.torch import TorchTrainer

from mrisr_ray import tracking
from mrisr_ray.config import Config, load_config
from mrisr_ray.data.cache import Cache
from mrisr_ray.data.synthetic import prepare_synthetic_cache
from mrisr_ray.ray_runtime import ensure_ray
from mrisr_ray.resources import Resources
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.loop import LoopContext
from mrisr_ray.train.run import TrainRequest, fit_run_config, train
from mrisr_ray.train.session import train_session
from mrisr_ray.train.worker import RaySink, WorkerSpec
from mrisr_ray.workdir import Workdir

TINY = ["data.patch_size=32", "circle.first_width=16", "circle.min_width=8", "circle.blocks=4",
        "circle.critic_widths=[8, 16, 16, 16]", "circle.critic_fc=32", "train.batch_size=16",
        "train.val_max_slices=3"]
SCALES = {"demo": ["train.epochs=2", "train.max_patches_per_epoch=64"],
          "fold60": ["train.epochs=4", "train.max_patches_per_epoch=1024"]}
WORKER_THREADS = 1  # torch threads of a Ray worker with 1 CPU, and of the plain loop
STUDY_FOLD = Resources(cpus_per_worker=0.9)  # a fold's worker in hpo_efficiency.py's studies


@contextmanager
def worker_threads() -> Iterator[None]:
    """This process trains with the torch threads of a Ray worker with 1 CPU, then goes back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(WORKER_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def plain_loop(config: Config, cache: Cache) -> float:
    """The same training session as a Ray worker runs, called directly (checkpoints included)."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        trial_plain(config, cache, 1, Path(folder))
        return time.perf_counter() - started


def through_ray(config: Config, cache: Cache, root: Path) -> float:
    workdir = Workdir(root)
    started = time.perf_counter()
    train(TrainRequest(config=config, cache=cache.path, workdir=workdir,
                       tracking=Tracking.for_workdir(workdir), fold=0, device="cpu"))
    return time.perf_counter() - started


def busy_cpu_seconds() -> float:
    """CPU-seconds the whole machine has spent busy (user, nice, system) since boot."""
    with open("/proc/stat") as f:
        fields = f.readline().split()  # "cpu user nice system idle ..." in clock ticks
    return sum(int(v) for v in fields[1:4]) / os.sysconf("SC_CLK_TCK")


def folds_in_one_worker(loop_config: dict) -> None:
    """A Ray Train worker that trains every spec's fold in turn, as `train_worker` trains one
    (a fresh checkpoint folder per fold: no fold resumes from another's)."""
    torch.set_num_threads(WORKER_THREADS)
    for spec in loop_config["specs"]:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) / "checkpoint"
            train_session(spec.config, Cache.open(spec.cache), spec.train_subjects, spec.val_subjects,
                          LoopContext(), folder, RaySink(spec, 0, folder))


def trial_plain(config: Config, cache: Cache, folds: int, root: Path) -> None:
    """The first `folds` folds, one after another, without Ray (a checkpoint folder each)."""
    with worker_threads():
        for k in range(folds):
            fold = cache.splits.fold(k)
            train_session(config, cache, fold.train, fold.val, LoopContext(), root / f"fold{k}",
                          lambda result: None)


def trial_fits(config: Config, cache: Cache, folds: int, root: Path) -> None:
    workdir = Workdir(root)
    for k in range(folds):
        train(TrainRequest(config=config, cache=cache.path, workdir=workdir,
                           tracking=Tracking.for_workdir(workdir), fold=k, device="cpu",
                           resources=STUDY_FOLD))


def trial_one_fit(config: Config, cache: Cache, folds: int, root: Path) -> None:
    """The folds in one fit, with the RunConfig of `train/run.py`; one MLflow run."""
    store = Tracking.for_workdir(Workdir(root))
    run_id = tracking.start_run(store, tracking.DEFAULT_EXPERIMENT, "one fit", {})
    specs = [WorkerSpec(config=config, cache=str(cache.path), train_subjects=cache.splits.fold(k).train,
                        val_subjects=cache.splits.fold(k).val) for k in range(folds)]
    TorchTrainer(
        folds_in_one_worker, train_loop_config={"specs": specs},
        scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker=STUDY_FOLD.per_worker()),
        run_config=fit_run_config("one-fit", root / "ray", 1, store, run_id),  # max_failures: train's
    ).fit()
    tracking.end_run(store, run_id, "FINISHED")


TRIAL_WAYS = {"plain": trial_plain, "fits": trial_fits, "one_fit": trial_one_fit}


def trial_row(folds: int, root: Path) -> dict:
    """Each way twice, alternating (`trial_summary` makes the row)."""
    cache_path = root / "cache"
    prepare_synthetic_cache(cache_path, n_folds=folds, **COHORT)  # as hpo_efficiency.py
    cache = Cache.open(cache_path)
    config = base_config()  # hpo_efficiency's trial 0
    runs: dict[str, list[dict]] = {way: [] for way in TRIAL_WAYS}
    for repeat in range(2):
        for way, run in TRIAL_WAYS.items():
            started, busy = time.perf_counter(), busy_cpu_seconds()
            run(config, cache, folds, root / f"{way}-{repeat}")
            runs[way].append({"wall_s": round(time.perf_counter() - started, 1),
                              "busy_cpu_s": round(busy_cpu_seconds() - busy, 1)})
            print(way, runs[way][-1], flush=True)
    return trial_summary(runs, folds)


def trial_summary(runs: dict[str, list[dict]], folds: int) -> dict:
    """The `trial` row of the JSON: each way's runs, the figures of its run with fewer busy
    CPU-seconds, and per repeat what a fit after the first costs, (fits − one_fit) / (folds − 1)."""
    fewest = {way: min(measured, key=lambda m: m["busy_cpu_s"]) for way, measured in runs.items()}
    extra_fit = [round((f["busy_cpu_s"] - o["busy_cpu_s"]) / (folds - 1), 1)
                 for f, o in zip(runs["fits"], runs["one_fit"], strict=True)]
    return {"scale": "trial", "folds": folds, "config": "configs/demo_cpce.yaml", "overrides": BASE,
            "runs": runs, **{f"{way}_busy_cpu_s": m["busy_cpu_s"] for way, m in fewest.items()},
            **{f"{way}_wall_s": m["wall_s"] for way, m in fewest.items()},
            "extra_fit_cpu_s_per_repeat": extra_fit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=list(SCALES))
    parser.add_argument("--trial-folds", type=int, default=3,
                        help="folds of the `trial` row (under 2: no row)")
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
        if args.trial_folds > 1:
            rows.append(trial_row(args.trial_folds, Path(tmp) / "trial"))
            print(rows[-1], flush=True)
    path = write_result("ray_overhead", {"torch_threads_per_worker": WORKER_THREADS, "rows": rows,
                                         "target_ratio_fold60": 1.3}, machine_info=host())
    print(f"-> {path}")


if __name__ == "__main__":
    main()
