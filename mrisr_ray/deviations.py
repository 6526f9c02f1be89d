"""Deviations from the seed paper that a run's config makes, one short line each (the full table
is docs/models.md). Logged as the MLflow tag `deviations` on every run and printed in reports.

Three kinds: what the code always does differently (the shared `CODE` lines and the model's
`ModelSpec.deviations`), what the model's values switch on (`ModelSpec.switched_deviations`), and
every setting of the model that differs from its paper config (configs/<model>.yaml).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from mrisr_ray.config import (
    Config,
    default_config_path,
    load_config,
    model_params,
    perceptual_mode,
    warmup_epochs,
)
from mrisr_ray.registry import model_spec

CODE = (
    "gradient penalty: per-sample L2 norm over all pixels (official code: one-axis norm)",
    "mean-reduced losses (official code: pixel sums)",
    "data: metric protocol and min-max normalisation written down (the paper gives neither)",
)
VGG = "VGG-19: torchvision weights with ImageNet mean/std (paper: Caffe BGR)"
# How a run is executed or checked, not what it learns: never a deviation from the paper.
ENGINEERING = frozenset({
    "train.seed", "train.amp", "train.amp_on_cpu", "train.channels_last", "train.compile",
    "train.fused_adam", "train.deterministic", "train.val_max_slices", "train.validate_warmup",
    "train.sample_slices", "loss.vgg_weights",
})


@cache
def paper_settings(model: str) -> dict[str, Any]:
    """The model's keys as its paper config sets them."""
    return model_params(load_config(model, default_config_path(model)))


def shown(value: Any) -> str:
    """A value as YAML writes it (None: an uncapped epoch)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return "all" if value is None else str(value)


def deviation_lines(config: Config) -> list[str]:
    """Every deviation active in `config`: the code's, the ones its values switch on, then each
    setting that differs from the paper config."""
    spec = model_spec(config.model)
    lines = [*CODE, *spec.deviations, *spec.switched_deviations(config)]
    if perceptual_mode(config) == "vgg":
        lines.append(VGG)
    warmup = warmup_epochs(config.train)
    if warmup:
        lines.append(f"L1 warm-up of the generator(s), no critic: {warmup} of {config.train.epochs} "
                     "epochs, then fresh optimizers")
    described = {"train.warmup_fraction"} if warmup else set()  # by the warm-up line
    paper = paper_settings(config.model)
    lines += [f"{key} {shown(value)} (configs/{config.model}.yaml: {shown(paper[key])})"
              for key, value in model_params(config).items()
              if key not in ENGINEERING | described and value != paper[key]]
    return lines


def deviations(config: Config) -> str:
    return "; ".join(deviation_lines(config))
