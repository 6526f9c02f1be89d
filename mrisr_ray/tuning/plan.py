"""What a study asks for (`StudyRequest`), checked and turned into the `Plan` that `--dry-run`
prints and `run_study` follows."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from mrisr_ray import tracking
from mrisr_ray.config import Config
from mrisr_ray.data.cache import Cache
from mrisr_ray.errors import UserInputError
from mrisr_ray.ray_runtime import check_max_failures
from mrisr_ray.resources import Resources
from mrisr_ray.tracking import Tracking
from mrisr_ray.tuning.space import SearchSpace, load_space
from mrisr_ray.workdir import Workdir

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a folder under the Ray storage
TRIAL_DRIVER_CPU = 0.1  # the trial function only drives its folds' TorchTrainers


@dataclass
class StudyRequest:
    config: Config  # base configuration: trial 0, and every constant the space leaves alone
    space_path: Path
    cache: Path
    workdir: Workdir
    tracking: Tracking
    trials: int = 20
    folds: int | None = None  # the first K folds of splits.json (None: all of them)
    concurrent: int = 1
    resources: Resources = field(default_factory=Resources)  # of each fold training
    metric: str = "psnr"
    name: str | None = None
    resume: bool = False
    address: str | None = None
    seed: int = 0
    vgg_weights: str | None = None
    experiment: str = tracking.DEFAULT_EXPERIMENT
    sampler: str = "tpe"  # tpe | random (the baseline of benchmarks/hpo_efficiency.py)
    pruning: bool = True  # ASHA over folds; False runs every trial on all folds
    max_failures: int = 1  # restarts of a fold from its last checkpoint (a lost node, a crash)


@dataclass
class Plan:
    name: str
    model: str
    trials: int
    folds: int
    concurrent: int
    resources: Resources
    epochs: int
    space: SearchSpace
    sampler: str  # tpe | random
    pruning: bool  # ASHA over folds

    def lines(self) -> list[str]:
        return [
            f"study        {self.name} ({self.model})",
            f"trials       {self.trials} (trial 0 = the default configuration), "
            f"{self.concurrent} at a time",
            f"folds        {self.folds} per trial, one after another; " + self.stopping(),
            f"fits         at most {self.trials * self.folds} fold trainings of {self.epochs} epochs",
            f"per trial    {self.resources.describe()} + {TRIAL_DRIVER_CPU} CPU for the trial driver "
            "(on the head node)",
            "search space " + "; ".join(d.describe() for d in self.space.dimensions),
            "sampler      " + (f"Optuna TPE: trial 0, then random draws until {self.space.startup_trials} "
                                 "trials have completed or been pruned" if self.sampler == "tpe"
                                 else "random search"),
        ]

    def stopping(self) -> str:
        if not self.pruning:
            return "no ASHA: every trial trains them all"
        rungs = self.space.asha_rungs(self.folds)
        if not rungs:
            return "ASHA stops none (one fold)"
        after = str(rungs[0]) if len(rungs) == 1 else f"{', '.join(map(str, rungs[:-1]))} or {rungs[-1]}"
        return (f"ASHA may stop a trial after fold {after} (the top 1/{self.space.reduction_factor} "
                "of those recorded there go on)")


def make_plan(request: StudyRequest, cache: Cache) -> Plan:
    """The plan of a valid request; bad input stops here, before anything launches."""
    resources = request.resources
    if request.metric not in ("psnr", "ssim"):
        raise UserInputError(f"--metric must be psnr or ssim, got {request.metric!r}")
    available = len(cache.splits.folds)
    folds = available if request.folds is None else request.folds
    if not 1 <= folds <= available:
        raise UserInputError(f"--folds {folds}: {cache.path / 'splits.json'} has {available} folds")
    if request.trials < 1 or request.concurrent < 1:
        raise UserInputError("--trials and --concurrent must be at least 1")
    resources.check()
    check_max_failures(request.max_failures)
    if not 0 <= request.seed < 2**32:
        raise UserInputError(f"--seed must be in [0, 2**32), got {request.seed}")
    if request.name is not None and not STUDY_NAME.fullmatch(request.name):
        raise UserInputError(f"--name {request.name!r}: a study name is letters, digits, '.', '_' and '-' "
                             "(it names a folder)")
    if 0 < resources.gpus_per_worker < 1 and resources.workers > 1:
        raise UserInputError("fractional --gpus-per-worker needs --workers 1 (DDP refuses "
                             "two ranks on one GPU)")
    return Plan(name=request.name or f"{request.config.model}-{time.strftime('%Y%m%d-%H%M%S')}",
                model=request.config.model, trials=request.trials, folds=folds,
                concurrent=request.concurrent, resources=resources, epochs=request.config.train.epochs,
                space=load_space(request.space_path, request.config), sampler=request.sampler,
                pruning=request.pruning)
