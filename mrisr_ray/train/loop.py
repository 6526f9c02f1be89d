"""The GAN training loop of one worker: critic steps, generator step, schedule, validation,
report, checkpoint. Ray, MLflow and the console stay outside, behind `EpochSink`."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from mrisr_ray.config import Config
from mrisr_ray.data.cache import Cache
from mrisr_ray.data.patches import PatchSampler, SliceStore
from mrisr_ray.inference import degrade_and_super_resolve
from mrisr_ray.metrics import SubjectScore, score_subject, summarize
from mrisr_ray.schedule import learning_rate
from mrisr_ray.steps import GanSteps
from mrisr_ray.train.checkpoint import Best


@dataclass
class EpochResult:
    epoch: int
    metrics: dict[str, float]  # losses, lr, throughput, val_psnr/val_ssim when validating
    best: Best
    samples: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (LR, SR, HR) slices


@dataclass
class LoopContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


EpochSink = Callable[[EpochResult], None]


def validate(steps: GanSteps, cache: Cache, subjects: list[str], config: Config,
             ctx: LoopContext) -> list[SubjectScore]:
    """Scores of every validation subject; subjects are sharded across ranks and gathered."""
    amp = config.train.amp and ctx.device.type == "cuda"
    mine = []
    for subject in subjects[ctx.rank :: ctx.world_size]:
        hr = np.asarray(cache.slices(subject, config.train.val_max_slices))
        _, sr = degrade_and_super_resolve(steps.sr_generator, hr, cache.keep, amp=amp)
        mine.append(score_subject(subject, sr, hr))
    if ctx.world_size == 1:
        return mine
    gathered: list[list[SubjectScore]] = [[] for _ in range(ctx.world_size)]
    dist.all_gather_object(gathered, mine)
    return sorted((s for part in gathered for s in part), key=lambda s: s.subject)


def sample_slices(steps: GanSteps, cache: Cache, subjects: list[str], config: Config):
    """(LR, SR, HR) of fixed mid-volume slices of the first validation subjects."""
    hr = np.stack([cache.slices(s)[len(cache.slices(s)) // 2]
                   for s in subjects[: config.train.sample_slices]])
    lr, sr = degrade_and_super_resolve(steps.sr_generator, hr, cache.keep)
    return lr, sr, hr


def mean_across_ranks(totals: dict[str, float], count: int, ctx: LoopContext) -> dict[str, float]:
    keys = sorted(totals)
    values = torch.tensor([totals[k] for k in keys] + [float(count)], dtype=torch.float64)
    if ctx.world_size > 1:
        dist.all_reduce(values)
    return {k: float(v / values[-1]) for k, v in zip(keys, values[:-1], strict=True)}


def train_epochs(steps: GanSteps, sampler: PatchSampler, cache: Cache, val_subjects: list[str],
                 config: Config, ctx: LoopContext, start_epoch: int, best: Best,
                 sink: EpochSink) -> Best:
    """Train from `start_epoch` (1-based) to `config.train.epochs`; `sink` gets every epoch."""
    train = config.train
    per_rank_batch = train.batch_size // ctx.world_size
    for epoch in range(start_epoch, train.epochs + 1):
        lr = learning_rate(epoch, train)
        steps.set_lr(lr)
        steps.train(True)
        critic_rng = np.random.default_rng([train.seed, epoch, ctx.rank])
        totals: dict[str, float] = defaultdict(float)
        generator_steps, started = 0, time.perf_counter()
        for batch in sampler.batches(epoch, per_rank_batch):
            for _ in range(train.n_critic):
                critic_batch = sampler.random_batch(critic_rng, per_rank_batch)
                for k, v in steps.critic_step(critic_batch.lr, critic_batch.hr).items():
                    totals[k] += float(v) / train.n_critic
            for k, v in steps.generator_step(batch.lr, batch.hr).items():
                totals[k] += float(v)
            generator_steps += 1
        metrics = mean_across_ranks(totals, generator_steps, ctx)
        seconds = time.perf_counter() - started
        metrics.update(lr=lr, patches_per_s=generator_steps * per_rank_batch * ctx.world_size / seconds,
                       epoch_seconds=seconds)
        samples = None
        if val_subjects:
            summary = summarize(validate(steps, cache, val_subjects, config, ctx))
            metrics.update(val_psnr=summary.psnr_mean, val_ssim=summary.ssim_mean)
            score = summary.psnr_mean
            if ctx.rank == 0 and train.sample_slices:
                samples = sample_slices(steps, cache, val_subjects, config)
        else:
            score = float(epoch)  # --all-train: the last epoch is the result
        if not all(np.isfinite(list(metrics.values()))):
            raise FloatingPointError(f"epoch {epoch}: non-finite losses {metrics}")
        if score > best.score:
            best = Best(score=score, epoch=epoch, psnr=metrics.get("val_psnr", float("nan")),
                        ssim=metrics.get("val_ssim", float("nan")))
        sink(EpochResult(epoch=epoch, metrics=metrics, best=best, samples=samples))
    return best


def make_sampler(cache: Cache, subjects: list[str], config: Config, ctx: LoopContext) -> PatchSampler:
    return PatchSampler(SliceStore(cache, subjects), size=config.data.patch_size,
                        mode=config.data.patch_mode, keep=cache.keep, device=ctx.device,
                        seed=config.train.seed, foreground_bias=config.data.foreground_bias,
                        rank=ctx.rank, world_size=ctx.world_size,
                        max_patches=config.train.max_patches_per_epoch)
