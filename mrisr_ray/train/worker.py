"""The Ray Train worker: DDP wrapping, Ray's checkpoint folder and a sink that reports every
epoch to Ray around the plain training session (`session.py`). Workers never talk to MLflow:
`logger.py` logs what they report from Ray Train's controller, on the node that called `fit()`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mrisr_ray.config import Config
from mrisr_ray.data.cache import Cache
from mrisr_ray.plotting import sample_grid_png
from mrisr_ray.ray_runtime import NO_TRACKING_ENV
from mrisr_ray.train.checkpoint import Restored
from mrisr_ray.train.fault_injection import InjectedFailure
from mrisr_ray.train.loop import EpochResult, LoopContext
from mrisr_ray.train.session import train_session

# What rank 0 adds to its reports beside the epoch's metrics (read by `logger.py`).
EPOCH, SCORE, RESUMED = "epoch", "score", "resumed_from"
SAMPLES_FILE = "samples.png"  # in the checkpoint folder of an epoch that drew its sample grid
# The restored epoch's grid, beside the first epoch after a resume: an interruption between
# Ray's registration of that checkpoint and its logging would lose it (`logger.log_resumed`).
RESUMED_SAMPLES_FILE = "resumed_samples.png"


@dataclass
class WorkerSpec:
    """What every worker of one training run gets (`train_loop_config={"spec": spec}`)."""

    config: Config
    cache: str
    train_subjects: list[str]
    val_subjects: list[str]
    threads: int = 1
    failure: InjectedFailure | None = None


class RaySink:
    """Per epoch, every rank calls `ray.train.report` (a barrier: all ranks must report equally
    often); rank 0 reports with the checkpoint folder the session has just written (and the
    epoch's sample grid in it), and prints a line. Ray Train's controller registers the checkpoint,
    then `logger.MlflowLogger` logs the report: MLflow never holds an epoch that a resume would
    train again."""

    def __init__(self, spec: WorkerSpec, rank: int, checkpoint_dir: Path):
        self.spec, self.rank, self.checkpoint_dir = spec, rank, checkpoint_dir
        self.restored: Restored | None = None  # told to MLflow with the next report

    def __call__(self, result: EpochResult) -> None:
        import ray.train

        report = {**result.metrics, EPOCH: result.epoch, SCORE: result.score}
        if self.rank != 0:
            ray.train.report(report, checkpoint=None)
            return
        self.print_line(result)
        samples = self.checkpoint_dir / SAMPLES_FILE
        samples.unlink(missing_ok=True)
        if result.samples is not None:
            samples.write_bytes(sample_grid_png(*result.samples, title=f"epoch {result.epoch}"))
        if self.restored is not None:
            report[RESUMED] = asdict(self.restored)
            self.restored = None
        else:
            (self.checkpoint_dir / RESUMED_SAMPLES_FILE).unlink(missing_ok=True)
        ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(self.checkpoint_dir))
        if self.spec.failure is not None:
            self.spec.failure.maybe_happen(result.epoch)

    def resumed(self, restored: Restored) -> None:
        print(f"[mrisr-ray] resumed from the checkpoint of epoch {restored.epoch}", flush=True)
        self.restored = restored
        (self.checkpoint_dir / RESUMED_SAMPLES_FILE).unlink(missing_ok=True)  # an earlier resume's
        samples = self.checkpoint_dir / SAMPLES_FILE
        if samples.is_file():
            samples.replace(self.checkpoint_dir / RESUMED_SAMPLES_FILE)

    def print_line(self, result: EpochResult) -> None:
        m, epochs = result.metrics, self.spec.config.train.epochs
        val = f" val PSNR {m['val_psnr']:.2f} dB SSIM {m['val_ssim']:.4f}" if "val_psnr" in m else ""
        phase = " (L1 warm-up)" if result.warmup else f" d_loss {m['d_loss']:.4f}"
        print(f"[mrisr-ray] epoch {result.epoch}/{epochs} g_loss {m['g_loss']:.4f}{phase} "
              f"lr {m['lr']:.2e} {m['patches_per_s']:.0f} patches/s{val}", flush=True)


def train_worker(loop_config: dict) -> dict:
    """Entry point of every Ray Train worker (`TorchTrainer(train_worker, ...)`)."""
    import ray.train
    import ray.train.torch

    if not os.environ.get(NO_TRACKING_ENV):  # the guarantee the head's MLflow logging rests on
        raise RuntimeError(f"Ray Train workers run with {NO_TRACKING_ENV} set (train/logger.py)")
    spec: WorkerSpec = loop_config["spec"]
    config = spec.config
    context = ray.train.get_context()
    ctx = LoopContext(rank=context.get_world_rank(), world_size=context.get_world_size(),
                      device=ray.train.torch.get_device())
    torch.set_num_threads(spec.threads)

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        return ray.train.torch.prepare_model(
            module, parallel_strategy_kwargs={"forward_sync_buffers": False})

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint_dir = Path(scratch) / "checkpoint"  # every rank restores; rank 0 writes
        restored = ray.train.get_checkpoint()
        if restored is not None:
            with restored.as_directory() as folder:
                shutil.copytree(folder, checkpoint_dir)
        sink = RaySink(spec, ctx.rank, checkpoint_dir)
        result = train_session(config, Cache.open(spec.cache), spec.train_subjects, spec.val_subjects,
                               ctx, checkpoint_dir, sink, wrap,
                               on_resume=sink.resumed if ctx.rank == 0 else None)
    unreported = asdict(sink.restored) if sink.restored is not None else None
    return {**asdict(result.best), "start_epoch": result.start_epoch, "epochs": config.train.epochs,
            RESUMED: unreported}
