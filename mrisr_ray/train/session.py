"""One training session, with or without Ray: seed, build the steps, compile, restore the
checkpoint folder if it holds one, run the epochs, write the checkpoint after each epoch.

The Ray Train worker (`worker.py`) only wraps this (DDP `wrap`, a Ray checkpoint folder, a sink
that reports to Ray); benchmarks and tests call it directly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mrisr_ray.config import Config
from mrisr_ray.data.cache import Cache
from mrisr_ray.steps import GanSteps, build_steps, identity_wrap
from mrisr_ray.train import checkpoint
from mrisr_ray.train.loop import EpochResult, EpochSink, LoopContext, make_sampler, train_epochs


@dataclass
class SessionResult:
    best: checkpoint.Best
    start_epoch: int  # 1, or the epoch after the restored checkpoint's
    steps: GanSteps  # the trained networks (last epoch)
    patches_per_epoch: int  # generator patches of one epoch, all ranks


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def train_session(config: Config, cache: Cache, train_subjects: list[str], val_subjects: list[str],
                  ctx: LoopContext, checkpoint_dir: Path | None, sink: EpochSink,
                  wrap: Callable[[torch.nn.Module], torch.nn.Module] = identity_wrap,
                  on_resume: Callable[[checkpoint.Restored], None] | None = None) -> SessionResult:
    """Train `config` on `train_subjects`, validating on `val_subjects` (none: the last epoch is
    the result). `checkpoint_dir` is restored from when it holds a checkpoint (every rank) and
    rewritten by rank 0 after every epoch, before `sink` sees the epoch; `on_resume` is told
    which checkpoint the session continued from."""
    seed_everything(config.train.seed + ctx.rank, config.train.deterministic)
    steps = build_steps(config, ctx.device, wrap)
    if config.train.compile:
        steps.compile()
    start_epoch, best = 1, checkpoint.Best()
    if checkpoint_dir is not None and (checkpoint_dir / checkpoint.STATE_FILE).is_file():
        state = checkpoint.load(checkpoint_dir)
        steps.load_state_dict(state["steps"])
        checkpoint.restore_rng(state["rng"], ctx.rank, config.train.seed, state["epoch"])
        start_epoch, best = state["epoch"] + 1, state["best"]
        if on_resume is not None:
            on_resume(checkpoint.Restored(epoch=state["epoch"], metrics=state.get("metrics", {}),
                                          generator_sha256=checkpoint.state_sha256(
                                              steps.sr_generator.state_dict())))

    sampler = make_sampler(cache, train_subjects, config, ctx)
    if len(sampler.epoch_positions(1)) < config.train.batch_size // ctx.world_size:
        raise ValueError(f"{sampler.patches_per_epoch} patches per epoch are fewer than one batch "
                         f"of {config.train.batch_size}")

    def save_then_sink(result: EpochResult) -> None:
        if checkpoint_dir is not None:
            rank_rng = checkpoint.gathered_rng_states(ctx.world_size)
            if ctx.rank == 0:
                checkpoint.save(checkpoint_dir, result.epoch, steps.state_dict(),
                                steps.sr_generator.state_dict(), result.best, config, rank_rng,
                                result.metrics)
        sink(result)

    best = train_epochs(steps, sampler, cache, val_subjects, config, ctx, start_epoch, best,
                        save_then_sink)
    return SessionResult(best=best, start_epoch=start_epoch, steps=steps,
                         patches_per_epoch=sampler.patches_per_epoch)
