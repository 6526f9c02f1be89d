"""`mrisr-ray train`: one training run through Ray Train's `TorchTrainer`, logged to MLflow.

Every invocation is a new MLflow run with a unique Ray run name; `resume_run_id` continues a
run from its last checkpoint (Ray restores the checkpoint manager of the same storage path and
name) and ends at the same epoch count. `FailureConfig(max_failures)` restarts a crashed worker
group from the last checkpoint.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mrisr_ray import runs, tracking
from mrisr_ray.config import Config, flatten
from mrisr_ray.data.cache import Cache
from mrisr_ray.errors import Interrupted, RunFailed, UserInputError
from mrisr_ray.models.vgg import with_resolved_weights
from mrisr_ray.progress import Target, Watch, no_watch
from mrisr_ray.ray_runtime import check_cluster_request, check_local_request, check_max_failures, ensure_ray
from mrisr_ray.resources import Resources, resolve_device
from mrisr_ray.runs import RunKind, TrialRef
from mrisr_ray.tracking import Tracking
from mrisr_ray.train import checkpoint
from mrisr_ray.train.checkpoint import GENERATOR_FILE
from mrisr_ray.train.fault_injection import InjectedFailure
from mrisr_ray.train.worker import RESUMED, SAMPLES_FILE, WorkerSpec, train_worker
from mrisr_ray.workdir import Workdir


@dataclass
class TrainRequest:
    config: Config | None  # None only with resume_run_id: the run's own config
    cache: Path
    workdir: Workdir
    tracking: Tracking
    fold: int | None = 0  # None: --all-train
    resources: Resources = field(default_factory=Resources)  # on CUDA: a GPU per worker unless shared
    device: str = "auto"  # auto | cpu | cuda
    experiment: str = tracking.DEFAULT_EXPERIMENT
    vgg_weights: str | None = None
    resume_run_id: str | None = None
    max_failures: int = 1
    check_local: bool = True  # False inside a Tune trial: the study checked the cluster
    address: str | None = None
    kind: RunKind = RunKind.TRAIN  # FOLD inside a Tune trial, RETRAIN for `report --retrain`
    trial: TrialRef | None = None  # a fold's trial: its parent run and its tags


@dataclass
class TrainResult:
    run_id: str
    best_epoch: int
    best_psnr: float
    best_ssim: float
    generator: Path  # best generator file (checkpoint.read_generator; a copy in the Ray run folder)
    storage: Path  # the Ray run folder (checkpoints)


class TrainInterrupted(Interrupted):
    """Ctrl-C during a training: its run is marked KILLED; the message says how to resume it."""


def fit_off_the_main_thread(trainer: Any) -> Any:
    """`trainer.fit()` in a thread of its own. Called from the main thread, Ray Train installs a
    SIGINT handler that aborts the run and ends the process (exit code 1, not a word said);
    from another thread it installs none, so Ctrl-C raises KeyboardInterrupt here and `train`
    marks the run KILLED and says how to resume it (and ends the Ray it started, its workers
    with it)."""
    outcome: Future = Future()

    def fit() -> None:
        try:
            outcome.set_result(trainer.fit())
        except BaseException as exc:  # handed to the caller as it is
            outcome.set_exception(exc)

    threading.Thread(target=fit, name="ray-train-fit", daemon=True).start()
    return outcome.result()


def fold_subjects(cache: Cache, fold: int | None) -> tuple[list[str], list[str]]:
    """(train, validation) subjects; test subjects are never returned."""
    if fold is None:
        return cache.splits.development, []
    chosen = cache.splits.fold(fold)
    return chosen.train, chosen.val


def ray_run_name(request: TrainRequest) -> str:
    """Unique per invocation; a fold's is "<trial id>-fold<k>"."""
    if request.trial is not None:
        return f"{request.trial.trial_id}-fold{request.fold}"
    return f"{request.config.model}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Resumed:
    """What `--resume RUN_ID` continues: the run's stored config and its Ray run folder."""

    config: Config
    fold: int | None  # the run's fold (None: all-train), whatever --fold says
    ray_storage: Path  # the folder that holds the Ray run `ray_name`
    ray_name: str


def differing_keys(given: Config, stored: Config) -> list[str]:
    """Config keys whose values differ (the VGG path is resolved per machine: not compared)."""
    a, b = flatten(given), flatten(stored)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and k != "loss.vgg_weights")


