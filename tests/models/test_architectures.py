import pytest
import torch

from mrisr_ray.models import CircleCritic, CircleGenerator, CPCECritic, CPCEGenerator
from mrisr_ray.models.circle import CircleConfig, block_widths


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("make", [CPCEGenerator, CircleGenerator])
@pytest.mark.parametrize("size", [64, 256])
def test_generators_are_fully_convolutional_and_keep_the_size(make, size):
    net = make().eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, size, size)).shape == (2, 1, size, size)


@pytest.mark.parametrize("make", [CPCECritic, CircleCritic])
@pytest.mark.parametrize("patch", [32, 64])
def test_critic_fc_input_follows_the_patch_size(make, patch):
    critic = make(patch)
    assert critic(torch.rand(3, 1, patch, patch)).shape == (3, 1)
    with pytest.raises(RuntimeError):
        critic(torch.rand(1, 1, 2 * patch, 2 * patch))


def test_cpce_parameter_counts_match_docs():
    # docs/models.md: conv1 1·32·9 + conv2..4 3·(32·32·9) + deconv5..7 3·(32·32·9)
    # + 1×1 convs 3·(64·32) + deconv8 32·9, no biases.
    assert count(CPCEGenerator()) == 288 + 3 * 9216 + 3 * 9216 + 3 * 2048 + 288 == 62_016
    convs = [(1, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
    conv_params = sum(i * o * 9 + o for i, o in convs)
    assert count(CPCECritic(64)) == conv_params + (256 * 8 * 8 * 1024 + 1024) + 1025 == 17_923_521


def test_circle_parameter_counts_match_docs():
    widths = block_widths(64, 16, 12)
    assert widths == [64, 54, 48, 43, 39, 35, 31, 28, 25, 22, 18, 16] and sum(widths) == 423
    inputs = [1, *widths[:-1]]
    features = sum(i * o * 9 + o for i, o in zip(inputs, widths, strict=True))
    recon = (423 * 24 + 24) + (423 * 8 + 8) + (8 * 8 * 9 + 8) + 32 * 9
    assert count(CircleGenerator()) == features + recon == 150_808
    convs = sum(i * o * 16 + o for i, o in [(1, 64), (64, 128), (128, 256), (256, 512)])
    norms = 2 * (128 + 256 + 512)
    assert count(CircleCritic(64)) == convs + norms + (512 * 4 * 4 * 1024 + 1024) + 1025 == 11_146_945


def test_cpce_output_is_non_negative_and_circle_is_residual():
    x = torch.rand(1, 1, 32, 32)
    assert CPCEGenerator()(x).min() >= 0
    g = CircleGenerator(CircleConfig(dropout=0.0)).eval()
    torch.nn.init.zeros_(g.reconstruct.weight)
    torch.testing.assert_close(g(x), x)  # zero residual: output = input


def test_dropout_is_off_in_eval_mode():
    torch.manual_seed(0)
    g = CircleGenerator(CircleConfig(dropout=0.5))
    x = torch.rand(1, 1, 32, 32)
    g.train()
    assert not torch.allclose(g(x), g(x))
    g.eval()
    torch.testing.assert_close(g(x), g(x))
