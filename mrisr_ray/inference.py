"""Running a generator on whole slices: degrade HR to LR on the device, then G(LR)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from mrisr_ray.data.degrade import degrade


@torch.inference_mode()
def super_resolve(generator: nn.Module, lr: torch.Tensor, batch_size: int | None = None,
                  amp: bool = False) -> torch.Tensor:
    """G applied to (n, H, W) LR slices in chunks, in eval mode; returns (n, H, W) float32.

    Runs a channels-last copy of G (the trained module is left as it is): on CPU that is 2-5×
    faster for whole 256×256 slices, and one slice per chunk keeps activations in cache
    (default batch: 1 on CPU, 8 on GPU)."""
    device = next(generator.parameters()).device
    batch_size = batch_size or (8 if device.type == "cuda" else 1)
    net = copy.deepcopy(generator).eval().to(memory_format=torch.channels_last)
    out = []
    for start in range(0, len(lr), batch_size):
        chunk = lr[start : start + batch_size, None].to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(net(chunk)[:, 0].float())
    return torch.cat(out) if out else torch.zeros_like(lr)


def degrade_and_super_resolve(generator: nn.Module, hr: np.ndarray, keep: float,
                              batch_size: int | None = None,
                              amp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(LR, SR) numpy arrays for (n, H, W) HR slices."""
    device = next(generator.parameters()).device
    lr = degrade(torch.from_numpy(np.ascontiguousarray(hr)).to(device), keep)
    sr = super_resolve(generator, lr, batch_size, amp)
    return lr.cpu().numpy(), sr.cpu().numpy()
