"""The MLflow run schema of mrisr-ray: the kinds of runs, the tags each one carries, and the
queries that find them again. Every tag name and every filter string lives here; `tracking.py`
does the MLflow calls.

    study ▸ trial ▸ fold    `tune`: a study run, a run per configuration, a training per CV fold
    train                   `train`
    retrain, report         `report --retrain` trainings, and the report itself

The names and values below are those that existing stores hold: changing one hides older runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from mlflow.entities import Run

from mrisr_ray import tracking
from mrisr_ray.config import Config, config_yaml, from_dict, model_params, perceptual_mode
from mrisr_ray.deviations import deviations
from mrisr_ray.tracking import Tracking

if TYPE_CHECKING:
    from mrisr_ray.data.cache import Cache
    from mrisr_ray.data.splits import Splits
    from mrisr_ray.resources import Resources

# Tag names.
KIND = "kind"
MODEL = "model"
STUDY = "study"
TRIAL_ID = "trial_id"
FOLD = "fold"
STATE = "state"  # of a trial run
BEST_TRIAL = "best_trial"  # of a finished study run
DEFAULT_CONFIG = "default_config"  # "true" on the trial run of the study's base configuration
PROTOCOL_HASH = "protocol_hash"
DATA_DIGEST, SPLITS_DIGEST = "data_digest", "splits_digest"  # of the cache (full SHA-256 hex)
BASE_CONFIG_SHA256, SPACE_SHA256 = "base_config_sha256", "search_space_sha256"  # of a study
RESUMED_FROM_EPOCH, RESUMED_GENERATOR = "resumed_from_epoch", "resumed_generator_sha256"
GIT_COMMIT = "git_commit"  # of every run that is not a trial: the code that made it
RAY_RUN_NAME = "ray_run_name"  # of a training run: the Ray Train run it resumes from
RAY_STORAGE = "ray_storage_path"  # the folder of Ray's checkpoints and Tune results (--storage-path)
DRIVER = "driver"  # of a training run: "<machine> <pid> <start>" of the process driving it (`Driver`)

ALL_TRAIN = "all-train"  # the `fold` of a training on every non-test subject
CONFIG_ARTIFACT = "config.yaml"
SPLITS_ARTIFACT = "splits.json"  # the cache's splits, logged on every training and study run
GENERATOR_ARTIFACT = "best_generator.pt"  # the best epoch's generator file (train/checkpoint.py:
# {model, config, state_dict, data}; runs logged before that hold a bare state_dict)
# Headline metrics, on every run that has a score (one column covers the tree in the MLflow UI):
# a training run's best epoch, a trial's mean over its folds, a study's best trial's mean; `_sd`
# where aggregated. Per-epoch `val_psnr`/`val_ssim` (and the LR input's `val_input_*`) stay on
# training runs.
PSNR, SSIM, PSNR_SD, SSIM_SD = "psnr", "ssim", "psnr_sd", "ssim_sd"
INPUT_PSNR, INPUT_SSIM = "input_psnr", "input_ssim"  # the LR input's, on the same slices
# The names that stores written before version 0.2 hold instead (read, never written).
OLD_NAMES = {PSNR: ("best_val_psnr", "psnr_mean", "best_psnr_mean"),
             SSIM: ("best_val_ssim", "ssim_mean", "best_ssim_mean"),
             PSNR_SD: ("psnr_sd", "best_psnr_sd"), SSIM_SD: ("ssim_sd", "best_ssim_sd")}
# The columns `mrisr-ray ui` opens the runs table with.
TABLE_COLUMNS = [f"metrics.{m}" for m in (PSNR, PSNR_SD, SSIM, SSIM_SD)] + \
    [f"tags.{t}" for t in ("kind", "model", "searched")]
TRIAL_NUMBER = "trial_number"  # Optuna's trial number (t00: the base configuration)
SEARCHED = "searched"  # of a trial or fold run: the config keys the search varied


class RunKind(str, Enum):
    TRAIN = "train"  # `mrisr-ray train`
    FOLD = "fold"  # one fold's training inside a tune trial
    TRIAL = "trial"  # one configuration of a study
    STUDY = "study"  # `mrisr-ray tune`
    RETRAIN = "retrain"  # `report --retrain`: trained on every non-test subject
    REPORT = "report"

    def __str__(self) -> str:
        return self.value


class TrialState(str, Enum):
    """Why a trial run ended (its MLflow status cannot tell pruned from killed by the user)."""

    RUNNING = "running"
    COMPLETE = "complete"  # every fold trained
    PRUNED = "pruned"  # ASHA stopped it after some folds
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    @property
    def status(self) -> str:
        """The MLflow run status of a trial that ended in this state."""
        return {"running": "RUNNING", "complete": "FINISHED", "pruned": "KILLED",
                "failed": "FAILED"}[self.value]


@dataclass(frozen=True)
class TrialRef:
    """The tune trial that a fold training belongs to."""

    study: str
    trial_id: str
    run_id: str  # the trial's MLflow run, parent of its fold runs
    number: int | None = None  # Optuna's trial number
    searched: tuple[str, ...] = ()  # the config keys the search varied


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def data_tags(cache: Cache) -> dict[str, str]:
    """Which scans and which splits: on every run, so that a report finds only models whose
    training never saw its test subjects."""
    return {PROTOCOL_HASH: cache.manifest.protocol_hash, DATA_DIGEST: cache.manifest.data_digest,
            SPLITS_DIGEST: cache.splits.digest()}


def _provenance_tags(cache: Cache) -> dict[str, str]:
    """Which data and which code: on every run that is not a trial."""
    return {**data_tags(cache), "data": str(cache.path), GIT_COMMIT: git_commit()}


def matches(run: Run, cache: Cache) -> bool:
    """The run was made on this cache: same protocol, scans and splits."""
    return all(run.data.tags.get(k) == v for k, v in data_tags(cache).items())


def study_tags(name: str, model: str, cache: Cache, metric: str, base_config: str,
               space_sha256: str) -> dict[str, str]:
    """`base_config`: the base configuration's YAML; `space_sha256`: the search space file's."""
    return {KIND: RunKind.STUDY.value, STUDY: name, MODEL: model, "metric": metric,
            BASE_CONFIG_SHA256: sha256_text(base_config), SPACE_SHA256: space_sha256,
            **_provenance_tags(cache)}


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def trial_tags(study: str, trial_id: str, model: str, cache: Cache,
               trial_number: int | None = None) -> dict[str, str]:
    number = {} if trial_number is None else {TRIAL_NUMBER: str(trial_number)}
    return {KIND: RunKind.TRIAL.value, STUDY: study, TRIAL_ID: trial_id, MODEL: model,
            STATE: TrialState.RUNNING.value, **number, **data_tags(cache)}


def training_tags(kind: RunKind, config: Config, cache: Cache, fold: int | None, ray_storage: Path,
                  ray_run_name: str, trial: TrialRef | None = None) -> dict[str, str]:
    """A train, fold or retrain run (`fold` None: trained on every non-test subject)."""
    tags = {
        KIND: kind.value,
        MODEL: config.model,
        FOLD: ALL_TRAIN if fold is None else str(fold),
        **_provenance_tags(cache),
        "data_origin": "synthetic" if "synthetic" in cache.manifest.origin else "ixi",
        "deviations": deviations(config),
        "perceptual": perceptual_mode(config) or "n/a",
        "seed": str(config.train.seed),
        "split_seed": str(cache.splits.seed),
        RAY_STORAGE: str(ray_storage),
        RAY_RUN_NAME: ray_run_name,
    }
    if trial is not None:
        tags.update({STUDY: trial.study, TRIAL_ID: trial.trial_id})
        if trial.number is not None:
            tags[TRIAL_NUMBER] = str(trial.number)
        if trial.searched:
            tags[SEARCHED] = ", ".join(sorted(trial.searched))
    return tags


def resource_tags(resources: Resources) -> dict[str, str]:
    """Set on every start of a training run: a resumed run may run elsewhere."""
    return {"device": "cuda" if resources.use_gpu else "cpu", "workers": str(resources.workers)}


@dataclass(frozen=True)
class Driver:
    """The process that drives a training run (it logs to MLflow and ends the run), so that a run
    left RUNNING by a SIGKILL, a crash or a closed terminal can be told from one still training.
    Linux only: without /proc nothing is told."""

    machine: str  # where `pid` names this process (`this_machine`)
    pid: int
    started: str  # its start time in clock ticks after boot, to tell a reused pid ("": no /proc)

    @classmethod
    def this_process(cls) -> Driver:
        stat = process_stat(os.getpid())
        return cls(this_machine(), os.getpid(), stat[1] if stat else "")

    @classmethod
    def of(cls, run: Run) -> Driver | None:
        """The run's driver (None: a run logged before the tag existed, or not a training run)."""
        parts = run.data.tags.get(DRIVER, "").split(" ")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2])

    def tag(self) -> dict[str, str]:
        return {DRIVER: f"{self.machine} {self.pid} {self.started}"}

    def running(self) -> bool | None:
        """Whether the process still runs; None where this process cannot tell: another machine,
        container or boot, no /proc, or another user's process that /proc hides."""
        if not self.started or self.machine != this_machine():
            return None
        try:
            os.kill(self.pid, 0)  # signal 0 checks that the process exists, and sends nothing
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's: perhaps a reused pid, which its start time tells
            pass
        stat = process_stat(self.pid)
        if stat is None:
            return None
        state, started = stat
        return state not in "ZX" and started == self.started  # a zombie has ended, unreaped


