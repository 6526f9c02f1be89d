"""The two GANs of the seed paper, one architecture per file, and the VGG-19 feature extractor."""

from mrisr_ray.models.circle import CircleConfig, CircleCritic, CircleGenerator
from mrisr_ray.models.cpce import CPCEConfig, CPCECritic, CPCEGenerator
from mrisr_ray.models.vgg import VGG19Features, build_perceptual

__all__ = [
    "CPCEConfig",
    "CPCECritic",
    "CPCEGenerator",
    "CircleConfig",
    "CircleCritic",
    "CircleGenerator",
    "VGG19Features",
    "build_perceptual",
]
