"""Run configuration: plain dataclasses, loaded from YAML, overridden with `--set key=value`.

`configs/cpce.yaml` and `configs/circle.yaml` (packaged as `mrisr_ray.configs`) hold the paper's
defaults; a YAML file only overrides the dataclass defaults below. Unknown keys and wrong types
are errors that name the key. A best-config file written by `tune` has this same schema.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from mrisr_ray.defaults import defaults_dir
from mrisr_ray.errors import UserInputError
from mrisr_ray.models.configs import CircleConfig, CPCEConfig
from mrisr_ray.registry import MODELS, model_spec


@dataclass
class DataConfig:
    patch_size: int = 64  # paper: 64×64 patches
    patch_mode: str = "grid"  # grid (paper: 16 per 256×256 slice) or random (foreground-biased)
    foreground_bias: float = 0.9  # random mode: share of patches centred on foreground


@dataclass
class LossConfig:
    gp_weight: float = 10.0  # WGAN-GP λ (both models)
    perceptual: str = "vgg"  # CPCE: vgg | random_vgg | none (the opt-outs are recorded)
    vgg_weights: str | None = None  # path to torchvision vgg19 weights (or --vgg-weights)
    lambda_p: float = 0.1  # CPCE: perceptual weight λp
    lambda_cycle: float = 1.0  # CIRCLE λ1: cycle-consistency L1
    lambda_identity: float = 0.5  # CIRCLE λ2: identity L1
    lambda_jst: float = 0.01  # CIRCLE λ3: joint sparsifying (TV) loss; not given by the paper
    tau: float = 0.5  # CIRCLE τ: JST split between ‖G(x)‖_TV and ‖y − G(x)‖_TV; not given
    lambda_adv: float = 1.0  # weight of the generators' adversarial terms (paper 1)
    lambda_l1: float = 0.0  # supervised L1 ‖G(x) − y‖₁ beside the GAN losses (paper 0)


@dataclass
class TrainConfig:
    epochs: int = 100  # paper
    batch_size: int = 128  # global, split across DDP workers
    lr: float = 1e-4  # paper: 1e-4 for the first half …
    lr_final: float = 2e-6  # … then linear to 2e-6 at the last epoch
    decay_start: float = 0.5  # fraction of epochs at constant lr
    betas: tuple[float, float] = (0.9, 0.999)  # Adam (CPCE code; CIRCLE code uses 0.5)
    n_critic: int = 4  # critic steps per generator step
    warmup_fraction: float = 0.0  # leading share of epochs trained with L1 only, no critic (paper 0)
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA (CPU runs fp32 unless amp_on_cpu)
    amp_on_cpu: bool = False
    channels_last: bool = True  # NHWC networks, on every device
    compile: bool = False  # torch.compile generator(s), VGG, critics' forward in the generator step
    fused_adam: bool = True  # one fused kernel per optimizer step on CUDA (the same Adam math)
    deterministic: bool = False  # torch deterministic algorithms (slower)
    max_patches_per_epoch: int | None = None  # cap an epoch (smoke runs, demo); None = all
    val_max_slices: int | None = None  # cap validation slices per subject; None = all kept
    validate_warmup: bool = True  # validate the L1 warm-up epochs too (learning curve only: the
    # best epoch is never one of them); false saves their validation (the demo)
    sample_slices: int = 2  # validation slices in each epoch's sample grid


@dataclass
class Config:
    model: str = "cpce"
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cpce: CPCEConfig = field(default_factory=CPCEConfig)
    circle: CircleConfig = field(default_factory=CircleConfig)


def default_config_path(model: str) -> Path:
    return defaults_dir("configs") / f"{model_spec(model).name}.yaml"


def bf16_autocast(train: TrainConfig, device_type: str) -> bool:
    """Whether training runs under bf16 autocast on this kind of device."""
    return train.amp and (device_type == "cuda" or train.amp_on_cpu)


def epochs_share(fraction: float, epochs: int) -> float:
    """`fraction` of `epochs`, without the float error of the product (0.55 × 100 is
    55.00000000000001, which `ceil` would make 56)."""
    return round(fraction * epochs, 9)


def warmup_epochs(train: TrainConfig) -> int:
    """Epochs of the L1 warm-up: `warmup_fraction` of the epochs, rounded half up, and always
    at least one adversarial epoch after it."""
    return min(int(epochs_share(train.warmup_fraction, train.epochs) + 0.5), train.epochs - 1)


def losses_described(config: Config) -> str:
    """"the paper's losses", or what the config changes in them (the recipe, docs/models.md)."""
    loss, warmup = config.loss, warmup_epochs(config.train)
    if warmup == 0 and loss.lambda_adv == 1.0 and loss.lambda_l1 == 0.0:
        return "the paper's losses"
    return (f"L1 warm-up {warmup} of {config.train.epochs} epochs, then λ_adv {loss.lambda_adv:g} "
            f"and λ_l1 {loss.lambda_l1:g} beside the paper's losses")


def perceptual_mode(config: Config) -> str | None:
    """The one decision on the perceptual term: None for a model without one; "none" when either
    switch the user knows turns it off (`loss.perceptual: none`, `loss.lambda_p: 0`); otherwise
    `loss.perceptual` (vgg | random_vgg)."""
    if not model_spec(config.model).perceptual:
        return None
    return "none" if config.loss.lambda_p == 0 else config.loss.perceptual


def perceptual_active(config: Config) -> bool:
    """Whether the VGG perceptual term is computed."""
    return perceptual_mode(config) not in (None, "none")


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """`value` checked against (and minimally converted to) the field's type annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise UserInputError(f"{key}: expected a list, got {value!r}")
        items = args if args[-1] is not Ellipsis else (args[0],) * len(value)
        if len(items) != len(value):
            raise UserInputError(f"{key}: expected {len(items)} values, got {len(value)}")
        return tuple(coerce(v, a, key) for v, a in zip(value, items, strict=True))
    if annotation is bool:
        if not isinstance(value, bool):
            raise UserInputError(f"{key}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserInputError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserInputError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise UserInputError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {annotation} for {key}")