def left_running(run: Run) -> bool:
    """A run marked RUNNING whose driver has surely ended (a SIGKILL, a crash, a closed terminal)."""
    driver = Driver.of(run)
    return run.info.status == "RUNNING" and driver is not None and driver.running() is False


def this_machine() -> str:
    """Host name, boot id and pid namespace: a pid names the same process only within all three
    (containers may share a host name, and a reboot reuses pids)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        boot = namespace = ""
    return f"{socket.gethostname()}/{boot}/{namespace}"


def process_stat(pid: int) -> tuple[str, str] | None:
    """`pid`'s state and start time (fields 3 and 22 of /proc/PID/stat, which follow the
    parenthesised command name, itself free to hold spaces), or None where /proc has neither."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], fields[19]


def report_tags(cache: Cache, models: str) -> dict[str, str]:
    return {KIND: RunKind.REPORT.value, "models": models, **_provenance_tags(cache)}


def report_metrics(rows: list[dict]) -> dict[str, float]:
    """A report's table as metrics: `<method>.psnr`, `.psnr_sd`, `.ssim`, `.ssim_sd`,
    `.psnr_gain`, `.ssim_gain`, the method named plainly (`lr_input_zero_filled`, `gan_cpce_dc`)."""
    names = {"psnr_mean": PSNR, "psnr_sd": PSNR_SD, "ssim_mean": SSIM, "ssim_sd": SSIM_SD,
             "psnr_gain": "psnr_gain", "ssim_gain": "ssim_gain"}
    return {f"{re.sub('[^a-z0-9]+', '_', row['method'].lower()).strip('_')}.{name}": row[key]
            for row in rows for key, name in names.items()}


