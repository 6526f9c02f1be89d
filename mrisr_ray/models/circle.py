"""GAN-CIRCLE: the generator used for both G (LR → HR) and F (HR → LR), and its critic.

After You et al. (IEEE TMI 2020) and the MRI adaptation of Lyu et al. LR and HR share the
256×256 grid here (k-space truncation, no resampling), so neither generator up- or downsamples:
both are the same-size network with a global residual. Deviations: docs/models.md.

Generator (DCSCN-style; shapes for an H×W input):
    feature extraction: 12 blocks of 3×3 conv + bias → leaky ReLU 0.1 → dropout,
        widths 64, 54, 48, 43, 39, 35, 31, 28, 25, 22, 18, 16 (each block feeds the next)
    skip-to-end concat of all 12 outputs                      (B, 423, H, W)
    reconstruction, two branches:
        A: 1×1 conv 423 → 24, leaky ReLU 0.1, dropout         (B, 24, H, W)
        B: 1×1 conv 423 → 8, leaky ReLU 0.1, dropout → 3×3 conv 8 → 8, dropout   (B, 8, H, W)
    concat A, B → 3×3 conv 32 → 1 (no bias)                   (B, 1, H, W)
    output = input + residual (the last conv zero-initialised: G and F start as the identity)

Critic: 4 stages of 4×4 conv stride 2 + bias → instance norm (not on the first) → leaky ReLU 0.2,
widths 64, 128, 256, 512 → FC 1024, leaky ReLU 0.2 → FC 1.
"""

from __future__ import annotations

import torch
from torch import nn

from mrisr_ray.models.configs import CircleConfig


def block_widths(first: int, minimum: int, blocks: int, gamma: float = 1.5) -> list[int]:
    """DCSCN filter rule: n_i = int((first - min)·(1 - (i/(blocks-1))^(1/gamma)) + min)."""
    last = blocks - 1
    return [first] + [
        int((first - minimum) * (1 - (i / last) ** (1 / gamma)) + minimum) for i in range(1, blocks)
    ]


class CircleGenerator(nn.Module):
    def __init__(self, config: CircleConfig | None = None):
        super().__init__()
        c = config or CircleConfig()
        widths = block_widths(c.first_width, c.min_width, c.blocks)
        self.features = nn.ModuleList()
        channels = 1
        for width in widths:
            self.features.append(nn.Sequential(
                nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.1), nn.Dropout(c.dropout)))
            channels = width
        concat = sum(widths)
        self.branch_a = nn.Sequential(
            nn.Conv2d(concat, c.branch_a, 1), nn.LeakyReLU(0.1), nn.Dropout(c.dropout))
        self.branch_b = nn.Sequential(
            nn.Conv2d(concat, c.branch_b, 1), nn.LeakyReLU(0.1), nn.Dropout(c.dropout),
            nn.Conv2d(c.branch_b, c.branch_b, 3, padding=1), nn.Dropout(c.dropout))
        self.reconstruct = nn.Conv2d(c.branch_a + c.branch_b, 1, 3, padding=1, bias=False)
        nn.init.zeros_(self.reconstruct.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W)
        outputs, h = [], x
        for block in self.features:
            h = block(h)
            outputs.append(h)
        skip = torch.cat(outputs, dim=1)  # (B, 423, H, W)
        branches = torch.cat([self.branch_a(skip), self.branch_b(skip)], dim=1)  # (B, 32, H, W)
        return x + self.reconstruct(branches)  # (B, 1, H, W)


class CircleCritic(nn.Module):
    def __init__(self, patch_size: int = 64, config: CircleConfig | None = None):
        super().__init__()
        c = config or CircleConfig()
        layers: list[nn.Module] = []
        channels, size = 1, patch_size
        for i, width in enumerate(c.critic_widths):
            layers.append(nn.Conv2d(channels, width, 4, stride=2, padding=1))
            if i > 0:
                # Per-sample normalisation keeps the per-sample gradient penalty valid.
                layers.append(nn.InstanceNorm2d(width, affine=True, track_running_stats=False))
            layers.append(nn.LeakyReLU(0.2))
            channels, size = width, size // 2
        self.features = nn.Sequential(*layers)  # (B, 512, P/16, P/16)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * size * size, c.critic_fc),  # 8192 → 1024 for P = 64
            nn.LeakyReLU(0.2),
            nn.Linear(c.critic_fc, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, P, P) → (B, 1)
        return self.head(self.features(x))
