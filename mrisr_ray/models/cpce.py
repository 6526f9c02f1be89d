"""GAN-CPCE: conveying-path convolutional encoder-decoder generator and its critic.

After Shan et al. (IEEE TMI 2018) as the official CPCE code builds it (2-D variant), used for
MRI super-resolution by Lyu et al. Deviations from the paper: docs/models.md.

Generator (shapes for a 64×64 patch; every conv/deconv 3×3, stride 1, valid padding, no bias):
    conv1   1 → 32, ReLU                      62×62
    conv2  32 → 32, ReLU                      60×60
    conv3  32 → 32, ReLU                      58×58
    conv4  32 → 32, ReLU                      56×56
    deconv5 32 → 32; concat conv3 → ReLU → 1×1 64 → 32, ReLU    58×58
    deconv6 32 → 32; concat conv2 → ReLU → 1×1 64 → 32, ReLU    60×60
    deconv7 32 → 32; concat conv1 → ReLU → 1×1 64 → 32, ReLU    62×62
    deconv8 32 → 1                            64×64
    output  LR + deconv8 (cpce.residual, default; deconv8 zero-initialised, so G starts as
            the identity) or ReLU(deconv8) (cpce.residual: false, the official code)
Valid convolutions shrink by 2 per layer and the transposed ones grow back, so any input size
comes out unchanged: the same G runs on 64×64 patches and 256×256 slices.

Critic: 6 convs 3×3, same padding, widths 64, 64, 128, 128, 256, 256, strides 1, 2, 1, 2, 1, 2,
leaky ReLU 0.2 → FC 1024, leaky ReLU 0.2 → FC 1 (no sigmoid: a WGAN critic).
"""

from __future__ import annotations

import torch
from torch import nn

from mrisr_ray.models.configs import CPCEConfig


class ConveyingPath(nn.Module):
    """Concatenate an encoder feature with the decoder feature, ReLU, 1×1 conv back to `width`."""

    def __init__(self, width: int):
        super().__init__()
        self.squeeze = nn.Conv2d(2 * width, width, kernel_size=1, bias=False)

    def forward(self, encoder: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.squeeze(torch.relu(torch.cat([encoder, decoder], dim=1))))


class CPCEGenerator(nn.Module):
    def __init__(self, config: CPCEConfig | None = None):
        super().__init__()
        config = config or CPCEConfig()
        w, self.residual = config.width, config.residual
        self.conv1 = nn.Conv2d(1, w, 3, bias=False)
        self.conv2 = nn.Conv2d(w, w, 3, bias=False)
        self.conv3 = nn.Conv2d(w, w, 3, bias=False)
        self.conv4 = nn.Conv2d(w, w, 3, bias=False)
        self.deconv5 = nn.ConvTranspose2d(w, w, 3, bias=False)
        self.path5 = ConveyingPath(w)
        self.deconv6 = nn.ConvTranspose2d(w, w, 3, bias=False)
        self.path6 = ConveyingPath(w)
        self.deconv7 = nn.ConvTranspose2d(w, w, 3, bias=False)
        self.path7 = ConveyingPath(w)
        self.deconv8 = nn.ConvTranspose2d(w, 1, 3, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.xavier_uniform_(m.weight)  # official code: Glorot uniform
        if self.residual:
            # The untrained G returns its input: training starts at the LR image, not at zero.
            nn.init.zeros_(self.deconv8.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W)
        c1 = torch.relu(self.conv1(x))  # (B, 32, H-2, W-2)
        c2 = torch.relu(self.conv2(c1))  # (B, 32, H-4, W-4)
        c3 = torch.relu(self.conv3(c2))  # (B, 32, H-6, W-6)
        c4 = torch.relu(self.conv4(c3))  # (B, 32, H-8, W-8)
        d5 = self.path5(c3, self.deconv5(c4))  # (B, 32, H-6, W-6)
        d6 = self.path6(c2, self.deconv6(d5))  # (B, 32, H-4, W-4)
        d7 = self.path7(c1, self.deconv7(d6))  # (B, 32, H-2, W-2)
        out = self.deconv8(d7)  # (B, 1, H, W)
        return x + out if self.residual else torch.relu(out)


class CPCECritic(nn.Module):
    def __init__(self, patch_size: int = 64, config: CPCEConfig | None = None):
        super().__init__()
        config = config or CPCEConfig()
        layers: list[nn.Module] = []
        channels, size = 1, patch_size
        for i, width in enumerate(config.critic_widths):
            stride = 1 if i % 2 == 0 else 2
            layers += [nn.Conv2d(channels, width, 3, stride=stride, padding=1), nn.LeakyReLU(0.2)]
            channels, size = width, (size + stride - 1) // stride
        self.features = nn.Sequential(*layers)  # (B, 256, P/8, P/8)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * size * size, config.critic_fc),  # 16384 → 1024 for P = 64
            nn.LeakyReLU(0.2),
            nn.Linear(config.critic_fc, 1),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, P, P) → (B, 1)
        return self.head(self.features(x))