def link_studies(t: Tracking, experiment: str, run_id: str, studies: dict[str, str]) -> None:
    """Tag a report run with the studies (`{model: study name}`) its models came from, and link
    their runs from its description (markdown in the MLflow UI)."""
    links = []
    for model, name in studies.items():
        found = study_runs(t, experiment, study=name)
        if found:
            links.append(f"- {model}: [study {name}](#/experiments/{found[0].info.experiment_id}/runs/"
                         f"{found[0].info.run_id})")
    note = {"mlflow.note.content": "Models from:\n" + "\n".join(links)} if links else {}
    tracking.set_tags(t, run_id, {**{f"study.{model}": name for model, name in studies.items()}, **note})


def _search(t: Tracking, experiment: str, kind: RunKind, tags: dict[str, str | None],
            finished: bool = False) -> list[Run]:
    """Runs of `kind` whose tags have the given values (None: any value), newest first."""
    clauses = [f"tags.{KIND} = '{kind.value}'",
               *(f"tags.{name} = '{value}'" for name, value in tags.items() if value is not None)]
    if finished:
        clauses.append("attributes.status = 'FINISHED'")
    client, experiment_id, found, token = t.client(), t.experiment_id(experiment), [], None
    while True:
        page = client.search_runs([experiment_id], " and ".join(clauses),
                                  order_by=["attributes.start_time DESC"], page_token=token)
        found += page
        token = page.token
        if not token:
            return found


def study_runs(t: Tracking, experiment: str, study: str | None = None, model: str | None = None,
               finished: bool = False) -> list[Run]:
    """Study runs, newest first: by name, by model, only those that finished."""
    return _search(t, experiment, RunKind.STUDY, {STUDY: study, MODEL: model}, finished)


def retrain_runs(t: Tracking, experiment: str, model: str) -> list[Run]:
    """`report --retrain` runs of one model, newest first."""
    return _search(t, experiment, RunKind.RETRAIN, {MODEL: model})


def study_trials(t: Tracking, experiment: str, study: str) -> list[Run]:
    """Every trial run of a study, newest first."""
    return _search(t, experiment, RunKind.TRIAL, {STUDY: study})


def trial_runs(t: Tracking, experiment: str, study: str, trial_id: str) -> list[Run]:
    """The run of one trial (a list: empty before the trial starts)."""
    return _search(t, experiment, RunKind.TRIAL, {STUDY: study, TRIAL_ID: trial_id})


def best_trial(t: Tracking, experiment: str, study: Run) -> Run:
    """The trial run that a finished study chose (its `best_trial` tag)."""
    from mrisr_ray.errors import UserInputError

    name, best = study.data.tags[STUDY], study.data.tags.get(BEST_TRIAL)
    if not best:
        raise UserInputError(f"study {name!r} has no trial that finished all folds")
    (trial,) = trial_runs(t, experiment, name, best)
    return trial


