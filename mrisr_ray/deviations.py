"""Deviations from the seed paper that a run's config makes, one short line each (the full table
is docs/models.md). Logged as the MLflow tag `deviations` on every run and printed in reports."""

from __future__ import annotations

from mrisr_ray.config import Config, perceptual_mode, warmup_epochs
from mrisr_ray.registry import model_spec

PAPER_LR = 1e-4
COMMON = (
    "gradient penalty: per-sample L2 norm over all pixels (official code: one-axis norm)",
    "mean-reduced losses (official code: pixel sums)",
    "data: metric protocol and min-max normalisation written down (the paper gives neither)",
)


def deviation_lines(config: Config) -> list[str]:
    """Every deviation active in `config`: the model's fixed ones, then those its values choose."""
    spec = model_spec(config.model)
    lines = [*COMMON, *spec.deviations, *spec.switched_deviations(config)]
    mode = perceptual_mode(config)
    if mode not in (None, "vgg"):
        lines.append(f"perceptual loss opt-out: {mode} (no ImageNet VGG-19 weights)")
    warmup = warmup_epochs(config.train)
    if warmup:
        lines.append(f"L1 warm-up of the generator(s), no critic: {warmup} of {config.train.epochs} epochs")
    if config.loss.lambda_adv != 1.0:
        lines.append(f"adversarial weight lambda_adv {config.loss.lambda_adv:g} (paper 1)")
    if config.train.lr != PAPER_LR:
        lines.append(f"learning rate {config.train.lr:g} before the decay (paper {PAPER_LR:g})")
    if config.loss.lambda_l1 > 0:
        lines.append(f"supervised L1 on G(x), lambda_l1 {config.loss.lambda_l1:g} (paper 0)")
    return lines


def deviations(config: Config) -> str:
    return "; ".join(deviation_lines(config))
