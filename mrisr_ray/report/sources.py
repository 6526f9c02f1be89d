"""Where a report's models come from: a finished study's best trial in MLflow (its K fold
generators, each at its best validation epoch) or a configuration to retrain on all non-test
subjects."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch import nn

from mrisr_ray.config import Config, from_dict, load_config
from mrisr_ray.errors import UserInputError
from mrisr_ray.models import CircleGenerator, CPCEGenerator
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
    default_cv: tuple[float, float, float, float] | None = None  # paper-default trial: mean/SD
    protocol_hash: str | None = None
    perceptual: str | None = None


def generator_for(config: Config) -> nn.Module:
    return CPCEGenerator(config.cpce) if config.model == "cpce" else CircleGenerator(config.circle)


def load_generator(config: Config, state_path: Path) -> nn.Module:
    net = generator_for(config)
    net.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
    return net.eval()


def find_study(tracking: Tracking, experiment: str, model: str, name: str | None):
    """The named study, or the most recent finished study of `model`."""
    how = (f"run `mrisr-ray tune --model {model} --data CACHE` first (or pass --{model} CONFIG "
           "--retrain)")
    if not tracking.exists():
        raise UserInputError(f"no finished {model} study: {tracking.uri} holds no runs; {how}")
    client = tracking.client()
    experiment_id = tracking.experiment_id(experiment)
    query = f"tags.kind = 'study' and tags.model = '{model}' and attributes.status = 'FINISHED'"
    if name:
        query += f" and tags.study = '{name}'"
    runs = client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"],
                              max_results=1)
    if not runs:
        which = f"named {name!r}" if name else "finished"
        raise UserInputError(f"no {which} {model} study in {tracking.uri}; {how}")
    return runs[0]


def trial_config(tracking: Tracking, run_id: str) -> Config:
    with tempfile.TemporaryDirectory() as tmp:
        path = tracking.client().download_artifacts(run_id, "config.yaml", tmp)
        return from_dict(yaml.safe_load(Path(path).read_text()))


def cv_scores(runs) -> tuple[list[float], list[float]]:
    ordered = sorted(runs, key=lambda r: int(r.data.tags["fold"]))
    return ([r.data.metrics["best_val_psnr"] for r in ordered],
            [r.data.metrics["best_val_ssim"] for r in ordered])


def from_study(tracking: Tracking, experiment: str, model: str, name: str | None) -> ModelSource:
    """The best trial's fold generators (an ensemble) and its CV scores."""
    study = find_study(tracking, experiment, model, name)
    study_name, best = study.data.tags["study"], study.data.tags.get("best_trial")
    if not best:
        raise UserInputError(f"study {study_name!r} has no trial that finished all folds")
    client = tracking.client()
    experiment_id = tracking.experiment_id(experiment)
    (trial,) = client.search_runs([experiment_id], f"tags.kind = 'trial' and tags.study = '{study_name}' "
                                  f"and tags.trial_id = '{best}'")
    folds = [r for r in client.search_runs(
        [experiment_id], f"tags.kind = 'fold' and tags.trial_id = '{best}' and tags.study = '{study_name}'")
        if r.info.status == "FINISHED"]
    config = trial_config(tracking, trial.info.run_id)
    generators = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in sorted(folds, key=lambda r: int(r.data.tags["fold"])):
            path = client.download_artifacts(run.info.run_id, "best_generator.pt", f"{tmp}/{run.info.run_id}")
            generators.append(load_generator(config, Path(path)))
    psnr, ssim = cv_scores(folds)
    default_cv = None
    defaults = client.search_runs([experiment_id], f"tags.kind = 'trial' and tags.study = '{study_name}' "
                                  "and tags.default_config = 'true'")
    if defaults:
        m = defaults[0].data.metrics
        if "psnr_mean" in m:
            default_cv = (m["psnr_mean"], m.get("psnr_sd", 0.0), m["ssim_mean"], m.get("ssim_sd", 0.0))
    return ModelSource(model=model, config=config, generators=generators,
                       how=f"ensemble (mean output) of the {len(generators)} fold models of study "
                       f"{study_name}, trial {best}, each at its best validation epoch",
                       study=study_name, trial_id=best, fold_psnr=psnr, fold_ssim=ssim,
                       default_cv=default_cv, protocol_hash=study.data.tags.get("protocol_hash"),
                       perceptual=config.loss.perceptual if model == "cpce" else None)


def config_of(tracking: Tracking, experiment: str, model: str, choice: str | None) -> tuple[Config, str]:
    """(config, origin) for --retrain: a YAML file, or a study's best trial."""
    if choice and Path(choice).is_file():
        config = load_config(path=choice)
        if config.model != model:
            raise UserInputError(f"{choice}: is a {config.model} config, given for --{model}")
        return config, f"config {choice}"
    source = from_study(tracking, experiment, model, choice)
    return source.config, f"best configuration of study {source.study} (trial {source.trial_id})"
