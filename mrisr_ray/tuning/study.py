"""`mrisr-ray tune`: a Ray Tune study with Optuna TPE and ASHA over cross-validation folds.

Tune runs `cv_trial` (trial.py) per configuration; Optuna (seeded TPE, SQLite storage in the
work directory) proposes configurations, trial 0 being the default (paper) configuration; ASHA
on `folds_done` stops weak trials after their first folds. The best configuration is chosen
among trials that finished all K folds only. MLflow: study run ▸ trial runs ▸ fold runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from mrisr_ray import tracking
from mrisr_ray.config import Config, save_config, to_dict, with_overrides
from mrisr_ray.data.cache import Cache
from mrisr_ray.errors import UserInputError
from mrisr_ray.ray_runtime import check_cluster_request, check_local_request, ensure_ray
from mrisr_ray.tracking import Tracking
from mrisr_ray.tuning.space import SearchSpace, load_space
from mrisr_ray.tuning.trial import StudySpec, cv_trial, runs_of
from mrisr_ray.workdir import Workdir

TRIAL_DRIVER_CPU = 0.1  # the trial function only drives its folds' TorchTrainers


class StudyInterrupted(KeyboardInterrupt):
    """Tune stopped the study (Ctrl-C) and saved its state; `--resume` continues it."""


@dataclass
class StudyRequest:
    config: Config  # base configuration: trial 0, and every constant the space leaves alone
    space_path: Path
    cache: Path
    workdir: Workdir
    tracking: Tracking
    trials: int = 20
    folds: int = 5
    concurrent: int = 1
    workers_per_trial: int = 1
    gpus_per_worker: float = 0.0  # 0: train on CPUs
    cpus_per_worker: float = 1.0
    metric: str = "psnr"
    name: str | None = None
    resume: bool = False
    address: str | None = None
    seed: int = 0
    vgg_weights: str | None = None
    experiment: str = tracking.DEFAULT_EXPERIMENT
    sampler: str = "tpe"  # tpe | random (the baseline of benchmarks/hpo_efficiency.py)
    pruning: bool = True  # ASHA over folds; False runs every trial on all folds


@dataclass
class TrialOutcome:
    trial_id: str
    params: dict
    state: str  # complete | pruned | failed
    folds_done: int
    psnr_mean: float = float("nan")
    psnr_sd: float = float("nan")
    ssim_mean: float = float("nan")
    ssim_sd: float = float("nan")
    is_default: bool = False

    def score(self, metric: str) -> float:
        return self.psnr_mean if metric == "psnr" else self.ssim_mean


@dataclass
class StudyResult:
    name: str
    run_id: str
    outcomes: list[TrialOutcome]
    best: TrialOutcome | None
    best_config_path: Path | None
    artifacts: list[Path] = field(default_factory=list)


@dataclass
class Plan:
    name: str
    model: str
    trials: int
    folds: int
    concurrent: int
    workers_per_trial: int
    cpus_per_worker: float
    gpus_per_worker: float
    epochs: int
    space: SearchSpace

    def lines(self) -> list[str]:
        gpu = f", {self.gpus_per_worker:g} GPU" if self.gpus_per_worker else ""
        return [
            f"study        {self.name} ({self.model})",
            f"trials       {self.trials} (trial 0 = the default configuration), "
            f"{self.concurrent} at a time",
            f"folds        {self.folds} per trial, one after another; ASHA may stop a trial after any",
            f"fits         at most {self.trials * self.folds} fold trainings of {self.epochs} epochs",
            f"per trial    {self.workers_per_trial} worker(s) × ({self.cpus_per_worker:g} CPU{gpu}) "
            f"+ {TRIAL_DRIVER_CPU} CPU for the trial driver",
            "search space " + "; ".join(d.describe() for d in self.space.dimensions),
        ]


def select_best(outcomes: list[TrialOutcome], folds: int, metric: str) -> TrialOutcome | None:
    """The best trial among those that finished all `folds` folds (partial CV never wins)."""
    complete = [o for o in outcomes if o.state == "complete" and o.folds_done == folds]
    return max(complete, key=lambda o: o.score(metric), default=None)


class CVOptunaSearch:
    """Factory for OptunaSearch that tells Optuna a trial stopped before K folds was PRUNED (the
    stock searcher reports it COMPLETE with its partial mean; research/ray.md Pitfall B)."""

    @staticmethod
    def create(folds: int, **kwargs):
        from ray.tune.search.optuna import OptunaSearch

        class _Search(OptunaSearch):
            def on_trial_complete(self, trial_id, result=None, error=False):
                if result and not error and result.get("folds_done", 0) < folds:
                    result = {k: v for k, v in result.items() if k != self.metric}
                super().on_trial_complete(trial_id, result=result, error=error)

        return _Search(**kwargs)


def study_paths(request: StudyRequest, name: str) -> tuple[Path, Path]:
    """(Tune experiment folder, Optuna SQLite file)."""
    return request.workdir.ray_storage / "tune" / name, request.workdir.optuna_db


def make_plan(request: StudyRequest, cache: Cache) -> tuple[Plan, SearchSpace]:
    if request.metric not in ("psnr", "ssim"):
        raise UserInputError(f"--metric must be psnr or ssim, got {request.metric!r}")
    available = len(cache.splits.folds)
    if not 1 <= request.folds <= available:
        raise UserInputError(f"--folds {request.folds}: {cache.path / 'splits.json'} has {available} folds")
    if request.trials < 1 or request.concurrent < 1 or request.workers_per_trial < 1:
        raise UserInputError("--trials, --concurrent and --workers-per-trial must be at least 1")
    if 0 < request.gpus_per_worker < 1 and request.workers_per_trial > 1:
        raise UserInputError("fractional --gpus-per-worker needs --workers-per-trial 1 (DDP refuses "
                             "two ranks on one GPU)")
    space = load_space(request.space_path, request.config)
    name = request.name or f"{request.config.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    plan = Plan(name=name, model=request.config.model, trials=request.trials, folds=request.folds,
                concurrent=request.concurrent, workers_per_trial=request.workers_per_trial,
                cpus_per_worker=request.cpus_per_worker, gpus_per_worker=request.gpus_per_worker,
                epochs=request.config.train.epochs, space=space)
    return plan, space


def check_resources(request: StudyRequest) -> None:
    """Refuse, before launch, what the cluster cannot give one trial (it would hang)."""
    import ray

    check_cluster_request(request.workers_per_trial, request.gpus_per_worker > 0,
                          request.cpus_per_worker, request.gpus_per_worker)
    total_cpu = ray.cluster_resources().get("CPU", 0)
    if request.workers_per_trial * request.cpus_per_worker + TRIAL_DRIVER_CPU > total_cpu:
        raise UserInputError(f"one trial needs {request.workers_per_trial * request.cpus_per_worker:g} "
                             f"CPUs for its workers plus {TRIAL_DRIVER_CPU} for its driver; the Ray "
                             f"cluster has {total_cpu:g}")


def study_run(request: StudyRequest, plan: Plan, cache: Cache) -> str:
    """The study's parent MLflow run: found again on --resume, else created."""
    t = request.tracking
    found = t.client().search_runs([t.experiment_id(request.experiment)],
                                   f"tags.kind = 'study' and tags.study = '{plan.name}'")
    if request.resume:
        if not found:
            raise UserInputError(f"--resume: no study named {plan.name!r} in {t.uri}")
        tracking.mark_running(t, found[0].info.run_id)
        return found[0].info.run_id
    if found:
        raise UserInputError(f"a study named {plan.name!r} exists; pass --resume to continue it or "
                             "choose another --name")
    run_id = tracking.start_run(t, request.experiment, plan.name, {
        "kind": "study", "study": plan.name, "model": plan.model,
        "protocol_hash": cache.manifest.protocol_hash, "data": str(cache.path),
        "git_commit": tracking.git_commit(), "metric": request.metric})
    tracking.log_params(t, run_id, {"trials": plan.trials, "folds": plan.folds, "seed": request.seed,
                                    "concurrent": plan.concurrent, "epochs": plan.epochs,
                                    "workers_per_trial": plan.workers_per_trial,
                                    "gpus_per_worker": plan.gpus_per_worker})
    tracking.log_file(t, run_id, plan.space.path, "search_space")
    return run_id


