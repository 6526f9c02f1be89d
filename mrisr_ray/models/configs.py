"""The architecture sections of a run configuration, one dataclass per model.

Kept free of torch so that reading a YAML config (`mrisr_ray.config`) never imports it; the
networks that read these live in `cpce.py` and `circle.py`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CPCEConfig:
    width: int = 32  # feature maps of every generator layer (paper: 32)
    residual: bool = True  # output = LR + deconv8(…), deconv8 zero-initialised; false: official ReLU output
    critic_widths: tuple[int, ...] = (64, 64, 128, 128, 256, 256)  # paper
    critic_fc: int = 1024  # paper


@dataclass
class CircleConfig:
    first_width: int = 64  # width of the first feature block (DCSCN rule shrinks it to min_width)
    min_width: int = 16
    blocks: int = 12
    dropout: float = 0.2  # drop probability (DCSCN keep 0.8); a tuning dimension
    branch_a: int = 24
    branch_b: int = 8
    critic_widths: tuple[int, ...] = (64, 128, 256, 512)
    critic_fc: int = 1024