def resumed(request: TrainRequest, cache: Cache) -> Resumed:
    """The run `request.resume_run_id`, checked to be the same training: same cache and splits,
    the same config when one is given, not still training (RUNNING with its driver alive here),
    and its Ray run folder present with a loadable checkpoint."""
    t, run_id = request.tracking, request.resume_run_id
    run = tracking.existing_run(t, run_id, f"--resume {run_id}")
    tags = run.data.tags
    if runs.RAY_RUN_NAME not in tags:
        raise UserInputError(f"--resume {run_id}: not an mrisr-ray training run")
    driver = runs.Driver.of(run)  # a trial's folds are resumed by Tune, which owns their processes
    if request.trial is None and run.info.status == "RUNNING" and driver is not None and driver.running():
        raise UserInputError(f"--resume {run_id}: the run is still training in process {driver.pid}; "
                             f"stop it first (Ctrl-C there, or kill {driver.pid})")
    for key, value in runs.data_tags(cache).items():
        if key in tags and tags[key] != value:
            raise UserInputError(f"--resume {run_id}: --data {cache.path} differs from the run's "
                                 f"({key} {value[:12]} vs {tags[key][:12]}, cache {tags.get('data')})")
    stored = runs.load_run_config(t, run_id)
    if request.config is not None:
        changed = differing_keys(request.config, stored)
        if changed:
            raise UserInputError(f"--resume {run_id}: --config/--set change {', '.join(changed[:5])} "
                                 "from the run's configuration; resume without them, or start a new run")
    storage, name = Path(tags.get(runs.RAY_STORAGE, request.workdir.ray_storage)), tags[runs.RAY_RUN_NAME]
    # A fold may have been stopped before Ray made its folder: it then starts over in its run.
    if not (storage / name).is_dir() and request.trial is None:
        raise UserInputError(f"--resume {run_id}: its checkpoints were in {storage / name}, which does "
                             "not exist here (run it where that folder is, or from a copy at that path)")
    latest = latest_checkpoint(storage / name)
    if latest is not None:
        checkpoint.load(latest)  # a damaged or foreign state.pt stops here, not in every worker
    fold = None if tags.get(runs.FOLD, runs.ALL_TRAIN) == runs.ALL_TRAIN else int(tags[runs.FOLD])
    return Resumed(config=stored, fold=fold, ray_storage=storage, ray_name=name)


def latest_checkpoint(run_folder: Path) -> Path | None:
    """The newest Ray checkpoint folder holding a state.pt (Ray names them checkpoint_<time>)."""
    found = sorted(run_folder.glob(f"checkpoint_*/{checkpoint.STATE_FILE}"))
    return found[-1].parent if found else None


def start_run(request: TrainRequest, config: Config, cache: Cache, ray_name: str) -> str:
    """A new MLflow run: its tags, its config (params and config.yaml) and the splits it used."""
    t = request.tracking
    tags = {**runs.training_tags(request.kind, config, cache, request.fold, request.workdir.ray_storage,
                                 ray_name, request.trial), **runs.Driver.this_process().tag()}
    trial = request.trial
    name = ray_name if trial is None else runs.display_name(config.model, trial.number, request.fold,
                                                            trial.trial_id)
    run_id = tracking.start_run(t, request.experiment, name, tags, trial.run_id if trial else None)
    runs.log_config(t, run_id, config)
    tracking.log_file(t, run_id, cache.path / runs.SPLITS_ARTIFACT)
    return run_id


def fit_run_config(ray_name: str, storage: Path, max_failures: int, t: Tracking, run_id: str) -> Any:
    """Ray Train's RunConfig of a training: the best checkpoint by validation score kept,
    `max_failures` restarts, each epoch logged to MLflow run `run_id` from the controller."""
    import ray.train

    from mrisr_ray.train.logger import WORKER_RUNTIME_ENV, MlflowLogger

    return ray.train.RunConfig(
        name=ray_name, storage_path=str(storage),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=1, checkpoint_score_attribute="score", checkpoint_score_order="max"),
        failure_config=ray.train.FailureConfig(max_failures=max_failures),
        logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        callbacks=[MlflowLogger(t, run_id)], worker_runtime_env=WORKER_RUNTIME_ENV)


