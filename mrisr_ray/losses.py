"""Losses of both GANs, mean-reduced so that weights do not scale with the patch size.

WGAN-GP critic loss (Gulrajani et al.), the generators' adversarial term, VGG perceptual loss
(CPCE), cycle and identity L1 and the joint sparsifying transform (JST, CIRCLE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """mean over samples of (‖∇ D(x̂)‖₂ − 1)², x̂ = α·real + (1 − α)·fake, α ~ U(0, 1) per sample.

    The norm is per sample over all pixels (the official TF code's one-axis norm is a bug).
    `create_graph=True` so the penalty's gradient reaches the critic's weights.
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = grad.flatten(1).float().norm(2, dim=1)
    return ((norms - 1) ** 2).mean()


def critic_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                gp_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(WGAN-GP critic loss, its gradient-penalty part). One loss, one backward: the penalty's
    `autograd.grad` fires no DDP hook, so only inside the one backward are its double-backward
    gradients all-reduced with the rest (docs/architecture.md §4.4)."""
    penalty = gradient_penalty(critic, real, fake)
    loss = critic(fake).float().mean() - critic(real).float().mean() + gp_weight * penalty
    return loss, penalty


def adversarial_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """The generator's WGAN term: −mean D(G(x))."""
    return -critic(fake).float().mean()


def perceptual_loss(features: nn.Module, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """MSE between VGG-19 conv5_4 features of SR and HR (HR's without a graph: a constant)."""
    with torch.no_grad():
        target = features(hr).float()
    return F.mse_loss(features(sr).float(), target)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV, mean-reduced: mean |∂x| + mean |∂y| over (…, H, W)."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    return dx + dy


def jst_loss(sr: torch.Tensor, hr: torch.Tensor, tau: float) -> torch.Tensor:
    """Joint sparsifying transform: τ·‖G(x)‖_TV + (1 − τ)·‖y − G(x)‖_TV."""
    return tau * total_variation(sr) + (1 - tau) * total_variation(hr - sr)


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs().mean()


def cycle_loss(g: nn.Module, f: nn.Module, lr: torch.Tensor, hr: torch.Tensor,
               sr: torch.Tensor, lr_hat: torch.Tensor) -> torch.Tensor:
    """‖F(G(x)) − x‖₁ + ‖G(F(y)) − y‖₁, given sr = G(x) and lr_hat = F(y)."""
    return l1(f(sr), lr) + l1(g(lr_hat), hr)


def identity_loss(g: nn.Module, f: nn.Module, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """‖G(y) − y‖₁ + ‖F(x) − x‖₁: each generator leaves its own output domain unchanged."""
    return l1(g(hr), hr) + l1(f(lr), lr)