def study_callback(spec: StudySpec):
    """A Tune callback (driver side) that closes the MLflow runs of trials Tune stopped or lost
    (it is saved with the experiment, so a restored study keeps it)."""
    from ray.tune import Callback

    class StudyCallback(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            folds_done = (trial.last_result or {}).get("folds_done", 0)
            if folds_done < spec.folds:
                close_trial_runs(spec, trial.trial_id, "pruned", "KILLED")

        def on_trial_error(self, iteration, trials, trial, **info):
            close_trial_runs(spec, trial.trial_id, "failed", "FAILED")

    return StudyCallback()


def unfinished_trials(experiment_path: Path, planned: int) -> int:
    """Trials not yet ended (a Ctrl-C'd study): still pending/running/paused, or never created."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(experiment_path)).trials
    return sum(t.status not in ("TERMINATED", "ERROR") for t in trials) + max(0, planned - len(trials))


def close_trial_runs(spec: StudySpec, trial_id: str, state: str, status: str) -> None:
    t = spec.tracking
    for kind in ("trial", "fold"):
        for run in runs_of(t, spec.experiment, spec.name, kind, trial_id):
            if run.info.status == "RUNNING":
                tracking.set_tags(t, run.info.run_id, {"state": state} if kind == "trial" else {})
                tracking.end_run(t, run.info.run_id, status)
            elif kind == "trial" and run.data.tags.get("state") == "running":
                tracking.set_tags(t, run.info.run_id, {"state": state})


def outcomes_of(grid, space: SearchSpace, defaults: dict, folds: int) -> list[TrialOutcome]:
    outcomes = []
    for result in grid:
        metrics = result.metrics or {}
        params = {d.name: result.config.get(d.name) for d in space.dimensions}
        done = int(metrics.get("folds_done", 0))
        state = "failed" if result.error else ("complete" if done == folds else "pruned")
        outcomes.append(TrialOutcome(
            trial_id=metrics.get("trial_id", ""), params=params,
            state=state, folds_done=done, psnr_mean=metrics.get("psnr_mean", float("nan")),
            psnr_sd=metrics.get("psnr_sd", float("nan")), ssim_mean=metrics.get("ssim_mean", float("nan")),
            ssim_sd=metrics.get("ssim_sd", float("nan")), is_default=params == defaults))
    return outcomes


def run_study(request: StudyRequest, track=None) -> StudyResult:
    """Run (or resume) a study and write its outputs; see the module docstring."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    cache = Cache.open(request.cache)
    plan, space = make_plan(request, cache)
    experiment_path, optuna_db = study_paths(request, plan.name)
    if request.resume and not experiment_path.is_dir():
        raise UserInputError(f"--resume: no study named {plan.name!r} under {experiment_path.parent}")
    if request.address is None:
        check_local_request(request.workers_per_trial, request.gpus_per_worker > 0,
                            request.cpus_per_worker)
    ensure_ray(request.address)
    check_resources(request)
    started = time.time()
    run_id = study_run(request, plan, cache)
    t = request.tracking
    spec = StudySpec(name=plan.name, model=plan.model, base_config=to_dict(request.config),
                     cache=str(cache.path), folds=plan.folds, workdir=str(request.workdir.root),
                     tracking_uri=t.uri, artifact_root=str(t.artifact_root) if t.artifact_root else None,
                     experiment=request.experiment, study_run_id=run_id,
                     workers_per_trial=plan.workers_per_trial, cpus_per_worker=plan.cpus_per_worker,
                     gpus_per_worker=plan.gpus_per_worker, vgg_weights=request.vgg_weights)
    defaults = space.defaults(request.config)
    metric = f"{request.metric}_mean"
    trainable = tune.with_resources(tune.with_parameters(cv_trial, spec=spec),
                                    {"cpu": TRIAL_DRIVER_CPU})
    run_config = tune.RunConfig(name=plan.name, storage_path=str(experiment_path.parent),
                                callbacks=[study_callback(spec)], verbose=1)
    try:
        if request.resume:
            tuner = tune.Tuner.restore(str(experiment_path), trainable, resume_unfinished=True,
                                       restart_errored=False)
        else:
            samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
            search = CVOptunaSearch.create(
                plan.folds, space=space.define_by_run, metric=metric, mode="max",
                points_to_evaluate=[defaults], sampler=samplers[request.sampler](seed=request.seed),
                study_name=plan.name, storage=optuna.storages.RDBStorage(f"sqlite:///{optuna_db}"))
            scheduler = ASHAScheduler(time_attr="folds_done", metric=metric, mode="max",
                                      max_t=plan.folds, grace_period=1, reduction_factor=2) \
                if request.pruning else None
            tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
                search_alg=search, scheduler=scheduler, num_samples=plan.trials,
                max_concurrent_trials=plan.concurrent), run_config=run_config)
        grid = tuner.fit()
    except KeyboardInterrupt:
        tracking.end_run(t, run_id, "KILLED")
        raise
    unfinished = unfinished_trials(experiment_path, plan.trials)
    if unfinished:
        tracking.end_run(t, run_id, "KILLED")
        raise StudyInterrupted(f"study {plan.name} interrupted with {unfinished} unfinished trial(s); "
                               f"continue it with: mrisr-ray tune --resume --name {plan.name}")
    outcomes = outcomes_of(grid, space, defaults, plan.folds)
    for outcome in outcomes:
        # A trial that failed before its first report has no id here; the callback closed it.
        if outcome.state != "complete" and outcome.trial_id:
            close_trial_runs(spec, outcome.trial_id, outcome.state,
                             "FAILED" if outcome.state == "failed" else "KILLED")
    result = finish_study(request, plan, run_id, outcomes, optuna_db, started)
    return result


