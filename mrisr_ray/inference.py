"""Running a generator on whole slices: degrade HR to LR on the device, then G(LR)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mrisr_ray.data.degrade import degrade


@torch.no_grad()
def super_resolve(generator: nn.Module, lr: torch.Tensor, batch_size: int = 8,
                  amp: bool = False) -> torch.Tensor:
    """G applied to (n, H, W) LR slices in chunks, in eval mode; returns (n, H, W) float32."""
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    out = []
    for start in range(0, len(lr), batch_size):
        chunk = lr[start : start + batch_size, None].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(generator(chunk)[:, 0].float())
    generator.train(was_training)
    return torch.cat(out) if out else torch.zeros_like(lr)


def degrade_and_super_resolve(generator: nn.Module, hr: np.ndarray, keep: float,
                              batch_size: int = 8, amp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(LR, SR) numpy arrays for (n, H, W) HR slices."""
    device = next(generator.parameters()).device
    lr = degrade(torch.from_numpy(np.ascontiguousarray(hr)).to(device), keep)
    sr = super_resolve(generator, lr, batch_size, amp)
    return lr.cpu().numpy(), sr.cpu().numpy()
