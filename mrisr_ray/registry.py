"""The one registry of models: everything the rest of mrisr-ray needs to know about a model.

A third model that trains like one of these (an ablation) is one `ModelSpec` entry here plus its
networks under `models/`, with its config section in `models/configs.py` and a `Config` field of
the same name; one that trains differently (a plain residual CNN) also brings its steps class to
`steps.py`. Factories import torch lazily, so reading a config or a registry entry never does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mrisr_ray.errors import UserInputError
from mrisr_ray.models.configs import CircleConfig, CPCEConfig

if TYPE_CHECKING:
    from torch import nn

    from mrisr_ray.config import Config
    from mrisr_ray.steps import GanSteps

SHARED_KEYS = ("model", "data.", "train.", "loss.gp_weight", "loss.lambda_adv", "loss.lambda_l1")


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the `model:` value of a config, the --model choice, its config section's name
    label: str  # how reports and the console name it
    config: type  # its architecture section of `Config` (models/configs.py)
    generator: Callable[[Config], nn.Module]  # the LR → HR generator of a config
    steps: Callable[..., GanSteps]  # (config, device, wrap) → networks, optimizers, losses
    loss_keys: tuple[str, ...]  # the loss weights that belong to this model
    deviations: tuple[str, ...]  # from the paper, always active (shared ones: deviations.py)
    switched_deviations: Callable[[Config], list[str]] = lambda config: []  # chosen by the config
    perceptual: bool = False  # has a VGG perceptual term (loss.perceptual, loss.lambda_p)

    @property
    def param_keys(self) -> tuple[str, ...]:
        """Dotted config keys (or prefixes ending in '.') that describe a run of this model."""
        return (*SHARED_KEYS, f"{self.name}.", *self.loss_keys)

    def owns(self, key: str) -> bool:
        return any(key == k or (k.endswith(".") and key.startswith(k)) for k in self.param_keys)


def _cpce_generator(config: Config) -> nn.Module:
    from mrisr_ray.models.cpce import CPCEGenerator

    return CPCEGenerator(config.cpce)


def _cpce_steps(config: Config, device: Any, wrap: Callable) -> GanSteps:
    from mrisr_ray.steps import CPCESteps

    return CPCESteps(config, device, wrap)


def _cpce_switched_deviations(config: Config) -> list[str]:
    if not config.cpce.residual:
        return []
    return ["generator: residual output LR + deconv8(...), deconv8 zero-initialised, no final ReLU "
            "(official code: ReLU output, no path from the input)"]


def _circle_generator(config: Config) -> nn.Module:
    from mrisr_ray.models.circle import CircleGenerator

    return CircleGenerator(config.circle)


def _circle_steps(config: Config, device: Any, wrap: Callable) -> GanSteps:
    from mrisr_ray.steps import CircleSteps

    return CircleSteps(config, device, wrap)


def _circle_switched_deviations(config: Config) -> list[str]:
    lines = []
    if config.circle.dropout > 0:
        lines.append(f"dropout p={config.circle.dropout:g} active in training (official code: inactive)")
    if config.loss.gp_weight != 1.0:
        lines.append(f"GP weight {config.loss.gp_weight:g} (official code 1)")
    if config.train.n_critic != 1:
        lines.append(f"{config.train.n_critic} critic steps per generator step (official code 1)")
    return lines


MODELS: dict[str, ModelSpec] = {
    "cpce": ModelSpec(
        name="cpce", label="GAN-CPCE", config=CPCEConfig, generator=_cpce_generator, steps=_cpce_steps,
        loss_keys=("loss.perceptual", "loss.vgg_weights", "loss.lambda_p"), perceptual=True,
        switched_deviations=_cpce_switched_deviations,
        deviations=(
            "lr schedule: constant, then linear decay, as the MRI paper (CT code: lr/(epoch+1))",
        )),
    "circle": ModelSpec(
        name="circle", label="GAN-CIRCLE", config=CircleConfig, generator=_circle_generator,
        steps=_circle_steps,
        loss_keys=("loss.lambda_cycle", "loss.lambda_identity", "loss.lambda_jst", "loss.tau"),
        switched_deviations=_circle_switched_deviations,
        deviations=(
            "same-grid G and F: stride 1, no up/down-sampling, global residual",
            "G and F: last layer zero-initialised, so both start as the identity",
            "reconstruction: one 3x3 conv in place of up-sampling",
            "critic: 4x4/s2 conv stages + FC + FC 1 as the paper (official code: PatchGAN)",
            "JST on G(x) with tau (official code: on the identity outputs)",
            "paired LR/HR patches (official code: independent shuffles)",
            "lr schedule: the MRI paper's, as CPCE's (official code: Adam lr 1e-5)",
        )),
}


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UserInputError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}") from None