def finish_study(request: StudyRequest, plan: Plan, run_id: str, outcomes: list[TrialOutcome],
                 optuna_db: Path, started: float) -> StudyResult:
    """Best configuration, plots, trials table and usage, all logged to the study run."""
    from mrisr_ray.tuning.outputs import study_figures, usage

    t = request.tracking
    best = select_best(outcomes, plan.folds, request.metric)
    for outcome in outcomes:
        if outcome.is_default:  # the report prints its CV score beside the best one
            for run in runs_of(t, request.experiment, plan.name, "trial", outcome.trial_id):
                tracking.set_tags(t, run.info.run_id, {"default_config": "true"})
    reports = request.workdir.reports
    reports.mkdir(parents=True, exist_ok=True)
    artifacts: list[Path] = []
    best_path = None
    if best is not None:
        best_path = reports / f"best_{plan.model}.yaml"
        save_config(with_overrides(request.config, best.params), best_path)
        artifacts.append(best_path)
        tracking.set_tags(t, run_id, {"best_trial": best.trial_id})
        tracking.log_metrics(t, run_id, {"best_psnr_mean": best.psnr_mean, "best_psnr_sd": best.psnr_sd,
                                         "best_ssim_mean": best.ssim_mean, "best_ssim_sd": best.ssim_sd},
                             step=0)
        tracking.log_params(t, run_id, {f"best.{k}": v for k, v in best.params.items()})
    table = reports / f"trials_{plan.name}.json"
    table.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2, default=str))
    artifacts.append(table)
    artifacts += study_figures(plan.name, f"sqlite:///{optuna_db}", reports)
    hours = usage(t, request.experiment, plan.name, plan)
    tracking.log_metrics(t, run_id, {**hours, "study_wall_hours": (time.time() - started) / 3600,
                                     "trials_complete": sum(o.state == "complete" for o in outcomes),
                                     "trials_pruned": sum(o.state == "pruned" for o in outcomes),
                                     "trials_failed": sum(o.state == "failed" for o in outcomes)},
                         step=0)
    for path in artifacts:
        tracking.log_file(t, run_id, path)
    tracking.end_run(t, run_id, "FINISHED")
    return StudyResult(name=plan.name, run_id=run_id, outcomes=outcomes, best=best,
                       best_config_path=best_path, artifacts=artifacts)
