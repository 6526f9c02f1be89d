"""VGG-19 features up to conv5_4 + ReLU (the 16th conv layer) for GAN-CPCE's perceptual loss.

Defined here instead of imported from torchvision (PyPI's torchvision does not import beside the
CPU torch build; docs/architecture.md §4.10); the layer indices are torchvision's, so a
torchvision-format `vgg19` state_dict (`features.<i>.weight/bias`) loads as is.

Weights are never fetched silently. Resolution order (`resolve_vgg_weights`):
    1. `--vgg-weights PATH` (or the config's `loss.vgg_weights`)
    2. the environment variable MRISR_RAY_VGG19
    3. torch hub's cache: <torch.hub.get_dir()>/checkpoints/vgg19-dcbb9e9d.pth
    4. `--vgg-weights download`: fetch torchvision's file into the hub cache (needs a network)
Without weights the run stops with a message saying how to provide them, unless the config opts
out (`loss.perceptual: random_vgg` or `none`), which every run records.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from mrisr_ray.config import Config, perceptual_mode
from mrisr_ray.errors import UserInputError

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG_ENV = "MRISR_RAY_VGG19"
# torchvision's VGG-19 ("E") up to conv5_4: numbers are conv widths, "M" a 2×2 max pool.
LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MISSING_WEIGHTS_HELP = (
    "VGG-19 ImageNet weights are needed for the perceptual loss: pass --vgg-weights PATH to a "
    f"torchvision vgg19 state_dict ({VGG19_FILE}), set {VGG_ENV}=PATH, put the file in torch "
    "hub's cache, or use --vgg-weights download where a network exists; to run without them set "
    "loss.perceptual=random_vgg or none (recorded in the run)"
)


class VGG19Features(nn.Module):
    """Frozen VGG-19 conv1_1 … conv5_4 + ReLU; input a grey image in [0, 1], (B, 1, H, W)."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in LAYERS:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)  # indices 0..35, as torchvision's features[:36]
        for m in self.features:
            if isinstance(m, nn.Conv2d):  # torchvision's VGG init (matters for random_vgg only)
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # always frozen, always eval

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) → (B, 512, H/16, W/16)
        rgb = x.expand(-1, 3, -1, -1)
        return self.features((rgb - self.mean) / self.std)

    def load_torchvision(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        wanted = self.features.state_dict()
        picked = {k[len("features."):]: v for k, v in state_dict.items()
                  if k.startswith("features.") and k[len("features."):] in wanted}
        missing = sorted(set(wanted) - set(picked))
        if missing:
            raise UserInputError(f"{source}: not a torchvision VGG-19 state_dict (missing features."
                                 f"{missing[0]}, …)")
        for key, value in picked.items():
            if value.shape != wanted[key].shape:
                raise UserInputError(f"{source}: features.{key} has shape {tuple(value.shape)}, "
                                     f"VGG-19 needs {tuple(wanted[key].shape)}")
        self.features.load_state_dict(picked)


def hub_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def resolve_vgg_weights(option: str | None) -> Path:
    """Path of the VGG-19 weights file to use (see the module docstring for the order)."""
    if option == "download":
        torch.hub.load_state_dict_from_url(VGG19_URL, progress=False, map_location="cpu", check_hash=True,
                                           weights_only=True)
        return hub_cache_file()
    for candidate, origin in ((option, "--vgg-weights"), (os.environ.get(VGG_ENV), VGG_ENV)):
        if candidate:
            if not Path(candidate).is_file():
                raise UserInputError(f"{candidate}: VGG-19 weights file not found (from {origin})")
            return Path(candidate)
    if hub_cache_file().is_file():
        return hub_cache_file()
    raise UserInputError(MISSING_WEIGHTS_HELP)


def build_perceptual(mode: str, weights: str | None, seed: int = 0) -> VGG19Features | None:
    """The perceptual feature extractor for `loss.perceptual` = vgg | random_vgg | none."""
    if mode == "none":
        return None
    if mode == "random_vgg":
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        net = VGG19Features()
        torch.random.set_rng_state(generator_state)
        return net
    if mode != "vgg":
        raise UserInputError(f"loss.perceptual must be vgg, random_vgg or none, got {mode!r}")
    path = resolve_vgg_weights(weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoint files
        raise UserInputError(f"{path}: cannot read VGG-19 weights ({type(exc).__name__})") from None
    net = VGG19Features()
    net.load_torchvision(state, str(path))
    return net


def with_resolved_weights(config: Config, option: str | None = None) -> Config:
    """The config whose `loss.vgg_weights` names the weights file its perceptual term will load.

    Called once, on the driver, before any worker starts: a missing or unreadable file stops
    there with one line; workers then read `loss.vgg_weights` and resolve nothing.
    """
    if perceptual_mode(config) != "vgg":
        return config
    path = resolve_vgg_weights(option or config.loss.vgg_weights).resolve()
    build_perceptual("vgg", str(path))
    return replace(config, loss=replace(config.loss, vgg_weights=str(path)))
