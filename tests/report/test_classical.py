"""TV reconstruction solves each slice on its own: batch size changes nothing, the step is stable,
and its closed-form gradient is the objective's."""

import itertools

import numpy as np
import torch

from mrisr_ray.data import degrade
from mrisr_ray.data.degrade import kept_mask
from mrisr_ray.report.classical import (
    TV_EPSILON,
    TV_WEIGHTS,
    data_gradient,
    half_spectrum_mask,
    smoothed_tv,
    smoothed_tv_gradient,
    tv_reconstruct,
    tv_step,
)

KEEP = 0.5


def phantoms(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """n different (size, size) slices in [0, 1]: a few random ellipses of random intensity each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    slices = np.zeros((n, size, size), dtype=np.float32)
    for image in slices:
        for _ in range(rng.integers(2, 6)):
            cy, cx = rng.uniform(0.25, 0.75, 2)
            ry, rx = rng.uniform(0.05, 0.3, 2)
            angle = rng.uniform(0, np.pi)
            u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
            v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
            image[(u / ry) ** 2 + (v / rx) ** 2 < 1] = rng.uniform(0.2, 1.0)
    return torch.from_numpy(slices)


def objective(x: torch.Tensor, lr: torch.Tensor, weight: float) -> torch.Tensor:
    """The per-slice objective tv_reconstruct minimises, shape (n,)."""
    mask = kept_mask(*lr.shape[-2:], KEEP)
    residual = (torch.fft.fft2(x) - torch.fft.fft2(lr)) * mask
    data = 0.5 * (residual.abs() ** 2).sum(dim=(-2, -1)) / (lr.shape[-1] * lr.shape[-2])
    return data + weight * smoothed_tv(x)


def test_a_slice_alone_and_in_a_batch_of_60_agree():
    weight = TV_WEIGHTS[-1]  # the smallest step
    hr = phantoms(60)
    assert len({float(s.sum()) for s in hr}) == 60  # 60 different slices
    lr = degrade(hr, KEEP)
    batch = tv_reconstruct(lr, KEEP, weight)
    for index in (0, 31, 59):
        alone = tv_reconstruct(lr[index:index + 1], KEEP, weight)[0]
        assert float((alone - batch[index]).abs().max()) < 1e-4
        assert float((alone - lr[index]).abs().max()) > 1e-2  # it moved off the LR input


def test_the_step_is_stable_for_every_weight():
    """Projected gradient descent with step ≤ 1/L never increases the objective (from the first
    iterate on: x_LR itself overshoots 1, so its first projection onto [0, 1] may)."""
    lr = degrade(phantoms(4, seed=1), KEEP)
    for weight in TV_WEIGHTS:
        assert tv_step(weight) <= 1.0 / (1.0 + 8.0 * weight / TV_EPSILON)
        values = [objective(tv_reconstruct(lr, KEEP, weight, iterations=k), lr, weight)
                  for k in (1, 2, 10, 50)]
        for before, after in itertools.pairwise(values):
            assert bool((after <= before * (1 + 1e-6)).all()), (weight, before, after)
        assert bool((values[-1] < values[0]).all())


def test_the_closed_form_gradient_is_autograds():
    """At LR inputs and at random images in [0, 1] (many pixels with dx = dy = 0 and many without),
    for the smallest and the largest λ."""
    hr = phantoms(3, seed=2)
    lr = degrade(hr, KEEP)
    half_mask = half_spectrum_mask(*lr.shape[-2:], KEEP)
    for x in (lr.clone(), torch.rand_like(lr, generator=torch.Generator().manual_seed(0)), hr.clone()):
        for weight in (TV_WEIGHTS[0], TV_WEIGHTS[-1]):
            x.requires_grad_(True)
            (expected,) = torch.autograd.grad(objective(x, lr, weight).sum(), x)
            x.requires_grad_(False)
            closed = data_gradient(x, lr, half_mask) + weight * smoothed_tv_gradient(x)
            gap = float((closed - expected).abs().max())
            assert torch.allclose(closed, expected, rtol=1e-4, atol=1e-6), gap
