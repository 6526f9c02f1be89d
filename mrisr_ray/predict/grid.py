"""Bringing a scan to what a generator expects: a volume on its training grid whose k-space
outside the kept block is empty (the zero-filled LR image of docs/data.md).

A genuinely low-resolution scan is that image on a coarser grid: zero-padding its centred 2-D
spectrum by 1/keep (`zero_fill`) puts its samples exactly into the kept block of the finer grid
(`kept_block`), so 128×128 becomes 256×256 at keep 0.5. `outside_energy` tells the three kinds
of input apart: a zero-filled image holds ~0.1% of its spectral energy outside the block (the
magnitude image spreads a little), a full-resolution scan ~1.5% (the real IXI subject).
"""

from __future__ import annotations

import numpy as np
import torch

from mrisr_ray.data.degrade import kept_block, kept_mask
from mrisr_ray.errors import UserInputError

ZERO_FILLED_OUTSIDE = 0.005  # above this share of energy outside the block, an input is not LR


def fine_size(size: int, keep: float) -> int:
    """The training-grid size whose kept block has `size` samples."""
    fine = round(size / keep)
    block = kept_block(fine, keep)
    if block.stop - block.start != size:
        raise UserInputError(f"--zero-fill: {size} samples do not fill the kept block of any grid at "
                             f"keep {keep:g}")
    return fine


def zero_fill(x: torch.Tensor, keep: float) -> torch.Tensor:
    """(n, h, w) slices → (n, H, W) on the grid 1/keep finer: the centred spectrum zero-padded,
    magnitude of the inverse FFT, intensities preserved."""
    n, h, w = x.shape
    fh, fw = fine_size(h, keep), fine_size(w, keep)
    spectrum = torch.fft.fftshift(torch.fft.fft2(x.to(torch.float32)), dim=(-2, -1))
    padded = torch.zeros(n, fh, fw, dtype=spectrum.dtype, device=x.device)
    padded[:, kept_block(fh, keep), kept_block(fw, keep)] = spectrum
    # ifft2 divides by H·W instead of h·w: scale back so intensities keep their values.
    return torch.fft.ifft2(torch.fft.ifftshift(padded, dim=(-2, -1))).abs() * (fh * fw / (h * w))


def zero_filled_affine(affine: np.ndarray, coarse: tuple[int, int], fine: tuple[int, int]) -> np.ndarray:
    """The canonical affine of the finer grid: voxel 0 stays where it was (the padded spectrum's
    samples start there), the in-plane voxel size shrinks by coarse/fine."""
    return affine @ np.diag([coarse[0] / fine[0], coarse[1] / fine[1], 1.0, 1.0])


def outside_energy(x: torch.Tensor, keep: float) -> float:
    """Share of the spectral energy of (n, H, W) slices outside the kept block."""
    power = torch.fft.fft2(x.to(torch.float32)).abs() ** 2
    mask = kept_mask(*x.shape[-2:], keep, x.device)
    return float(power[..., ~mask].sum() / power.sum().clamp_min(1e-30))
