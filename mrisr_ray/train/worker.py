"""The Ray Train worker: DDP wrapping, Ray's checkpoint folder and a sink that reports to Ray and
MLflow around the plain training session (`session.py`)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mrisr_ray.config import Config
from mrisr_ray.data.cache import Cache
from mrisr_ray.plotting import sample_grid_png
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.checkpoint import Restored
from mrisr_ray.train.loop import EpochResult, LoopContext
from mrisr_ray.train.session import train_session

# Testing aid for recovery (read by the driver, passed to the workers): "EPOCH:MARKER" makes
# rank 0 raise once right after epoch EPOCH's checkpoint; "EPOCH:MARKER:kill" makes its process
# SIGKILL itself shortly after, in the middle of the next epoch (no exception, no clean-up: a
# lost machine). The MARKER file records that it happened, so a restarted run goes on.
FAIL_ONCE_ENV = "MRISR_RAY_FAIL_ONCE"
KILL_DELAY_S = 0.3


@dataclass
class WorkerSpec:
    """What every worker of one training run gets (`train_loop_config={"spec": spec}`)."""

    config: Config
    cache: str
    train_subjects: list[str]
    val_subjects: list[str]
    tracking: Tracking | None
    run_id: str | None
    threads: int = 1
    fail_once: str | None = None  # FAIL_ONCE_ENV plan


class RaySink:
    """Per epoch: every rank calls `ray.train.report` (a barrier: all ranks must report equally
    often), rank 0 with the checkpoint folder the session has just written; then rank 0 logs to
    MLflow and prints a line. In that order, an interruption mostly loses at most an epoch's MLflow
    metrics (`resumed` logs them then); only one that falls between a checkpoint's upload and Ray
    Train's controller registering it leaves that epoch logged and trained again after the resume
    (MLflow then holds both values at that step)."""

    def __init__(self, spec: WorkerSpec, rank: int, checkpoint_dir: Path):
        self.spec, self.rank, self.checkpoint_dir = spec, rank, checkpoint_dir
        self.tracking = spec.tracking if rank == 0 and spec.run_id else None

    def __call__(self, result: EpochResult) -> None:
        import ray.train

        report = {**result.metrics, "epoch": result.epoch, "score": result.score}
        if self.rank != 0:
            ray.train.report(report, checkpoint=None)
            return
        ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(self.checkpoint_dir))
        self.log(result)
        self.maybe_fail(result.epoch)

    def resumed(self, restored: Restored) -> None:
        print(f"[mrisr-ray] resumed from the checkpoint of epoch {restored.epoch}", flush=True)
        if self.tracking is None:
            return
        from mrisr_ray import runs, tracking

        runs.mark_resumed(self.tracking, self.spec.run_id, restored.epoch, restored.generator_sha256)
        logged = {m.step for m in self.tracking.client().get_metric_history(self.spec.run_id, "g_loss")}
        if restored.metrics and restored.epoch not in logged:
            metrics = {**restored.metrics, "epoch": restored.epoch}
            tracking.log_metrics(self.tracking, self.spec.run_id, metrics, step=restored.epoch)

    def log(self, result: EpochResult) -> None:
        m, epochs = result.metrics, self.spec.config.train.epochs
        val = f" val PSNR {m['val_psnr']:.2f} dB SSIM {m['val_ssim']:.4f}" if "val_psnr" in m else ""
        phase = " (L1 warm-up)" if result.warmup else f" d_loss {m['d_loss']:.4f}"
        print(f"[mrisr-ray] epoch {result.epoch}/{epochs} g_loss {m['g_loss']:.4f}{phase} "
              f"lr {m['lr']:.2e} {m['patches_per_s']:.0f} patches/s{val}", flush=True)
        if self.tracking is None:
            return
        from mrisr_ray import tracking

        tracking.log_metrics(self.tracking, self.spec.run_id, {**m, "epoch": result.epoch}, step=result.epoch)
        if result.samples is not None:
            png = sample_grid_png(*result.samples, title=f"epoch {result.epoch}")
            tracking.log_bytes(self.tracking, self.spec.run_id, png,
                               f"samples/epoch_{result.epoch:03d}.png")

    def maybe_fail(self, epoch: int) -> None:
        plan = self.spec.fail_once
        if not plan:
            return
        at, marker, *mode = plan.split(":")
        if int(at) != epoch or Path(marker).exists():
            return
        Path(marker).write_text(f"failed after epoch {epoch}\n")
        if mode == ["kill"]:
            threading.Timer(KILL_DELAY_S, os.kill, (os.getpid(), signal.SIGKILL)).start()
            return
        raise RuntimeError(f"injected failure after epoch {epoch} ({FAIL_ONCE_ENV})")


def train_worker(loop_config: dict) -> dict:
    """Entry point of every Ray Train worker (`TorchTrainer(train_worker, ...)`)."""
    import ray.train
    import ray.train.torch

    spec: WorkerSpec = loop_config["spec"]
    config = spec.config
    context = ray.train.get_context()
    ctx = LoopContext(rank=context.get_world_rank(), world_size=context.get_world_size(),
                      device=ray.train.torch.get_device())
    torch.set_num_threads(spec.threads)
    on_gpu = ctx.device.type == "cuda"

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        if on_gpu and config.train.channels_last:
            module = module.to(memory_format=torch.channels_last)
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
    return {**asdict(result.best), "start_epoch": result.start_epoch, "epochs": config.train.epochs}
