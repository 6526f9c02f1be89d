"""The Ray Train worker: everything Ray-, MLflow- and console-specific around `train_epochs`."""

from __future__ import annotations

import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mrisr_ray.config import from_dict
from mrisr_ray.data.cache import Cache
from mrisr_ray.figures import sample_grid_png
from mrisr_ray.steps import build_steps, unwrap
from mrisr_ray.train import checkpoint
from mrisr_ray.train.loop import EpochResult, LoopContext, make_sampler, train_epochs

# Testing aid for recovery (read by the driver, passed to the workers): "EPOCH:MARKER" makes
# rank 0 fail once right after epoch EPOCH's checkpoint; the MARKER file records that it
# happened, so a restarted run goes on.
FAIL_ONCE_ENV = "MRISR_RAY_FAIL_ONCE"


@dataclass
class WorkerSpec:
    config: dict
    cache: str
    train_subjects: list[str]
    val_subjects: list[str]
    tracking_uri: str | None
    run_id: str | None
    vgg_weights: str | None = None
    threads: int = 1
    fail_once: str | None = None  # FAIL_ONCE_ENV plan


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


class RaySink:
    """Per epoch: rank 0 writes the checkpoint, logs to MLflow and prints a line; every rank
    then calls `ray.train.report` (a barrier: all ranks must report equally often)."""

    def __init__(self, spec: WorkerSpec, steps, rank: int, epochs: int):
        self.spec, self.steps, self.rank, self.epochs = spec, steps, rank, epochs
        self.tracking = None
        if rank == 0 and spec.run_id:
            from mrisr_ray.tracking import Tracking

            self.tracking = Tracking(uri=spec.tracking_uri)

    def __call__(self, result: EpochResult) -> None:
        import ray.train

        report = {**result.metrics, "epoch": result.epoch,
                  "score": result.metrics.get("val_psnr", float(result.epoch))}
        if self.rank != 0:
            ray.train.report(report, checkpoint=None)
            return
        self.log(result)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint.save(Path(folder), result.epoch, self.steps.state_dict(),
                            unwrap(self.steps.generators["G"]).state_dict(), result.best,
                            self.spec.config)
            ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(folder))
        self.maybe_fail(result.epoch)

    def resumed(self, epoch: int, generator_sha256: str) -> None:
        print(f"[mrisr-ray] resumed from the checkpoint of epoch {epoch}", flush=True)
        if self.tracking is not None:
            from mrisr_ray import tracking

            tracking.set_tags(self.tracking, self.spec.run_id, {
                "resumed_from_epoch": epoch, "resumed_generator_sha256": generator_sha256})

    def log(self, result: EpochResult) -> None:
        m = result.metrics
        val = f" val PSNR {m['val_psnr']:.2f} dB SSIM {m['val_ssim']:.4f}" if "val_psnr" in m else ""
        print(f"[mrisr-ray] epoch {result.epoch}/{self.epochs} g_loss {m['g_loss']:.4f} "
              f"d_loss {m['d_loss']:.4f} lr {m['lr']:.2e} {m['patches_per_s']:.0f} patches/s{val}",
              flush=True)
        if self.tracking is None:
            return
        from mrisr_ray import tracking

        tracking.log_metrics(self.tracking, self.spec.run_id, m, step=result.epoch)
        if result.samples is not None:
            png = sample_grid_png(*result.samples, title=f"epoch {result.epoch}")
            tracking.log_bytes(self.tracking, self.spec.run_id, png,
                               f"samples/epoch_{result.epoch:03d}.png")

    def maybe_fail(self, epoch: int) -> None:
        plan = self.spec.fail_once
        if not plan:
            return
        at, marker = plan.split(":", 1)
        if int(at) == epoch and not Path(marker).exists():
            Path(marker).write_text(f"failed after epoch {epoch}\n")
            raise RuntimeError(f"injected failure after epoch {epoch} ({FAIL_ONCE_ENV})")


def train_worker(setup: dict) -> dict:
    """Entry point of every Ray Train worker (`TorchTrainer(train_worker, ...)`)."""
    import ray.train
    import ray.train.torch

    spec = WorkerSpec(**setup)
    config = from_dict(spec.config)
    context = ray.train.get_context()
    ctx = LoopContext(rank=context.get_world_rank(), world_size=context.get_world_size(),
                      device=ray.train.torch.get_device())
    torch.set_num_threads(spec.threads)
    seed_everything(config.train.seed + ctx.rank, config.train.deterministic)
    on_gpu = ctx.device.type == "cuda"

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        if on_gpu and config.train.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return ray.train.torch.prepare_model(
            module, parallel_strategy_kwargs={"forward_sync_buffers": False})

    steps = build_steps(config, ctx.device, wrap, spec.vgg_weights)
    if config.train.compile:  # generators and VGG only: the GP's double backward does not compile
        steps.generators = {k: torch.compile(g) for k, g in steps.generators.items()}
        if getattr(steps, "perceptual", None) is not None:
            steps.perceptual = torch.compile(steps.perceptual)

    sink = RaySink(spec, steps, ctx.rank, config.train.epochs)
    start_epoch, best = 1, checkpoint.Best()
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            state = checkpoint.load(Path(folder))
        steps.load_state_dict(state["steps"])
        checkpoint.set_rng_state(state["rng"])
        start_epoch, best = state["epoch"] + 1, state["best"]
        if ctx.rank == 0:
            sink.resumed(state["epoch"], checkpoint.state_sha256(steps.sr_generator.state_dict()))

    cache = Cache.open(spec.cache)
    sampler = make_sampler(cache, spec.train_subjects, config, ctx)
    if len(sampler.epoch_positions(1)) < config.train.batch_size // ctx.world_size:
        raise ValueError(f"{sampler.patches_per_epoch} patches per epoch are fewer than one batch "
                         f"of {config.train.batch_size}")
    best = train_epochs(steps, sampler, cache, spec.val_subjects, config, ctx, start_epoch, best, sink)
    return {**asdict(best), "start_epoch": start_epoch, "epochs": config.train.epochs}
