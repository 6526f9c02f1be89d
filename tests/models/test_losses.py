import pytest
import torch
from torch import nn

from mrisr_ray import losses


def test_gradient_penalty_matches_hand_computation():
    class SquareCritic(nn.Module):  # D(x) = Σ x², ∇D = 2x
        def forward(self, x):
            return (x**2).flatten(1).sum(1, keepdim=True)

    real, fake = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    torch.manual_seed(7)
    penalty = losses.gradient_penalty(SquareCritic(), real, fake)
    torch.manual_seed(7)
    alpha = torch.rand(3, 1, 1, 1)
    mixed = alpha * real + (1 - alpha) * fake
    norms = (2 * mixed).flatten(1).norm(dim=1)
    torch.testing.assert_close(penalty, ((norms - 1) ** 2).mean())


def test_gradient_penalty_is_zero_for_unit_norm_linear_critic():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    with torch.no_grad():
        critic[1].weight.copy_(torch.randn(1, 16))
        critic[1].weight /= critic[1].weight.norm()
    penalty = losses.gradient_penalty(critic, torch.rand(5, 1, 4, 4), torch.rand(5, 1, 4, 4))
    assert penalty.item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic[1].weight *= 3  # ‖w‖ = 3 → (3 − 1)² = 4
    assert losses.gradient_penalty(critic, torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)).item() \
        == pytest.approx(4.0, rel=1e-5)


def test_critic_loss_is_wasserstein_plus_weighted_penalty():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.fill_(0.5)  # ‖w‖ = 1
    real, fake = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    loss, penalty = losses.critic_loss(critic, real, fake, gp_weight=10.0)
    assert penalty.item() == pytest.approx(0.0, abs=1e-10)
    assert loss.item() == pytest.approx(0.0 - 2.0)  # D(fake) = 0, D(real) = 4·0.5


def test_total_variation_and_jst_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [3.0, 6.0]]]])
    # vertical differences 3, 5 → mean 4; horizontal 1, 3 → mean 2
    assert losses.total_variation(x).item() == pytest.approx(6.0)
    y = torch.zeros_like(x)
    # τ·TV(x) + (1 − τ)·TV(y − x) = 0.3·6 + 0.7·6
    assert losses.jst_loss(x, y, tau=0.3).item() == pytest.approx(6.0)
    assert losses.jst_loss(x, x, tau=0.25).item() == pytest.approx(0.25 * 6.0)


def test_cycle_and_identity_losses_vanish_for_identity_maps():
    lr, hr = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    same = nn.Identity()
    assert losses.cycle_loss(same, same, lr, hr, lr, hr).item() == 0.0
    assert losses.identity_loss(same, same, lr, hr).item() == 0.0
    shift = lambda t: t + 0.1  # noqa: E731
    assert losses.identity_loss(shift, shift, lr, hr).item() == pytest.approx(0.2)


def test_perceptual_loss_is_feature_mse():
    features = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        features.weight.fill_(1.0)
    a, b = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    assert losses.perceptual_loss(features, a, b).item() == pytest.approx(1.0)
