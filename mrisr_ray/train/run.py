"""`mrisr-ray train`: one training run through Ray Train's `TorchTrainer`, logged to MLflow.

Every invocation is a new MLflow run with a unique Ray run name; `resume_run_id` continues a
run from its last checkpoint (Ray restores the checkpoint manager of the same storage path and
name) and ends at the same epoch count. `FailureConfig(max_failures)` restarts a crashed worker
group from the last checkpoint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from mrisr_ray import tracking
from mrisr_ray.config import Config, config_yaml, flatten, from_dict, to_dict
from mrisr_ray.data.cache import Cache
from mrisr_ray.deviations import deviations
from mrisr_ray.errors import RunFailed, UserInputError
from mrisr_ray.ray_runtime import check_cluster_request, check_local_request, ensure_ray
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.checkpoint import GENERATOR_FILE
from mrisr_ray.train.worker import FAIL_ONCE_ENV, WorkerSpec, train_worker
from mrisr_ray.workdir import Workdir

BEST_GENERATOR = "best_generator.pt"


@dataclass
class TrainRequest:
    config: Config
    cache: Path
    workdir: Workdir
    tracking: Tracking
    fold: int | None = 0  # None: --all-train
    workers: int = 1
    device: str = "auto"  # auto | cpu | cuda
    experiment: str = tracking.DEFAULT_EXPERIMENT
    vgg_weights: str | None = None
    resume_run_id: str | None = None
    max_failures: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0  # < 1 shares a GPU between trials (one worker per trial only)
    check_local: bool = True  # False inside a Tune trial: the study checked the cluster
    address: str | None = None
    parent_run_id: str | None = None  # tune: the trial's run
    run_name: str | None = None  # tune: "<trial>-fold<k>"; default unique per invocation
    extra_tags: dict | None = None


@dataclass
class TrainResult:
    run_id: str
    best_epoch: int
    best_psnr: float
    best_ssim: float
    generator: Path  # best generator state_dict (local copy in the run's Ray storage folder)
    storage: Path  # the Ray run folder (checkpoints)


def resolve_device(device: str) -> bool:
    """True when training on GPUs."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise UserInputError(f"--device must be auto, cpu or cuda, got {device!r}")
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def fold_subjects(cache: Cache, fold: int | None) -> tuple[list[str], list[str]]:
    """(train, validation) subjects; test subjects are never returned."""
    if fold is None:
        return cache.splits.development, []
    chosen = cache.splits.fold(fold)
    return chosen.train, chosen.val


def start_or_resume_run(request: TrainRequest, cache: Cache) -> tuple[str, Config, str]:
    """(MLflow run id, config, Ray run name) of a new run or of the run being resumed."""
    t = request.tracking
    if request.resume_run_id:
        try:
            tags = tracking.run_tags(t, request.resume_run_id)
        except Exception:
            raise UserInputError(f"--resume {request.resume_run_id}: no such MLflow run in "
                                 f"{t.uri}") from None
        if "ray_run_name" not in tags:
            raise UserInputError(f"--resume {request.resume_run_id}: not an mrisr-ray training run")
        if tags.get("protocol_hash") != cache.manifest.protocol_hash:
            raise UserInputError(f"{cache.path}: data protocol {cache.manifest.protocol_hash} differs "
                                 f"from the run's {tags.get('protocol_hash')}")
        with tempfile.TemporaryDirectory() as tmp:
            path = t.client().download_artifacts(request.resume_run_id, "config.yaml", tmp)
            config = from_dict(yaml.safe_load(Path(path).read_text()))
        tracking.mark_running(t, request.resume_run_id)
        return request.resume_run_id, config, tags["ray_run_name"]
    config = request.config
    name = request.run_name or f"{config.model}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    tags = {
        "kind": "train",
        "model": config.model,
        "fold": "all-train" if request.fold is None else str(request.fold),
        "git_commit": tracking.git_commit(),
        "protocol_hash": cache.manifest.protocol_hash,
        "data": str(cache.path),
        "data_origin": "synthetic" if "synthetic" in cache.manifest.origin else "ixi",
        "deviations": deviations(config.model, config.loss.perceptual),
        "perceptual": config.loss.perceptual if config.model == "cpce" else "n/a",
        "seed": str(config.train.seed),
        "split_seed": str(cache.splits.seed),
        "ray_storage_path": str(request.workdir.ray_storage),
        "ray_run_name": name,
        **(request.extra_tags or {}),
    }
    run_id = tracking.start_run(t, request.experiment, name, tags, request.parent_run_id)
    tracking.log_params(t, run_id, flatten(config))
    tracking.log_bytes(t, run_id, config_yaml(config).encode(), "config.yaml")
    tracking.log_file(t, run_id, cache.path / "splits.json")
    return run_id, config, name


