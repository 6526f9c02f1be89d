"""Which generators `predict` applies: a generator file, a training run's best generator, or a
study's best trial (its K fold generators, averaged, as `report` does)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from mrisr_ray import runs
from mrisr_ray.config import Config
from mrisr_ray.errors import UserInputError
from mrisr_ray.registry import model_spec
from mrisr_ray.runs import RunKind
from mrisr_ray.tracking import Tracking, existing_run
from mrisr_ray.train.checkpoint import GeneratorFile, TrainingData, read_generator

TRAINING_KINDS = (RunKind.TRAIN.value, RunKind.FOLD.value, RunKind.RETRAIN.value)


@dataclass
class Model:
    """One generator, or the K fold generators of a study whose outputs are averaged."""

    config: Config
    generators: list[nn.Module]
    data: TrainingData | None  # None: a checkpoint's per-epoch file, or a run older than it
    source: str  # how it was chosen, for the console: "study NAME, trial T (K fold models, …)"

    @property
    def label(self) -> str:
        return model_spec(self.config.model).label


def from_files(files: list[GeneratorFile], names: list[str], source: str) -> Model:
    """`names`: each file's, for errors."""
    models = sorted({f.model for f in files})
    if len(models) > 1:
        raise UserInputError(f"{source}: its generators are of different models ({', '.join(models)})")
    generators = [f.module(name) for f, name in zip(files, names, strict=True)]
    return Model(config=files[0].config, generators=generators, data=files[0].data, source=source)


def from_checkpoint(path: Path) -> Model:
    """A generator file (`best_generator.pt`, or a checkpoint's `generator.pt`)."""
    if not Path(path).is_file():
        raise UserInputError(f"--checkpoint {path}: file not found")
    return from_files([read_generator(path)], [str(path)], f"checkpoint {path}")


def run_files(tracking: Tracking, run_ids: list[str],
              config: Config) -> tuple[list[GeneratorFile], list[str]]:
    """The runs' generator files and their names (`config`: the runs' own, which reads files
    logged before generator files described themselves)."""
    files, names = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in run_ids:
            try:
                path = runs.download_generator(tracking, run_id, Path(tmp) / run_id)
            except Exception:  # MLflow raises several types for a missing artifact
                raise UserInputError(f"run {run_id} in {tracking.uri} has no {runs.GENERATOR_ARTIFACT} "
                                     "(not a finished training run)") from None
            files.append(read_generator(path, legacy_config=config))
            names.append(f"run {run_id}'s {runs.GENERATOR_ARTIFACT}")
    return files, names


def from_run(tracking: Tracking, run_id: str) -> Model:
    """A training run's best generator (`train`, a fold of a study, or a retraining)."""
    if not tracking.exists():
        raise UserInputError(f"--run {run_id}: {tracking.uri} holds no runs")
    kind = existing_run(tracking, run_id, f"--run {run_id}").data.tags.get(runs.KIND)
    if kind not in TRAINING_KINDS:
        raise UserInputError(f"--run {run_id}: a {kind or 'non-mrisr-ray'} run, not a training run "
                             "(for a study: --study NAME)")
    files, names = run_files(tracking, [run_id], runs.load_run_config(tracking, run_id))
    return from_files(files, names, f"run {run_id}")


def from_study(tracking: Tracking, experiment: str, name: str | None, model: str | None = None) -> Model:
    """The best trial of study `name` (None: the latest finished study of `model`): its fold
    generators, each at its best validation epoch."""
    found = runs.study_runs(tracking, experiment, study=name, model=model, finished=True) \
        if tracking.exists() else []
    if not found:
        which = f"no finished study named {name!r}" if name else f"no finished {model} study"
        raise UserInputError(f"{which} in {tracking.uri} (experiment {experiment!r}); run `mrisr-ray tune` "
                             "first, or pass --run RUN_ID or --checkpoint FILE")
    study = found[0]  # newest first
    trial = runs.best_trial(tracking, experiment, study)
    study_name, best = study.data.tags[runs.STUDY], trial.data.tags[runs.TRIAL_ID]
    folds = runs.fold_runs(tracking, experiment, study_name, best, finished=True)
    files, names = run_files(tracking, [run.info.run_id for run in folds],
                             runs.load_run_config(tracking, trial.info.run_id))
    latest = "" if name else f"the latest finished {model} study, "
    return from_files(files, names, f"{latest}study {study_name}, trial {best} ({len(files)} fold models, "
                      "averaged)")
