"""The GAN training loop of one worker: the L1 warm-up epochs, then critic steps and a generator
step per batch; schedule, validation, best epoch. Ray, MLflow, checkpoints and the console stay
outside, behind `EpochSink` (`session.py` wires them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from mrisr_ray.config import Config, warmup_epochs
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
    metrics: dict[str, float]  # losses, lr, throughput; val_psnr/val_ssim and the LR input's
    # val_input_psnr/val_input_ssim when validating
    best: Best
    warmup: bool = False  # an L1 warm-up epoch (never the best: it is not a GAN result)
    samples: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (LR, SR, HR) slices

    @property
    def score(self) -> float:
        """What epochs and checkpoints are ranked by: validation PSNR (the epoch itself without
        validation); a warm-up epoch ranks below every other, since it is not a GAN result."""
        if self.warmup:
            return -1.0
        return self.metrics.get("val_psnr", float(self.epoch))


@dataclass
class LoopContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


EpochSink = Callable[[EpochResult], None]


@dataclass(frozen=True)
class Validation:
    """Scores of every validation subject: the generator's output and, on the same slices, the
    LR input's (what a super-resolution model must beat)."""

    sr: list[SubjectScore]
    lr_input: list[SubjectScore]

    def metrics(self) -> dict[str, float]:
        sr, lr_input = summarize(self.sr), summarize(self.lr_input)
        return {"val_psnr": sr.psnr_mean, "val_ssim": sr.ssim_mean,
                "val_input_psnr": lr_input.psnr_mean, "val_input_ssim": lr_input.ssim_mean}


def validate(steps: GanSteps, cache: Cache, subjects: list[str], config: Config,
             ctx: LoopContext) -> Validation:
    """Subjects are sharded across ranks and gathered."""
    mine = []
    for subject in subjects[ctx.rank :: ctx.world_size]:
        hr = np.asarray(cache.slices(subject, config.train.val_max_slices))
        lq, sr = degrade_and_super_resolve(steps.sr_generator, hr, cache.keep)
        mine.append((score_subject(subject, sr, hr), score_subject(subject, lq, hr)))
    if ctx.world_size > 1:
        gathered: list[list[tuple[SubjectScore, SubjectScore]]] = [[] for _ in range(ctx.world_size)]
        dist.all_gather_object(gathered, mine)
        mine = sorted((pair for part in gathered for pair in part), key=lambda pair: pair[0].subject)
    return Validation(sr=[sr for sr, _ in mine], lr_input=[lq for _, lq in mine])


def sample_slices(steps: GanSteps, cache: Cache, subjects: list[str], config: Config):
    """(LR, SR, HR) of fixed mid-volume slices of the first validation subjects."""
    hr = np.stack([cache.slices(s)[len(cache.slices(s)) // 2]
                   for s in subjects[: config.train.sample_slices]])
    lq, sr = degrade_and_super_resolve(steps.sr_generator, hr, cache.keep)
    return lq, sr, hr


def mean_across_ranks(totals: dict[str, float], count: int, ctx: LoopContext) -> dict[str, float]:
    keys = sorted(totals)
    values = torch.tensor([totals[k] for k in keys] + [float(count)], dtype=torch.float64)
    if ctx.world_size > 1:
        dist.all_reduce(values)
    return {k: float(v / values[-1]) for k, v in zip(keys, values[:-1], strict=True)}


def add(totals: dict[str, torch.Tensor], losses: dict[str, torch.Tensor], weight: float = 1.0) -> None:
    """Accumulate detached losses on the device: reading them per step would sync the host."""
    for k, v in losses.items():
        totals[k] = totals[k] + v * weight if k in totals else v * weight


def train_epoch(steps: GanSteps, sampler: PatchSampler, epoch: int, warmup: bool, config: Config,
                ctx: LoopContext) -> tuple[dict[str, torch.Tensor], int]:
    """One epoch of updates: (summed losses, generator steps)."""
    train, per_rank_batch = config.train, config.train.batch_size // ctx.world_size
    critic_rng = np.random.default_rng([train.seed, epoch, ctx.rank])
    totals: dict[str, torch.Tensor] = {}
    generator_steps = 0
    for batch in sampler.batches(epoch, per_rank_batch):
        if warmup:
            add(totals, steps.warmup_step(batch.lq, batch.gt))
        else:
            for _ in range(train.n_critic):
                critic_batch = sampler.random_batch(critic_rng, per_rank_batch)
                add(totals, steps.critic_step(critic_batch.lq, critic_batch.gt), 1 / train.n_critic)
            add(totals, steps.generator_step(batch.lq, batch.gt))
        generator_steps += 1
    return totals, generator_steps


def train_epochs(steps: GanSteps, sampler: PatchSampler, cache: Cache, val_subjects: list[str],
                 config: Config, ctx: LoopContext, start_epoch: int, best: Best,
                 sink: EpochSink) -> Best:
    """Train from `start_epoch` (1-based) to `config.train.epochs`; `sink` gets every epoch.

    The first `warmup_epochs` epochs (`train.warmup_fraction`) train the generators with L1 only;
    the best epoch is chosen among the adversarial epochs after them, so their validation only
    draws the learning curve (`train.validate_warmup: false` skips it)."""
    train = config.train
    warmup = warmup_epochs(train)
    for epoch in range(start_epoch, train.epochs + 1):
        if warmup and epoch == warmup + 1:
            # ESRGAN/BasicSR practice: the GAN phase starts fresh optimizers from the warmed-up
            # generators. Adam's moments from an L1-only phase misjudge the new loss mix (CIRCLE
            # lost most of its warm-up gain within 20 steps without this; docs/models.md).
            steps.make_optimizers()
        lr = learning_rate(epoch, train)
        steps.set_lr(lr)
        steps.train(True)
        in_warmup = epoch <= warmup
        started = time.perf_counter()
        totals, generator_steps = train_epoch(steps, sampler, epoch, in_warmup, config, ctx)
        metrics = mean_across_ranks({k: float(v) for k, v in totals.items()}, generator_steps, ctx)
        seconds = time.perf_counter() - started
        per_rank_batch = train.batch_size // ctx.world_size
        metrics.update(lr=lr, epoch_seconds=seconds,
                       patches_per_s=generator_steps * per_rank_batch * ctx.world_size / seconds)
        samples = None
        if val_subjects and (not in_warmup or train.validate_warmup):
            metrics.update(validate(steps, cache, val_subjects, config, ctx).metrics())
            if ctx.rank == 0 and train.sample_slices:
                samples = sample_slices(steps, cache, val_subjects, config)
        if not all(np.isfinite(list(metrics.values()))):
            raise FloatingPointError(f"epoch {epoch}: non-finite losses {metrics}")
        result = EpochResult(epoch=epoch, metrics=metrics, best=best, samples=samples, warmup=in_warmup)
        if not result.warmup and result.score > best.score:
            result.best = best = Best(score=result.score, epoch=epoch,
                                      psnr=metrics.get("val_psnr", float("nan")),
                                      ssim=metrics.get("val_ssim", float("nan")))
        sink(result)
    return best


def make_sampler(cache: Cache, subjects: list[str], config: Config, ctx: LoopContext) -> PatchSampler:
    return PatchSampler(SliceStore(cache, subjects), size=config.data.patch_size,
                        mode=config.data.patch_mode, keep=cache.keep, device=ctx.device,
                        seed=config.train.seed, foreground_bias=config.data.foreground_bias,
                        rank=ctx.rank, world_size=ctx.world_size,
                        max_patches=config.train.max_patches_per_epoch)
