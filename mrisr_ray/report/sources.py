"""Where a report's models come from: a finished study's best trial in MLflow (its K fold
generators, each at its best validation epoch) or a configuration to retrain on all non-test
subjects."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run
from torch import nn

from mrisr_ray import runs
from mrisr_ray.config import Config, load_config
from mrisr_ray.data.cache import Cache
from mrisr_ray.errors import UserInputError
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.checkpoint import read_generator


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


def load_generator(config: Config, state_path: Path) -> nn.Module:
    """The generator file of a run whose configuration is `config` (which also reads an older
    run's bare state_dict), as `predict` loads it."""
    generator = read_generator(state_path, legacy_config=config)
    if generator.model != config.model:
        raise UserInputError(f"{state_path}: holds a {generator.model} generator, its run a {config.model}")
    return generator.module(state_path)


def seen_subjects(tracking: Tracking, folds: list[Run]) -> set[str] | None:
    """Subjects that trained or selected these fold models, from the splits.json each fold run
    logged (None: a run logged none)."""
    seen: set[str] = set()
    for run in folds:
        splits = runs.logged_splits(tracking, run.info.run_id)
        if splits is None:
            return None
        seen |= splits.seen_by([int(run.data.tags[runs.FOLD])])
    return seen


def finished_study(tracking: Tracking, experiment: str, model: str, name: str | None,
                   cache: Cache) -> Run:
    """The named study, or the most recent finished study of `model` made on `cache` (none, in a
    store older than the data digests: the most recent untagged one; `check_unseen` decides)."""
    how = (f"run `mrisr-ray tune --model {model} --data {cache.path}` first (or pass --{model} CONFIG "
           "--retrain)")
    if not tracking.exists():
        raise UserInputError(f"no finished {model} study: {tracking.uri} holds no runs; {how}")
    found = runs.study_runs(tracking, experiment, study=name, model=model, finished=True)
    if name is None:
        matching = [r for r in found if runs.matches(r, cache)]
        usable = matching or [r for r in found if runs.DATA_DIGEST not in r.data.tags]
        if found and not usable:
            others = ", ".join(r.data.tags[runs.STUDY] for r in found[:3])
            raise UserInputError(f"no finished {model} study was tuned on {cache.path} (its scans or "
                                 f"splits differ from those of {others}); {how}")
        found = usable
    if not found:
        which = f"named {name!r}" if name else "finished"
        raise UserInputError(f"no {which} {model} study in {tracking.uri}; {how}")
    return found[0]


def check_unseen(tracking: Tracking, study: Run, folds: list[Run], cache: Cache) -> None:
    """Refuse fold models that trained or validated on a test subject of `cache`, or (tagged
    stores) that were tuned on another cache at all."""
    name = study.data.tags[runs.STUDY]
    seen = seen_subjects(tracking, folds)
    if seen is None and not runs.matches(study, cache):
        raise UserInputError(f"study {name!r}: its fold runs logged no splits.json, so nothing "
                             f"proves they never trained on a test subject of {cache.path}")
    overlap = sorted((seen or set()) & set(cache.splits.test))
    if overlap:
        raise UserInputError(f"study {name!r} trained on test subject(s) {', '.join(overlap)} of "
                             f"{cache.path}: report on the cache it was tuned on")
    tagged = runs.DATA_DIGEST in study.data.tags
    if tagged and not runs.matches(study, cache):
        raise UserInputError(f"study {name!r} was tuned on other scans or splits than {cache.path}'s "
                             f"({study.data.tags.get('data')}): report on the cache it was tuned on")
    protocol = study.data.tags.get(runs.PROTOCOL_HASH)
    if protocol != cache.manifest.protocol_hash:
        raise UserInputError(f"{cache.path}: data protocol {cache.manifest.protocol_hash} differs "
                             f"from study {name}'s {protocol}")


def best_of_study(tracking: Tracking, experiment: str, model: str, name: str | None,
                  cache: Cache) -> tuple[Run, Run, list[Run]]:
    """(study, best trial, its fold runs) of the study `finished_study` picks, checked to have never
    seen a test subject of `cache` (`check_unseen`)."""
    study = finished_study(tracking, experiment, model, name, cache)
    trial = runs.best_trial(tracking, experiment, study)
    folds = runs.fold_runs(tracking, experiment, study.data.tags[runs.STUDY], trial.data.tags[runs.TRIAL_ID],
                           finished=True)
    check_unseen(tracking, study, folds, cache)
    return study, trial, folds


def from_study(tracking: Tracking, experiment: str, model: str, name: str | None,
               cache: Cache) -> ModelSource:
    """The best trial's fold generators (an ensemble) and its CV scores, checked to have never
    seen a test subject of `cache`."""
    study, trial, folds = best_of_study(tracking, experiment, model, name, cache)
    study_name, best = study.data.tags[runs.STUDY], trial.data.tags[runs.TRIAL_ID]
    config = runs.load_run_config(tracking, trial.info.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        generators = [load_generator(config, runs.download_generator(tracking, run.info.run_id,
                                                                     Path(tmp) / run.info.run_id))
                      for run in folds]
    scores = [runs.best_scores(run) for run in folds]
    default_cv, default_config = None, None
    default = runs.default_trial(tracking, experiment, study_name)
    if default is not None and runs.headline(default, runs.PSNR) is not None:
        psnr, ssim, psnr_sd, ssim_sd = (runs.headline(default, name) for name in
                                        (runs.PSNR, runs.SSIM, runs.PSNR_SD, runs.SSIM_SD))
        default_cv = (psnr, psnr_sd or 0.0, ssim, ssim_sd or 0.0,
                      int(default.data.metrics.get("folds_done", len(folds))))
        default_config = runs.load_run_config(tracking, default.info.run_id)
    return ModelSource(model=model, config=config, generators=generators,
                       how=f"ensemble (mean output) of the {len(generators)} fold models of study "
                       f"{study_name}, trial {best}, each at its best validation epoch",
                       study=study_name, trial_id=best, fold_psnr=[p for p, _ in scores],
                       fold_ssim=[s for _, s in scores], default_cv=default_cv,
                       default_config=default_config)


def config_of(tracking: Tracking, experiment: str, model: str, choice: str | None,
              cache: Cache) -> tuple[Config, str]:
    """(config, origin) for --retrain: a YAML file, or a study's best trial, checked as the fold
    ensemble is (`best_of_study`): a study that selected its configuration on a test subject of
    `cache` would leak that subject into the retrained model."""
    if choice and Path(choice).is_file():
        config = load_config(path=choice)
        if config.model != model:
            raise UserInputError(f"{choice}: is a {config.model} config, given for --{model}")
        return config, f"config {choice}"
    study, trial, _ = best_of_study(tracking, experiment, model, choice, cache)
    name, best = study.data.tags[runs.STUDY], trial.data.tags[runs.TRIAL_ID]
    config = runs.load_run_config(tracking, trial.info.run_id)
    return config, f"best configuration of study {name} (trial {best})"