def train(request: TrainRequest) -> TrainResult:
    """Run one training (or resume one) and return its best validation result."""
    import ray.train
    from ray.train.torch import TorchTrainer

    cache = Cache.open(request.cache)
    use_gpu = resolve_device(request.device)
    if request.address is None and request.check_local:
        check_local_request(request.workers, use_gpu, request.cpus_per_worker)
    train_subjects, val_subjects = fold_subjects(cache, request.fold)
    if request.config.train.batch_size < request.workers:
        raise UserInputError(f"train.batch_size {request.config.train.batch_size} is smaller than "
                             f"--workers {request.workers}")
    if request.config.model == "cpce" and request.config.loss.lambda_p > 0:
        from mrisr_ray.models.vgg import build_perceptual

        # Fail on missing VGG weights here, with the instructions, not inside a worker.
        build_perceptual(request.config.loss.perceptual,
                         request.vgg_weights or request.config.loss.vgg_weights)
    ensure_ray(request.address)
    check_cluster_request(request.workers, use_gpu, request.cpus_per_worker, request.gpus_per_worker)
    run_id, config, ray_name = start_or_resume_run(request, cache)
    t = request.tracking
    tracking.set_tags(t, run_id, {"device": "cuda" if use_gpu else "cpu",
                                  "workers": request.workers})
    spec = WorkerSpec(config=to_dict(config), cache=str(cache.path), train_subjects=train_subjects,
                      val_subjects=val_subjects, tracking_uri=t.uri, run_id=run_id,
                      vgg_weights=request.vgg_weights,
                      threads=max(1, int(request.cpus_per_worker)),
                      fail_once=os.environ.get(FAIL_ONCE_ENV))
    request.workdir.ray_storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=spec.__dict__,
        scaling_config=ray.train.ScalingConfig(
            num_workers=request.workers, use_gpu=use_gpu,
            resources_per_worker={"CPU": request.cpus_per_worker,
                                  **({"GPU": request.gpus_per_worker} if use_gpu else {})}),
        run_config=ray.train.RunConfig(
            name=ray_name, storage_path=str(request.workdir.ray_storage),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute="score", checkpoint_score_order="max"),
            failure_config=ray.train.FailureConfig(max_failures=request.max_failures),
            logging_config=ray.train.LoggingConfig(log_level="WARNING")),
    )
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        tracking.end_run(t, run_id, "KILLED")
        raise
    except Exception as exc:
        tracking.end_run(t, run_id, "FAILED")
        raise RunFailed(f"training run {run_id} failed: {exc}") from exc
    if result.error is not None:
        tracking.end_run(t, run_id, "FAILED")
        raise RunFailed(f"training run {run_id} failed: {result.error}")
    return finish(request, run_id, ray_name, result)


def finish(request: TrainRequest, run_id: str, ray_name: str, result) -> TrainResult:
    """Log the best generator and the final metrics, close the run."""
    t = request.tracking
    best = result.return_value
    best_checkpoint = max(result.best_checkpoints, key=lambda cm: cm[1]["score"])[0]
    storage = request.workdir.ray_storage / ray_name
    generator = storage / BEST_GENERATOR
    with best_checkpoint.as_directory() as folder:
        shutil.copyfile(Path(folder) / GENERATOR_FILE, generator)
    tracking.log_file(t, run_id, generator)
    final = {"best_epoch": best["epoch"]}
    if best["psnr"] == best["psnr"]:  # validated (not --all-train)
        final.update(best_val_psnr=best["psnr"], best_val_ssim=best["ssim"])
    tracking.log_metrics(t, run_id, final, step=best["epochs"])
    tracking.end_run(t, run_id, "FINISHED")
    return TrainResult(run_id=run_id, best_epoch=best["epoch"], best_psnr=best["psnr"],
                       best_ssim=best["ssim"], generator=generator, storage=storage)
