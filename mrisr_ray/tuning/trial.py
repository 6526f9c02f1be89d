"""One Tune trial = one configuration trained on the K folds one after another, each fold a
`TorchTrainer` run (design.md §5). After each fold it reports the running mean over the folds
done, so ASHA can stop weak trials early.

Resume: a trial restarted by `Tuner.restore` skips the folds whose MLflow run already finished
and continues an unfinished fold from its Ray Train checkpoint (same MLflow run, same Ray run
name `<trial id>-fold<k>`), so no finished fold is trained twice.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrisr_ray import tracking
from mrisr_ray.config import config_yaml, flatten, from_dict, with_overrides
from mrisr_ray.errors import RunFailed
from mrisr_ray.metrics import sample_sd
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.run import TrainRequest, train
from mrisr_ray.workdir import Workdir


@dataclass
class StudySpec:
    """What every trial needs; passed to the trainable with `tune.with_parameters`."""

    name: str
    model: str
    base_config: dict
    cache: str
    folds: int
    workdir: str
    tracking_uri: str
    artifact_root: str | None
    experiment: str
    study_run_id: str
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    vgg_weights: str | None = None

    @property
    def tracking(self) -> Tracking:
        root = Path(self.artifact_root) if self.artifact_root else None
        return Tracking(uri=self.tracking_uri, artifact_root=root)


def fold_scores(values: dict[int, tuple[float, float]]) -> dict[str, float]:
    """Mean and SD over the folds done of the best validation PSNR and SSIM."""
    psnr = np.array([v[0] for v in values.values()])
    ssim = np.array([v[1] for v in values.values()])
    return {"psnr_mean": float(psnr.mean()), "psnr_sd": sample_sd(psnr),
            "ssim_mean": float(ssim.mean()), "ssim_sd": sample_sd(ssim), "folds_done": len(values)}


def runs_of(t: Tracking, experiment: str, study: str, kind: str, trial_id: str) -> list:
    """MLflow runs of one trial of a study: kind "trial" (one) or "fold" (one per fold)."""
    query = f"tags.study = '{study}' and tags.kind = '{kind}' and tags.trial_id = '{trial_id}'"
    return t.client().search_runs([t.experiment_id(experiment)], query)


def trial_run(spec: StudySpec, trial_id: str, params: dict, config) -> str:
    """The trial's MLflow run (a child of the study run), created once."""
    existing = runs_of(spec.tracking, spec.experiment, spec.name, "trial", trial_id)
    if existing:
        return existing[0].info.run_id
    t = spec.tracking
    run_id = tracking.start_run(t, spec.experiment, f"{spec.name}-{trial_id}",
                                {"kind": "trial", "study": spec.name, "trial_id": trial_id,
                                 "model": spec.model, "state": "running"},
                                parent_run_id=spec.study_run_id)
    tracking.log_params(t, run_id, {**flatten(config), **{f"search.{k}": v for k, v in params.items()}})
    tracking.log_bytes(t, run_id, config_yaml(config).encode(), "config.yaml")
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
    config = with_overrides(from_dict(spec.base_config), params)
    t = spec.tracking
    run_id = trial_run(spec, trial_id, params, config)
    earlier = {r.data.tags["fold"]: r
               for r in runs_of(t, spec.experiment, spec.name, "fold", trial_id)}
    scores: dict[int, tuple[float, float]] = {}
    reported = False
    try:
        for k in range(spec.folds):
            previous = earlier.get(str(k))
            if previous is not None and previous.info.status == "FINISHED":
                metrics = previous.data.metrics
                scores[k] = (metrics["best_val_psnr"], metrics["best_val_ssim"])
                continue
            result = train(TrainRequest(
                config=config, cache=Path(spec.cache), workdir=Workdir(Path(spec.workdir)),
                tracking=t, fold=k, workers=spec.workers_per_trial,
                device="cuda" if spec.gpus_per_worker > 0 else "cpu", experiment=spec.experiment,
                vgg_weights=spec.vgg_weights,
                resume_run_id=previous.info.run_id if previous is not None else None,
                cpus_per_worker=spec.cpus_per_worker, gpus_per_worker=spec.gpus_per_worker,
                parent_run_id=run_id, run_name=f"{trial_id}-fold{k}", check_local=False,
                extra_tags={"kind": "fold", "study": spec.name, "trial_id": trial_id}))
            remove_checkpoints(result.storage)
            scores[k] = (result.best_psnr, result.best_ssim)
            tracking.log_metrics(t, run_id, {"fold_psnr": result.best_psnr,
                                             "fold_ssim": result.best_ssim}, step=k)
            summary = fold_scores(scores)
            tracking.log_metrics(t, run_id, summary, step=k + 1)
            # Logged before reporting: if ASHA stops the trial, nothing after this runs.
            if len(scores) == spec.folds:
                tracking.set_tags(t, run_id, {"state": "complete"})
                tracking.end_run(t, run_id, "FINISHED")
            ray.tune.report(summary)
            reported = True
        if not reported:  # every fold had finished before a restart
            tracking.set_tags(t, run_id, {"state": "complete"})
            tracking.end_run(t, run_id, "FINISHED")
            ray.tune.report(fold_scores(scores))
    except RunFailed:
        tracking.set_tags(t, run_id, {"state": "failed"})
        tracking.end_run(t, run_id, "FAILED")
        raise
