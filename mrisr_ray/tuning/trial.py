"""One Tune trial = one configuration trained on the K folds one after another, each fold a
`TorchTrainer` run. After each fold it reports the running mean over the folds done, so ASHA can
stop weak trials early.

Resume: a trial restarted by `Tuner.restore` skips the folds whose MLflow run already finished
and continues an unfinished fold from its Ray Train checkpoint (same MLflow run, same Ray run
name `<trial id>-fold<k>`), so no finished fold is trained twice.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrisr_ray import runs, tracking
from mrisr_ray.config import Config, with_overrides
from mrisr_ray.data.cache import Cache
from mrisr_ray.errors import RunFailed
from mrisr_ray.metrics import sample_sd
from mrisr_ray.resources import Resources
from mrisr_ray.runs import RunKind, TrialRef, TrialState
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.run import TrainRequest, train
from mrisr_ray.workdir import Workdir


@dataclass(frozen=True)
class StudySpec:
    """What every trial needs; passed to the trainable with `tune.with_parameters`."""

    name: str
    config: Config  # the base configuration, its VGG weights resolved on the driver
    cache: Path
    folds: int
    workdir: Workdir
    tracking: Tracking
    experiment: str
    study_run_id: str
    resources: Resources  # of each fold training
    max_failures: int = 1  # of each fold training


def fold_scores(values: dict[int, tuple[float, float]]) -> dict[str, float]:
    """Mean and SD over the folds done of the best validation PSNR and SSIM."""
    psnr = np.array([v[0] for v in values.values()])
    ssim = np.array([v[1] for v in values.values()])
    return {"psnr_mean": float(psnr.mean()), "psnr_sd": sample_sd(psnr),
            "ssim_mean": float(ssim.mean()), "ssim_sd": sample_sd(ssim), "folds_done": len(values)}


def headline_metrics(summary: dict[str, float]) -> dict[str, float]:
    """A trial's MLflow metrics: the headline names (runs.py) for Tune's `<metric>_mean`/`_sd`."""
    return {runs.PSNR: summary["psnr_mean"], runs.PSNR_SD: summary["psnr_sd"],
            runs.SSIM: summary["ssim_mean"], runs.SSIM_SD: summary["ssim_sd"],
            "folds_done": summary["folds_done"]}


def trial_run(spec: StudySpec, trial_id: str, number: int | None, params: dict, config: Config) -> str:
    """The trial's MLflow run (a child of the study run), created once."""
    t = spec.tracking
    existing = runs.trial_runs(t, spec.experiment, spec.name, trial_id)
    if existing:
        return existing[0].info.run_id
    name = runs.display_name(config.model, number, trial_id=trial_id)
    run_id = tracking.start_run(t, spec.experiment, name,
                                runs.trial_tags(spec.name, trial_id, config.model, Cache.open(spec.cache),
                                                number),
                                parent_run_id=spec.study_run_id)
    runs.log_config(t, run_id, config, search=params)
    return run_id


def remove_checkpoints(storage: Path) -> None:
    """Disk economy: once a fold ends only its best generator stays (`best_generator.pt`); Ray's
    checkpoint folders and its checkpoint-manager snapshot (which names them) go."""
    for path in storage.glob("checkpoint_*"):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def cv_trial(params: dict, spec: StudySpec) -> None:
    """The Tune function trainable: train the K folds of one configuration, report after each."""
    import ray.tune

    trial_id = ray.tune.get_context().get_trial_id()
    params = dict(params)
    number = params.pop(runs.TRIAL_NUMBER, None)  # None: a study started before version 0.2
    config = with_overrides(spec.config, params)
    t = spec.tracking
    run_id = trial_run(spec, trial_id, number, params, config)
    trial = TrialRef(study=spec.name, trial_id=trial_id, run_id=run_id, number=number,
                     searched=tuple(params))
    earlier = {int(run.data.tags[runs.FOLD]): run
               for run in runs.fold_runs(t, spec.experiment, spec.name, trial_id)}
    scores: dict[int, tuple[float, float]] = {}
    reported = False
    try:
        for k in range(spec.folds):
            previous = earlier.get(k)
            if previous is not None and previous.info.status == "FINISHED":
                scores[k] = runs.best_scores(previous)
                continue
            result = train(TrainRequest(
                config=config, cache=spec.cache, workdir=spec.workdir, tracking=t, fold=k,
                resources=spec.resources, device="cuda" if spec.resources.use_gpu else "cpu",
                experiment=spec.experiment, resume_run_id=previous.info.run_id if previous else None,
                check_local=False, kind=RunKind.FOLD, trial=trial, max_failures=spec.max_failures))
            remove_checkpoints(result.storage)
            scores[k] = (result.best_psnr, result.best_ssim)
            tracking.log_metrics(t, run_id, {"fold_psnr": result.best_psnr,
                                             "fold_ssim": result.best_ssim}, step=k)
            summary = fold_scores(scores)
            tracking.log_metrics(t, run_id, headline_metrics(summary), step=k + 1)
            # Logged before reporting: if ASHA stops the trial, nothing after this runs.
            if len(scores) == spec.folds:
                runs.end_trial(t, run_id, TrialState.COMPLETE)
            ray.tune.report(summary)
            reported = True
        if not reported:  # every fold had finished before a restart
            runs.end_trial(t, run_id, TrialState.COMPLETE)
            ray.tune.report(fold_scores(scores))
    except RunFailed:
        runs.end_trial(t, run_id, TrialState.FAILED)
        raise
