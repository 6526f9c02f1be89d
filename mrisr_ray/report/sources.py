"""Where a report's models come from: a finished study's best trial in MLflow (its K fold
generators, each at its best validation epoch) or a configuration to retrain on all non-test
subjects."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mlflow.entities import Run
from torch import nn

from mrisr_ray import runs
from mrisr_ray.config import Config, load_config
from mrisr_ray.errors import UserInputError
from mrisr_ray.registry import model_spec
from mrisr_ray.tracking import Tracking


@dataclass
class ModelSource:
    """The generators that represent one model in the report."""

    model: str
    config: Config
    generators: list[nn.Module]  # K fold models (ensemble) or one retrained model
    how: str  # "fold ensemble of study X, trial Y" or "retrained on all non-test subjects"
    study: str | None = None
    trial_id: str | None = None
    fold_psnr: list[float] = field(default_factory=list)  # CV of the best trial, per fold
    fold_ssim: list[float] = field(default_factory=list)
    # Trial 0 (the base configuration): PSNR mean, SD, SSIM mean, SD, and the folds it trained
    # (fewer than the study's when ASHA stopped it).
    default_cv: tuple[float, float, float, float, int] | None = None
    default_config: Config | None = None  # trial 0's configuration
    protocol_hash: str | None = None


def load_generator(config: Config, state_path: Path) -> nn.Module:
    net = model_spec(config.model).generator(config)
    net.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
    return net.eval()


def finished_study(tracking: Tracking, experiment: str, model: str, name: str | None) -> Run:
    """The named study, or the most recent finished study of `model`."""
    how = (f"run `mrisr-ray tune --model {model} --data CACHE` first (or pass --{model} CONFIG "
           "--retrain)")
    if not tracking.exists():
        raise UserInputError(f"no finished {model} study: {tracking.uri} holds no runs; {how}")
    study = runs.find_study(tracking, experiment, model, name)
    if study is None:
        which = f"named {name!r}" if name else "finished"
        raise UserInputError(f"no {which} {model} study in {tracking.uri}; {how}")
    return study


def from_study(tracking: Tracking, experiment: str, model: str, name: str | None) -> ModelSource:
    """The best trial's fold generators (an ensemble) and its CV scores."""
    study = finished_study(tracking, experiment, model, name)
    study_name, best = study.data.tags[runs.STUDY], study.data.tags.get(runs.BEST_TRIAL)
    if not best:
        raise UserInputError(f"study {study_name!r} has no trial that finished all folds")
    (trial,) = runs.trial_runs(tracking, experiment, study_name, best)
    folds = runs.fold_runs(tracking, experiment, study_name, best, finished=True)
    config = runs.load_run_config(tracking, trial.info.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        generators = [load_generator(config, runs.download_generator(tracking, run.info.run_id,
                                                                     Path(tmp) / run.info.run_id))
                      for run in folds]
    scores = [runs.best_scores(run) for run in folds]
    default_cv, default_config = None, None
    default = runs.default_trial(tracking, experiment, study_name)
    if default is not None and "psnr_mean" in default.data.metrics:
        m = default.data.metrics
        default_cv = (m["psnr_mean"], m.get("psnr_sd", 0.0), m["ssim_mean"], m.get("ssim_sd", 0.0),
                      int(m.get("folds_done", len(folds))))
        default_config = runs.load_run_config(tracking, default.info.run_id)
    return ModelSource(model=model, config=config, generators=generators,
                       how=f"ensemble (mean output) of the {len(generators)} fold models of study "
                       f"{study_name}, trial {best}, each at its best validation epoch",
                       study=study_name, trial_id=best, fold_psnr=[p for p, _ in scores],
                       fold_ssim=[s for _, s in scores], default_cv=default_cv,
                       default_config=default_config,
                       protocol_hash=study.data.tags.get(runs.PROTOCOL_HASH))


def config_of(tracking: Tracking, experiment: str, model: str, choice: str | None) -> tuple[Config, str]:
    """(config, origin) for --retrain: a YAML file, or a study's best trial."""
    if choice and Path(choice).is_file():
        config = load_config(path=choice)
        if config.model != model:
            raise UserInputError(f"{choice}: is a {config.model} config, given for --{model}")
        return config, f"config {choice}"
    source = from_study(tracking, experiment, model, choice)
    return source.config, f"best configuration of study {source.study} (trial {source.trial_id})"