def default_trial(t: Tracking, experiment: str, study: str) -> Run | None:
    """The trial run of the study's base configuration, once the study has finished."""
    found = _search(t, experiment, RunKind.TRIAL, {STUDY: study, DEFAULT_CONFIG: "true"})
    return found[0] if found else None


def fold_runs(t: Tracking, experiment: str, study: str, trial_id: str | None = None,
              finished: bool = False) -> list[Run]:
    """Fold runs of one trial (or of every trial of the study), in fold order."""
    found = _search(t, experiment, RunKind.FOLD, {STUDY: study, TRIAL_ID: trial_id}, finished)
    return sorted(found, key=lambda run: int(run.data.tags[FOLD]))


def headline(run: Run, name: str) -> float | None:
    """The headline metric `name` (PSNR, SSIM, PSNR_SD, SSIM_SD) of a run, under its current or
    its older name; None when the run has none."""
    metrics = run.data.metrics
    for key in (name, *OLD_NAMES[name]):
        if key in metrics:
            return metrics[key]
    return None


def best_scores(run: Run) -> tuple[float, float]:
    """(best validation PSNR, SSIM) of a finished training run that validated."""
    return headline(run, PSNR), headline(run, SSIM)


def display_name(model: str, trial_number: int | None = None, fold: int | None = None,
                 trial_id: str = "") -> str:
    """What the MLflow UI shows: `cpce t03 f1` (display only: Ray names stay unique per study); a
    trial of a study started before version 0.2 has no number and shows its Tune id instead."""
    trial = f"t{trial_number:02d}" if trial_number is not None else trial_id
    return " ".join(part for part in (model, trial, f"f{fold}" if fold is not None else "") if part)


def mark_resumed(t: Tracking, run_id: str, epoch: int, generator_sha256: str) -> None:
    """Which checkpoint a training run continued from: its epoch and its generator's fingerprint."""
    tracking.set_tags(t, run_id, {RESUMED_FROM_EPOCH: epoch, RESUMED_GENERATOR: generator_sha256})


def end_trial(t: Tracking, run_id: str, state: TrialState) -> None:
    tracking.set_tags(t, run_id, {STATE: state.value})
    tracking.end_run(t, run_id, state.status)


def close_trial(t: Tracking, experiment: str, study: str, trial_id: str, state: TrialState) -> None:
    """End the runs of a trial that Tune stopped or lost while they were still open."""
    for run in trial_runs(t, experiment, study, trial_id):
        if run.info.status == "RUNNING":
            end_trial(t, run.info.run_id, state)
        elif run.data.tags.get(STATE) == TrialState.RUNNING:
            tracking.set_tags(t, run.info.run_id, {STATE: state.value})
    for run in fold_runs(t, experiment, study, trial_id):
        if run.info.status == "RUNNING":
            tracking.end_run(t, run.info.run_id, state.status)


def mark_default_trial(t: Tracking, experiment: str, study: str, trial_id: str) -> None:
    for run in trial_runs(t, experiment, study, trial_id):
        tracking.set_tags(t, run.info.run_id, {DEFAULT_CONFIG: "true"})


def set_best_trial(t: Tracking, study_run_id: str, trial_id: str) -> None:
    tracking.set_tags(t, study_run_id, {BEST_TRIAL: trial_id})


def log_config(t: Tracking, run_id: str, config: Config, search: dict | None = None) -> None:
    """The config as params (its model's keys, and `search.<key>` for a trial's sampled values)
    and as the artifact that `load_run_config` reads back."""
    tracking.log_params(t, run_id, {**model_params(config),
                                    **{f"search.{k}": v for k, v in (search or {}).items()}})
    if search:
        tracking.set_tags(t, run_id, {SEARCHED: ", ".join(sorted(search))})
    tracking.log_bytes(t, run_id, config_yaml(config).encode(), CONFIG_ARTIFACT)


def load_run_config(t: Tracking, run_id: str) -> Config:
    with tempfile.TemporaryDirectory() as tmp:
        path = t.client().download_artifacts(run_id, CONFIG_ARTIFACT, tmp)
        return from_dict(yaml.safe_load(Path(path).read_text()))


def logged_splits(t: Tracking, run_id: str) -> Splits | None:
    """The splits.json a training or study run logged (None: it logged none)."""
    from mrisr_ray.data.splits import Splits

    client = t.client()
    if SPLITS_ARTIFACT not in {a.path for a in client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, SPLITS_ARTIFACT, tmp)
        return Splits.from_json(Path(path).read_text(), f"run {run_id}'s {SPLITS_ARTIFACT}")


def download_generator(t: Tracking, run_id: str, folder: Path) -> Path:
    """The run's best generator file, downloaded into `folder` (read it with
    `train.checkpoint.read_generator`)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(t.client().download_artifacts(run_id, GENERATOR_ARTIFACT, str(folder)))