def apply(target: Any, values: dict, prefix: str = "") -> None:
    """Set the fields of dataclass `target` from a nested dict; unknown keys are errors."""
    if not isinstance(values, dict):
        if not prefix:
            raise UserInputError(f"config: expected a mapping, got {values!r}")
        section = prefix.removesuffix(".")
        raise UserInputError(f"{section}: a section of settings, not a value ({values!r}); set its keys, "
                             f"e.g. {section}.KEY=VALUE")
    hints = typing.get_type_hints(type(target))
    known = {f.name for f in fields(target)}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise UserInputError(f"unknown config key {name!r} (known here: {', '.join(sorted(known))})")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            apply(current, value, f"{name}.")
        else:
            setattr(target, key, coerce(value, hints[key], name))


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=2e-4` → (["train", "lr"], 2e-4); the value is read as YAML."""
    if "=" not in text:
        raise UserInputError(f"--set {text!r}: expected KEY=VALUE, e.g. train.lr=2e-4")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw)
    # YAML 1.1 reads "2e-4" as a string; numbers without a dot are common in overrides.
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    return key.strip().split("."), value


def nest(path: list[str], value: Any) -> dict:
    for key in reversed(path):
        value = {key: value}
    return value


def validate(config: Config) -> Config:
    checks = [
        (config.model in MODELS, f"model must be one of {', '.join(MODELS)}, got {config.model!r}"),
        (config.data.patch_mode in ("grid", "random"), "data.patch_mode must be grid or random"),
        (config.data.patch_size >= 32 and config.data.patch_size % 16 == 0,
         "data.patch_size must be a multiple of 16 and at least 32 (the critics halve it 4 times)"),
        (config.train.epochs >= 1, "train.epochs must be >= 1"),
        (config.train.batch_size >= 1, "train.batch_size must be >= 1"),
        (config.train.lr > 0 and config.train.lr_final > 0, "train.lr and train.lr_final must be > 0"),
        (0.0 <= config.train.decay_start <= 1.0, "train.decay_start must be in [0, 1]"),
        (0.0 <= config.train.warmup_fraction <= 0.5, "train.warmup_fraction must be in [0, 0.5]"),
        *((math.isfinite(value) and value >= 0, f"loss.{name} must be a finite number >= 0, got {value}")
          for name, value in asdict(config.loss).items() if isinstance(value, float)),
        (math.isfinite(config.train.lr), f"train.lr must be a finite number, got {config.train.lr}"),
        (config.train.lr_final <= config.train.lr,
         "train.lr_final must be <= train.lr (the schedule decays)"),
        (0.0 <= config.data.foreground_bias <= 1.0, "data.foreground_bias must be in [0, 1]"),
        (config.train.max_patches_per_epoch is None or config.train.max_patches_per_epoch >= 1,
         "train.max_patches_per_epoch must be >= 1 (or null: all)"),
        (config.train.val_max_slices is None or config.train.val_max_slices >= 1,
         "train.val_max_slices must be >= 1 (or null: all)"),
        (config.train.sample_slices >= 0, "train.sample_slices must be >= 0"),
        (0 <= config.train.seed < 2**32, "train.seed must be in [0, 2**32)"),
        *((all(v >= 1 for v in (value if isinstance(value, tuple) else (value,))),
           f"{section}.{name} must be >= 1, got {value}")
          for section in MODELS for name, value in asdict(getattr(config, section)).items()
          if isinstance(value, int | tuple) and not isinstance(value, bool)),
        (config.train.n_critic >= 1, "train.n_critic must be >= 1"),
        (config.loss.perceptual in ("vgg", "random_vgg", "none"),
         "loss.perceptual must be vgg, random_vgg or none"),
        (0.0 <= config.loss.tau <= 1.0, "loss.tau must be in [0, 1]"),
        (0.0 <= config.circle.dropout < 1.0, "circle.dropout must be in [0, 1)"),
        (all(b >= 0 for b in config.train.betas) and all(b < 1 for b in config.train.betas),
         "train.betas must be in [0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserInputError(message)
    return config


def load_config(model: str | None = None, path: str | Path | None = None,
                overrides: list[str] = ()) -> Config:
    """Defaults ← `path` (default: the packaged configs/<model>.yaml) ← `--set` overrides."""
    if path is None:
        path = default_config_path(model or "cpce")
    raw = read_yaml(Path(path), "config file")
    config = Config()
    apply(config, raw)
    if model is not None and config.model != model:
        if "model" in raw:
            raise UserInputError(f"{path}: is a {config.model} config, but --model is {model}")
        config.model = model
    for text in overrides:
        keys, value = parse_override(text)
        apply(config, nest(keys, value))
    if model is not None and config.model != model:
        raise UserInputError(f"--set model={config.model} contradicts --model {model}")
    return validate(config)


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in `path` (a config or a search space), or one line saying why not."""
    if not path.exists():
        raise UserInputError(f"{path}: {what} not found")
    if not path.is_file():
        raise UserInputError(f"{path}: is not a file (give the {what} itself)")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def with_overrides(config: Config, values: dict[str, Any]) -> Config:
    """A copy of `config` with dotted keys set, e.g. {"loss.tau": 0.3} (a tuning trial)."""
    changed = copy.deepcopy(config)
    for key, value in values.items():
        apply(changed, nest(key.split("."), value))
    return validate(changed)


def flatten(config: Config) -> dict[str, Any]:
    """{"train.lr": 1e-4, …}: every key of the config."""
    out: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = value

    walk(asdict(config), "")
    return out


def model_params(config: Config) -> dict[str, Any]:
    """The flattened keys that belong to the config's model (MLflow params: a CPCE run does not
    list CIRCLE's weights)."""
    spec = model_spec(config.model)
    return {k: v for k, v in flatten(config).items() if spec.owns(k)}


def to_dict(config: Config) -> dict:
    """Plain (YAML-safe) nested dict; tuples become lists."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return plain(asdict(config))


def from_dict(raw: dict) -> Config:
    config = Config()
    apply(config, raw)
    return validate(config)


def config_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(config_yaml(config))
