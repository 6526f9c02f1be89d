"""`mrisr-ray tune`: a Ray Tune study with Optuna TPE and ASHA over cross-validation folds.

Tune runs `cv_trial` (trial.py) per configuration; Optuna (seeded TPE, SQLite storage in the
work directory) proposes configurations, trial 0 being the default (paper) configuration; ASHA
on `folds_done` stops weak trials after their first folds. The request is checked and planned
in plan.py; the best configuration and the other outputs are made in outcomes.py. MLflow: study
run ▸ trial runs ▸ fold runs.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.entities import Run

from mrisr_ray import runs, tracking
from mrisr_ray.config import config_yaml
from mrisr_ray.data.cache import Cache, file_sha256
from mrisr_ray.errors import Interrupted, UserInputError
from mrisr_ray.models.vgg import with_resolved_weights
from mrisr_ray.progress import Target, Watch, no_watch
from mrisr_ray.ray_runtime import HEAD_RESOURCE, check_cluster_request, check_local_request, ensure_ray
from mrisr_ray.runs import TrialState
from mrisr_ray.signals import handler_while
from mrisr_ray.tuning.outcomes import StudyResult, finish_study, outcomes_of
from mrisr_ray.tuning.plan import TRIAL_DRIVER_CPU, Plan, StudyRequest, make_plan
from mrisr_ray.tuning.space import SearchSpace
from mrisr_ray.tuning.trial import StudySpec, cv_trial
from mrisr_ray.workdir import ensure_folder

if TYPE_CHECKING:
    import optuna


class StudyInterrupted(Interrupted):
    """Tune stopped the study (Ctrl-C) and saved its state; `--resume` continues it."""


class CVOptunaSearch:
    """Factory for OptunaSearch that tells Optuna a trial stopped before K folds was PRUNED (the
    stock searcher reports it COMPLETE with its partial mean, which would mislead TPE), and hands
    each trial its Optuna trial number (`runs.TRIAL_NUMBER` in its config: display names)."""

    @staticmethod
    def create(folds: int, **kwargs):
        from ray.tune.search.optuna import OptunaSearch

        class _Search(OptunaSearch):
            def suggest(self, trial_id):
                config = super().suggest(trial_id)
                if not isinstance(config, dict):  # None (wait) or Searcher.FINISHED
                    return config
                return {**config, runs.TRIAL_NUMBER: self._ot_trials[trial_id].number}

            def on_trial_complete(self, trial_id, result=None, error=False):
                if result and not error and result.get("folds_done", 0) < folds:
                    result = {k: v for k, v in result.items() if k != self.metric}
                super().on_trial_complete(trial_id, result=result, error=error)

        return _Search(**kwargs)


def study_paths(request: StudyRequest, name: str) -> tuple[Path, Path]:
    """(Tune experiment folder, Optuna SQLite file)."""
    return request.workdir.ray_storage / "tune" / name, request.workdir.optuna_db


def check_resumable(study: Run, request: StudyRequest, plan: Plan, cache: Cache) -> None:
    """`--resume` continues the same study: same cache, base configuration and search space."""
    tags, name = study.data.tags, plan.name
    now = {**runs.data_tags(cache), runs.BASE_CONFIG_SHA256: runs.sha256_text(config_yaml(request.config)),
           runs.SPACE_SHA256: file_sha256(plan.space.path)}
    what = {runs.PROTOCOL_HASH: f"--data {cache.path} was prepared with another protocol",
            runs.DATA_DIGEST: f"--data {cache.path} holds other scans",
            runs.SPLITS_DIGEST: f"--data {cache.path} has other splits",
            runs.BASE_CONFIG_SHA256: "the base configuration (--config/--set/--epochs) differs",
            runs.SPACE_SHA256: f"the search space {plan.space.path} differs"}
    for key, value in now.items():
        if key in tags and tags[key] != value:
            raise UserInputError(f"--resume {name}: {what[key]} from the study's; resume with the "
                                 "same options, or start a new study with another --name")
    folds = study.data.params.get("folds")
    if request.folds is not None and folds is not None and int(folds) != request.folds:
        raise UserInputError(f"--resume {name}: --folds {request.folds} differs from the study's {folds}; "
                             "leave --folds out to keep the study's")


def existing_study(request: StudyRequest, plan: Plan, cache: Cache) -> Run | None:
    """With --resume, the study's run, checked to be the same study; without, None once the name
    is known to be free. Checked before Ray starts."""
    found = runs.study_runs(request.tracking, request.experiment, study=plan.name)
    if request.resume:
        if not found:
            raise UserInputError(f"--resume: no study named {plan.name!r} in {request.tracking.uri}")
        check_resumable(found[0], request, plan, cache)
        return found[0]
    if found:
        raise UserInputError(f"a study named {plan.name!r} exists; pass --resume to continue it or "
                             "choose another --name")
    return None


def study_run(request: StudyRequest, plan: Plan, cache: Cache, existing: Run | None) -> str:
    """The study's parent MLflow run: the `existing` one marked running again, else created."""
    t = request.tracking
    if existing is not None:
        tracking.mark_running(t, existing.info.run_id)
        return existing.info.run_id
    run_id = tracking.start_run(t, request.experiment, plan.name,
                                runs.study_tags(plan.name, plan.model, cache, request.metric,
                                                config_yaml(request.config), file_sha256(plan.space.path)))
    tracking.log_params(t, run_id, {"trials": plan.trials, "folds": plan.folds, "seed": request.seed,
                                    "concurrent": plan.concurrent, "epochs": plan.epochs,
                                    "workers_per_trial": plan.resources.workers,
                                    "gpus_per_worker": plan.resources.gpus_per_worker})
    tracking.set_tags(t, run_id, {runs.RAY_STORAGE: str(request.workdir.ray_storage)})
    tracking.log_file(t, run_id, plan.space.path, "search_space")
    tracking.log_file(t, run_id, cache.path / runs.SPLITS_ARTIFACT)
    return run_id


