"""Classical comparisons that need no training.

- TV reconstruction: LR already lies on the HR grid, so bicubic interpolation is the identity;
  the classical baseline is total-variation-regularised reconstruction from the kept k-space:
      x* = argmin_x ½‖M F x − M F x_LR‖² + λ·TV_ε(x),
  solved by gradient descent from x_LR (M: the kept central block, F: the 2-D FFT). λ is chosen
  on validation subjects, never on test subjects.
- k-space data consistency (+DC): the SR output's kept k-space block is replaced by the LR
  input's, then back to image space. The LR input is a magnitude image, so its spectrum stands in
  for the measured data.
"""

from __future__ import annotations

import torch

from mrisr_ray.data.degrade import kept_mask

TV_EPSILON = 1e-3
TV_ITERATIONS = 150
TV_STEP = 0.5
TV_WEIGHTS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)  # λ grid searched on validation subjects


def data_consistency(sr: torch.Tensor, lr: torch.Tensor, keep: float) -> torch.Tensor:
    """|IFFT| of F(sr) with its kept block replaced by F(lr); (..., H, W) in and out."""
    mask = kept_mask(*sr.shape[-2:], keep, sr.device)
    spectrum = torch.where(mask, torch.fft.fft2(lr.float()), torch.fft.fft2(sr.float()))
    return torch.fft.ifft2(spectrum).abs()


def smoothed_tv(x: torch.Tensor) -> torch.Tensor:
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    return torch.sqrt(dx**2 + dy**2 + TV_EPSILON**2).sum(dim=(-2, -1)).mean()


def tv_reconstruct(lr: torch.Tensor, keep: float, weight: float,
                   iterations: int = TV_ITERATIONS) -> torch.Tensor:
    """TV-regularised reconstruction of (n, H, W) LR slices from their kept k-space."""
    mask = kept_mask(*lr.shape[-2:], keep, lr.device)
    measured = torch.fft.fft2(lr.float()) * mask
    x = lr.float().clone().requires_grad_(True)
    scale = lr.shape[-1] * lr.shape[-2]  # unnormalised FFT: keeps the data term per pixel
    for _ in range(iterations):
        residual = torch.fft.fft2(x) * mask - measured
        loss = 0.5 * (residual.abs() ** 2).sum(dim=(-2, -1)).mean() / scale + weight * smoothed_tv(x)
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x -= TV_STEP * grad
            x.clamp_(0.0, 1.0)
    return x.detach()
