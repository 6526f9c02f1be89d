"""Classical comparisons that need no training.

- TV reconstruction: LR already lies on the HR grid, so bicubic interpolation is the identity;
  the classical baseline is total-variation-regularised reconstruction from the kept k-space:
      x* = argmin_x ½‖M F x − M F x_LR‖²/(H·W) + λ·TV_ε(x)   for each slice on its own,
  solved by projected gradient descent onto [0, 1] from x_LR (M: the kept central block, F: the
  unnormalised 2-D FFT, TV_ε: the sum over pixels of √(dx² + dy² + ε²)). The objective of a batch
  is the sum of its slices' objectives, so a slice's iterates do not depend on the batch it is
  solved in; the step is 1/L with L = 1 + 8λ/ε, a bound on the Lipschitz constant of the
  gradient (`tv_step`), and the gradient is computed in closed form, its data term with real
  FFTs (`data_gradient`). λ is chosen on validation subjects, never on test subjects.
- k-space data consistency (+DC): the SR output's kept k-space block is replaced by the LR
  input's, then back to image space. The LR input is a magnitude image, so its spectrum stands in
  for the measured data.
"""

from __future__ import annotations

import torch

from mrisr_ray.data.degrade import kept_mask

TV_EPSILON = 1e-3
TV_ITERATIONS = 150
TV_WEIGHTS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)  # λ grid searched on validation subjects


def data_consistency(sr: torch.Tensor, lr: torch.Tensor, keep: float) -> torch.Tensor:
    """|IFFT| of F(sr) with its kept block replaced by F(lr); (..., H, W) in and out."""
    mask = kept_mask(*sr.shape[-2:], keep, sr.device)
    spectrum = torch.where(mask, torch.fft.fft2(lr.float()), torch.fft.fft2(sr.float()))
    return torch.fft.ifft2(spectrum).abs()


def differences(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dy, √(dx² + dy² + ε²)) of each (H, W) slice, on the (H−1, W−1) pixels that have both
    forward differences."""
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    return dx, dy, torch.sqrt(dx**2 + dy**2 + TV_EPSILON**2)


def smoothed_tv(x: torch.Tensor) -> torch.Tensor:
    """TV_ε of each (H, W) slice of `x`: shape (...,), one value per slice (summed over pixels)."""
    return differences(x)[2].sum(dim=(-2, -1))


def smoothed_tv_gradient(x: torch.Tensor) -> torch.Tensor:
    """∂ TV_ε / ∂x, the shape of `x`: pixel p's term √(dx² + dy² + ε²) moves with x at p
    (−(dx + dy)/√·), at its right neighbour (dx/√·) and at the one below (dy/√·)."""
    dx, dy, norm = differences(x)
    gx, gy = dx / norm, dy / norm
    grad = torch.zeros_like(x)
    grad[..., :-1, :-1] -= gx + gy
    grad[..., :-1, 1:] += gx
    grad[..., 1:, :-1] += gy
    return grad


def tv_step(weight: float) -> float:
    """Gradient step 1/L for the per-slice TV objective with weight λ.

    L bounds the Lipschitz constant of the objective's gradient. Data term ½‖M F x − y‖²/(H·W):
    its Hessian F⁻¹ M F (F unnormalised, so Fᴴ F = H·W·I) is an orthogonal projection, norm 1.
    TV_ε = Σ_p φ(D_p x) with φ(v) = √(‖v‖² + ε²): φ's Hessian has norm ≤ 1/ε and the forward
    differences D have ‖D‖² ≤ ‖D_x‖² + ‖D_y‖² ≤ 4 + 4, so λ·TV_ε contributes ≤ 8λ/ε. Gradient
    descent (projected onto [0, 1]) decreases the objective for any step ≤ 1/L and diverges
    in flat regions for steps above 2/L, so no fixed step suits every λ: with ε = 1e-3 the old
    0.5 was above 2/L from λ = 1e-3 up (L = 9 there, 241 at λ = 3e-2).
    """
    return 1.0 / (1.0 + 8.0 * weight / TV_EPSILON)


def half_spectrum_mask(h: int, w: int, keep: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """(M(k) + M(−k))/2 on the frequencies `rfft2` keeps, (H, W // 2 + 1). A centred block on an
    even-sized grid is not symmetric (for keep 0.5 it holds −H/4 but not +H/4, likewise along W):
    its edge rows and columns get 1/2."""
    mask = kept_mask(h, w, keep, device).float()
    mirrored = torch.roll(torch.flip(mask, (-2, -1)), (1, 1), (-2, -1))  # M(−k mod N)
    return ((mask + mirrored) / 2)[..., : w // 2 + 1]


def data_gradient(x: torch.Tensor, lr: torch.Tensor, half_mask: torch.Tensor) -> torch.Tensor:
    """∂/∂x of ½‖M F x − y‖²/(H·W) for real x, with y = M F x_LR: Re(Fᴴ M F (x − x_LR))/(H·W) =
    Re(IFFT(M F (x − x_LR))), since M² = M and Fᴴ = H·W·IFFT. F of a real image is Hermitian, so
    taking the real part replaces M by its symmetric part (`half_spectrum_mask`) and the whole
    product is Hermitian: `rfft2`/`irfft2` compute it in about half the time of complex FFTs.
    tests/report/test_classical.py compares it with autograd's gradient of the objective."""
    return torch.fft.irfft2(torch.fft.rfft2(x - lr) * half_mask, s=x.shape[-2:])


def tv_reconstruct(lr: torch.Tensor, keep: float, weight: float,
                   iterations: int = TV_ITERATIONS) -> torch.Tensor:
    """TV-regularised reconstruction of (n, H, W) LR slices from their kept k-space.

    Each slice is solved on its own problem: the batch objective is the sum (not the mean) of the
    per-slice objectives, so a slice's gradient, and its result, do not depend on how many
    slices share the batch.
    """
    lr = lr.float()
    half_mask = half_spectrum_mask(*lr.shape[-2:], keep, lr.device)
    x = lr.clone()
    step = tv_step(weight)  # per-slice Lipschitz bound: stable for every λ, whatever the batch
    for _ in range(iterations):
        x -= step * (data_gradient(x, lr, half_mask) + weight * smoothed_tv_gradient(x))
        x.clamp_(0.0, 1.0)
    return x
