"""Low-resolution simulation by k-space truncation, the seed paper's protocol (docs/data.md;
why: docs/architecture.md §4.1).

The 2-D spectrum of each slice is centred (fftshift), only the central (H·keep)×(W·keep) block is
kept, the rest is zeroed, and the inverse transform's magnitude is the LR image. LR and HR share
the same grid, so no resampling happens. One torch function serves prepare, training,
evaluation, reports and tests, batched on CPU or GPU.
"""

from __future__ import annotations

import torch


def kept_block(size: int, keep: float) -> slice:
    """Indices of the centred k-space rows (or columns) kept along an axis of `size` samples.

    After fftshift the DC sample sits at index size // 2; the block of round(size·keep) samples
    is centred on it (for 256 and keep 0.5: rows 64..191).
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    n = max(1, round(size * keep))
    start = size // 2 - n // 2
    return slice(start, start + n)


def centred_mask(h: int, w: int, keep: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W) bool mask of the kept block in centred (fftshifted) k-space coordinates."""
    mask = torch.zeros(h, w, dtype=torch.bool, device=device)
    mask[kept_block(h, keep), kept_block(w, keep)] = True
    return mask


def kept_mask(h: int, w: int, keep: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """The same block in the unshifted FFT layout (what `torch.fft.fft2` returns)."""
    return torch.fft.ifftshift(centred_mask(h, w, keep, device))


def truncate_kspace(x: torch.Tensor, keep: float = 0.5) -> torch.Tensor:
    """Centred complex k-space of `x` with everything outside the kept block set to zero.

    Args:
        x: real images, shape (..., H, W).
        keep: fraction of each k-space axis kept (0.5 keeps the central 25% of k-space).

    Returns:
        complex tensor (..., H, W), fftshifted (DC at [H // 2, W // 2]).
    """
    h, w = x.shape[-2:]
    spectrum = torch.fft.fftshift(torch.fft.fft2(x.to(torch.float32)), dim=(-2, -1))
    return spectrum * centred_mask(h, w, keep, x.device)


def degrade(x: torch.Tensor, keep: float = 0.5) -> torch.Tensor:
    """Zero-filled LR image of `x`: magnitude of the inverse FFT of the truncated k-space.

    Same result as `ifft2(ifftshift(truncate_kspace(x)))`, but the mask is moved to the
    unshifted layout instead of shifting the spectrum twice (half the time on a CPU).

    Args:
        x: HR images, shape (..., H, W), any float dtype, any device.
        keep: fraction of each k-space axis kept.

    Returns:
        float32 tensor of the same shape and device.
    """
    h, w = x.shape[-2:]
    mask = kept_mask(h, w, keep, x.device)
    return torch.fft.ifft2(torch.fft.fft2(x.to(torch.float32)) * mask).abs()
