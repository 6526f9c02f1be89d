"""The metric protocol every table uses (docs/metrics.md; why: docs/architecture.md §4.3).

Outputs are clipped to [0, 1]. Per subject: PSNR from the MSE over all its scored slices
(data_range 1.0); SSIM as the mean over slices of 2-D SSIM with Wang et al.'s settings
(Gaussian window σ 1.5, population covariance, data_range 1.0). Tables: mean ± SD over subjects,
plus the pooled per-slice mean PSNR/SSIM the paper most likely reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage.metrics import structural_similarity


def slice_ssim(sr: np.ndarray, hr: np.ndarray) -> float:
    """2-D SSIM of two (H, W) images in [0, 1]."""
    return float(structural_similarity(hr, sr, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def psnr_from_mse(mse: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


@dataclass(frozen=True)
class SubjectScore:
    subject: str
    psnr: float  # from the MSE over all scored slices
    ssim: float  # mean of per-slice SSIM
    slice_psnr: tuple[float, ...]
    slice_ssim: tuple[float, ...]


def score_subject(subject: str, sr: np.ndarray, hr: np.ndarray) -> SubjectScore:
    """Scores of (n, H, W) `sr` against `hr`; `sr` is clipped to [0, 1] first."""
    sr = np.clip(sr.astype(np.float64), 0.0, 1.0)
    hr = hr.astype(np.float64)
    per_slice_mse = ((sr - hr) ** 2).mean(axis=(1, 2))
    ssims = tuple(slice_ssim(s, h) for s, h in zip(sr, hr, strict=True))
    return SubjectScore(subject=subject, psnr=psnr_from_mse(float(per_slice_mse.mean())),
                        ssim=float(np.mean(ssims)),
                        slice_psnr=tuple(psnr_from_mse(float(m)) for m in per_slice_mse),
                        slice_ssim=ssims)


@dataclass(frozen=True)
class Summary:
    psnr_mean: float
    psnr_sd: float
    ssim_mean: float
    ssim_sd: float
    pooled_psnr: float  # mean over all slices of all subjects
    pooled_ssim: float
    n_subjects: int
    n_slices: int


def sample_sd(values: np.ndarray) -> float:
    """Sample standard deviation (ddof 1); 0 for a single value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarize(scores: list[SubjectScore]) -> Summary:
    psnr = np.array([s.psnr for s in scores])
    ssim = np.array([s.ssim for s in scores])
    slices_psnr = np.concatenate([s.slice_psnr for s in scores])
    slices_ssim = np.concatenate([s.slice_ssim for s in scores])
    return Summary(psnr_mean=float(psnr.mean()), psnr_sd=sample_sd(psnr), ssim_mean=float(ssim.mean()),
                   ssim_sd=sample_sd(ssim), pooled_psnr=float(slices_psnr.mean()),
                   pooled_ssim=float(slices_ssim.mean()), n_subjects=len(scores),
                   n_slices=len(slices_psnr))