def train(request: TrainRequest, watch: Watch = no_watch) -> TrainResult:
    """Run one training (or resume one) and return its best validation result; `watch` follows
    it while it runs."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    cache = Cache.open(request.cache)
    check_max_failures(request.max_failures)
    resources = request.resources.check().on_gpu(resolve_device(request.device))
    if request.address is None and request.check_local:
        check_local_request(resources, "--device cuda")
    if request.resume_run_id:
        previous = resumed(request, cache)
        config, fold = previous.config, previous.fold
        storage, ray_name = previous.ray_storage, previous.ray_name
    elif request.config is None:
        raise UserInputError("a new training needs a configuration (--model or --config)")
    else:
        config, fold = request.config, request.fold
        storage, ray_name = request.workdir.ray_storage, ray_run_name(request)
    train_subjects, val_subjects = fold_subjects(cache, fold)
    if config.train.batch_size < resources.workers:
        raise UserInputError(f"train.batch_size {config.train.batch_size} is smaller than "
                             f"--workers {resources.workers}")
    if request.trial is None:  # a study resolved its folds' VGG weights once, before its trials
        # Missing VGG weights stop here, with the instructions, not inside a worker.
        config = with_resolved_weights(config, request.vgg_weights)
    started_ray = not ray.is_initialized()
    ensure_ray(request.address)
    check_cluster_request(resources)
    t = request.tracking
    if request.resume_run_id:
        run_id = request.resume_run_id
        # Tagged before it is RUNNING again, so that it is never RUNNING under a driver that ended.
        tracking.set_tags(t, run_id, runs.Driver.this_process().tag())
        tracking.mark_running(t, run_id)
    else:
        run_id = start_run(request, config, cache, ray_name)
    tracking.set_tags(t, run_id, runs.resource_tags(resources))
    spec = WorkerSpec(config=config, cache=str(cache.path), train_subjects=train_subjects,
                      val_subjects=val_subjects, threads=max(1, int(resources.cpus_per_worker)),
                      failure=InjectedFailure.from_env(fold))
    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"spec": spec},
        scaling_config=ray.train.ScalingConfig(num_workers=resources.workers, use_gpu=resources.use_gpu,
                                               resources_per_worker=resources.per_worker()),
        run_config=fit_run_config(ray_name, storage, request.max_failures, t, run_id),
    )
    try:
        with watch(Target(tracking=t, experiment=request.experiment, model=config.model,
                          epochs=config.train.epochs, run_id=run_id)):
            result = fit_off_the_main_thread(trainer)
    except KeyboardInterrupt:
        tracking.end_run(t, run_id, "KILLED")
        if started_ray:  # its workers stop with it (a caller's own Ray is the caller's to end)
            ray.shutdown()
        store = "" if t.uri == request.workdir.mlflow_uri else f" --tracking-uri {t.uri}"
        raise TrainInterrupted(f"training run {run_id} interrupted; continue it with: mrisr-ray train "
                               f"--resume {run_id} --data {cache.path} --workdir {request.workdir.root}"
                               f"{store}") from None
    except Exception as exc:
        tracking.end_run(t, run_id, "FAILED")
        raise RunFailed(f"training run {run_id} failed: {exc}") from exc
    if result.error is not None:
        tracking.end_run(t, run_id, "FAILED")
        raise RunFailed(f"training run {run_id} failed: {result.error}")
    return finish(request, run_id, storage / ray_name, result)


def finish(request: TrainRequest, run_id: str, storage: Path, result) -> TrainResult:
    """Log the best generator and the final metrics, close the run."""
    from mrisr_ray.train.logger import log_resumed

    t = request.tracking
    best = result.return_value
    if best.get(RESUMED):  # resumed with no epoch left to train, so no report carried it
        with result.checkpoint.as_directory() as folder:  # the checkpoint it resumed from
            log_resumed(t, run_id, best[RESUMED], Path(folder) / SAMPLES_FILE)
    best_checkpoint = max(result.best_checkpoints, key=lambda cm: cm[1]["score"])[0]
    generator = storage / runs.GENERATOR_ARTIFACT
    with best_checkpoint.as_directory() as folder:  # (a run resumed across versions: a bare state_dict)
        best_file = checkpoint.read_generator(Path(folder) / GENERATOR_FILE, runs.load_run_config(t, run_id))
    # The logged file also records the training data (keep, grid, origin) that `predict` needs.
    checkpoint.write_generator(generator, replace(best_file, data=checkpoint.TrainingData.of(
        Cache.open(request.cache))))
    tracking.log_file(t, run_id, generator)
    final = {"best_epoch": best["epoch"]}
    if best["psnr"] == best["psnr"]:  # validated (not --all-train)
        last = result.metrics or {}
        final.update({runs.PSNR: best["psnr"], runs.SSIM: best["ssim"],
                      runs.INPUT_PSNR: last.get("val_input_psnr", float("nan")),
                      runs.INPUT_SSIM: last.get("val_input_ssim", float("nan"))})
    tracking.log_metrics(t, run_id, final, step=best["epochs"])
    tracking.end_run(t, run_id, "FINISHED")
    return TrainResult(run_id=run_id, best_epoch=best["epoch"], best_psnr=best["psnr"],
                       best_ssim=best["ssim"], generator=generator, storage=storage)