def study_callback(spec: StudySpec):
    """A Tune callback (driver side) that closes the MLflow runs of trials Tune stopped or lost
    (it is saved with the experiment, so a restored study keeps it)."""
    from ray.tune import Callback

    def close(trial_id: str, state: TrialState) -> None:
        runs.close_trial(spec.tracking, spec.experiment, spec.name, trial_id, state)

    class StudyCallback(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            if (trial.last_result or {}).get("folds_done", 0) < spec.folds:
                close(trial.trial_id, TrialState.PRUNED)

        def on_trial_error(self, iteration, trials, trial, **info):
            close(trial.trial_id, TrialState.FAILED)

    return StudyCallback()


def optuna_sampler(kind: str, seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    """Optuna's seeded sampler: TPE with the space's random startup trials, or random search.
    (Optuna's TPE is multivariate and uses the constant liar for concurrent trials by default.)"""
    import optuna

    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=space.startup_trials)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {kind!r} (tpe or random)")


def searcher(request: StudyRequest, plan: Plan, metric: str, defaults: dict, optuna_db: Path):
    """Optuna (seeded) whose first trial is the base configuration, stored in `optuna_db`."""
    import optuna

    return CVOptunaSearch.create(
        plan.folds, space=plan.space.define_by_run, metric=metric, mode="max",
        points_to_evaluate=[defaults], sampler=optuna_sampler(plan.sampler, request.seed, plan.space),
        study_name=plan.name, storage=optuna.storages.RDBStorage(f"sqlite:///{optuna_db}"))


def scheduler(request: StudyRequest, plan: Plan, metric: str):
    """ASHA on folds done (None: every trial runs all folds)."""
    from ray.tune.schedulers import ASHAScheduler

    if not request.pruning:
        return None
    return ASHAScheduler(time_attr="folds_done", metric=metric, mode="max", max_t=plan.folds,
                         grace_period=1, reduction_factor=plan.space.reduction_factor)


def check_private(paths: list[Path]) -> None:
    """Refuse a study folder that another user could write: Ray Tune restores a study, and `tune`
    reads its trials back at the end (`unfinished_trials`), by unpickling the files at its top
    (tuner.pkl, the searcher's state, the trials in experiment_state-*.json). Checked before any
    training: the folder of a resumed study and its files, or the folder a new one goes into."""
    for path in paths:
        info = path.stat()  # a link's target: the link itself always reads 0777
        if info.st_uid != os.getuid() or info.st_mode & stat.S_IWOTH:
            raise UserInputError(f"{path}: owned by another user or writable by everyone; Ray would "
                                 "unpickle what is there, so mrisr-ray will not: chmod o-w it, or tune "
                                 "under a private --storage-path")


def unfinished_trials(experiment_path: Path, planned: int) -> int:
    """Trials not yet ended (a Ctrl-C'd study): still pending/running/paused, or never created.
    (Tune's returned grid counts a trial that Ctrl-C stopped as terminated; its saved state
    does not.)"""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(experiment_path)).trials
    return sum(t.status not in ("TERMINATED", "ERROR") for t in trials) + max(0, planned - len(trials))


