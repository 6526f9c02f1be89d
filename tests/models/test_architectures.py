import numpy as np
import pytest
import torch

from mrisr_ray.models.circle import CircleCritic, CircleGenerator, block_widths
from mrisr_ray.models.configs import CircleConfig, CPCEConfig
from mrisr_ray.models.cpce import CPCECritic, CPCEGenerator


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


def test_untrained_generators_return_their_input_and_the_official_cpce_is_non_negative():
    x = torch.rand(1, 1, 32, 32) - 0.2
    torch.testing.assert_close(CPCEGenerator()(x), x)
    torch.testing.assert_close(CircleGenerator(CircleConfig(dropout=0.0)).eval()(x), x)
    official = CPCEGenerator(CPCEConfig(residual=False))(x)
    assert official.min() >= 0 and official.abs().max() > 0


def test_residual_generators_learn_from_their_zero_initialised_last_layer():
    x = torch.rand(2, 1, 32, 32)
    for g in (CPCEGenerator(), CircleGenerator(CircleConfig(dropout=0.0))):
        g(x).square().mean().backward()
        grads = [p.grad for p in g.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
        assert grads, "no parameter receives a gradient at initialisation"


def test_dropout_is_off_in_eval_mode():
    torch.manual_seed(0)
    g = CircleGenerator(CircleConfig(dropout=0.5))
    torch.nn.init.normal_(g.reconstruct.weight)  # a trained G: its residual is not zero
    x = torch.rand(1, 1, 32, 32)
    g.train()
    assert not torch.allclose(g(x), g(x))
    g.eval()
    torch.testing.assert_close(g(x), g(x))


@pytest.mark.parametrize("model", ["cpce", "circle"])
def test_each_untrained_generator_scores_as_its_lr_input_on_validation_slices(tiny_synthetic_cache, model):
    from mrisr_ray.config import load_config
    from mrisr_ray.data.cache import Cache
    from mrisr_ray.inference import degrade_and_super_resolve
    from mrisr_ray.metrics import score_subject
    from mrisr_ray.registry import model_spec

    cache = Cache.open(tiny_synthetic_cache)
    generator = model_spec(model).generator(load_config(model))
    for subject in cache.splits.fold(0).val:
        hr = np.asarray(cache.slices(subject, 2))
        lq, sr = degrade_and_super_resolve(generator, hr, cache.keep)
        assert abs(score_subject(subject, sr, hr).psnr - score_subject(subject, lq, hr).psnr) < 0.1