def run_study(request: StudyRequest, watch: Watch = no_watch) -> StudyResult:
    """Run (or resume) a study and write its outputs; see the module docstring. `watch` follows
    its trials while they run."""
    from ray import tune

    cache = Cache.open(request.cache)
    plan = make_plan(request, cache)
    existing = existing_study(request, plan, cache)
    if existing is not None and request.workdir.storage is None and runs.RAY_STORAGE in existing.data.tags:
        # A resumed study keeps its Ray storage unless --storage-path moves it.
        storage = Path(existing.data.tags[runs.RAY_STORAGE])
        request = replace(request, workdir=replace(request.workdir, storage=storage))
    experiment_path, optuna_db = study_paths(request, plan.name)
    if request.resume:
        if not experiment_path.is_dir():
            raise UserInputError(f"--resume: no study named {plan.name!r} under {experiment_path.parent}")
        check_private([experiment_path, *experiment_path.iterdir()])
    if request.address is None:
        check_local_request(plan.resources, "--gpus-per-worker")
    # Missing VGG weights stop here, with the instructions, not in every trial.
    config = with_resolved_weights(request.config, request.vgg_weights)
    if existing is not None and "folds" in existing.data.params:  # a resumed study keeps its folds
        plan = replace(plan, folds=int(existing.data.params["folds"]))
    ensure_ray(request.address)
    # Refused before launch: a trial that the cluster cannot place would wait forever.
    check_cluster_request(plan.resources, head_cpus=TRIAL_DRIVER_CPU)
    if not request.resume:  # the folder its Tune experiment goes into
        check_private([ensure_folder(experiment_path.parent, "--storage-path")])
    started = time.time()
    run_id = study_run(request, plan, cache, existing)
    t = request.tracking
    spec = StudySpec(name=plan.name, config=config, cache=cache.path, folds=plan.folds,
                     workdir=request.workdir, tracking=t, experiment=request.experiment,
                     study_run_id=run_id, resources=plan.resources, max_failures=request.max_failures)
    defaults = plan.space.defaults(request.config)
    metric = f"{request.metric}_mean"
    # Trial drivers run on the head node, and so do their folds' Ray Train controllers, which log
    # to MLflow (train/logger.py): the tracking store need only be reachable there.
    driver = tune.PlacementGroupFactory([{"CPU": TRIAL_DRIVER_CPU, HEAD_RESOURCE: 0.001}])
    trainable = tune.with_resources(tune.with_parameters(cv_trial, spec=spec), driver)
    try:
        if request.resume:
            tuner = tune.Tuner.restore(str(experiment_path), trainable, resume_unfinished=True,
                                       restart_errored=False)
        else:
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=searcher(request, plan, metric, defaults, optuna_db),
                    scheduler=scheduler(request, plan, metric), num_samples=plan.trials,
                    max_concurrent_trials=plan.concurrent),
                run_config=tune.RunConfig(name=plan.name, storage_path=str(experiment_path.parent),
                                          callbacks=[study_callback(spec)], verbose=1))
        with watch(Target(tracking=t, experiment=request.experiment, model=plan.model, epochs=plan.epochs,
                          study=plan.name, trials=plan.trials, folds=plan.folds,
                          concurrent=plan.concurrent)), handler_while(signal.SIGINT):
            grid = tuner.fit()
    except KeyboardInterrupt:
        tracking.end_run(t, run_id, "KILLED")
        raise
    unfinished = unfinished_trials(experiment_path, plan.trials)
    if unfinished:
        tracking.end_run(t, run_id, "KILLED")
        raise StudyInterrupted(f"study {plan.name} interrupted with {unfinished} unfinished trial(s); "
                               f"continue it with: mrisr-ray tune --resume --name {plan.name}")
    outcomes = outcomes_of(grid, plan.space, defaults, plan.folds)
    for outcome in outcomes:
        # A trial that failed before its first report has no id here; the callback closed it.
        if outcome.state != TrialState.COMPLETE and outcome.trial_id:
            runs.close_trial(t, request.experiment, plan.name, outcome.trial_id, outcome.state)
    return finish_study(request, plan, run_id, outcomes, optuna_db, started)
