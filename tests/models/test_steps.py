import pytest
import torch
from helpers import TINY_MODELS

from mrisr_ray.config import load_config
from mrisr_ray.steps import build_steps

TINY = [*TINY_MODELS, "circle.dropout=0.0", "train.lr=1e-3"]


def tiny_steps(model, *extra):
    torch.manual_seed(0)
    return build_steps(load_config(model, overrides=[*TINY, *extra]))


def batch():
    g = torch.Generator().manual_seed(1)
    hr = torch.rand(8, 1, 32, 32, generator=g)
    return hr * 0.5, hr


@pytest.mark.parametrize("model", ["cpce", "circle"])
def test_critic_steps_reduce_the_critic_loss(model):
    steps = tiny_steps(model)
    lr, hr = batch()
    values = [steps.critic_step(lr, hr)["d_loss"].item() for _ in range(15)]
    assert values[-1] < values[0] - 0.1, values


@pytest.mark.parametrize("model", ["cpce", "circle"])
def test_generator_steps_reduce_the_generator_loss(model):
    steps = tiny_steps(model, "loss.lambda_l1=1.0")
    lr, hr = batch()
    values = [steps.generator_step(lr, hr)["g_loss"].item() for _ in range(15)]
    assert values[-1] < values[0], values


def test_generator_step_leaves_the_critic_untouched_and_vice_versa():
    steps = tiny_steps("circle")
    lr, hr = batch()
    critic_before = [p.clone() for p in steps.critics["D_Y"].parameters()]
    gen_before = [p.clone() for p in steps.generators["G"].parameters()]
    steps.generator_step(lr, hr)
    critic_after = list(steps.critics["D_Y"].parameters())
    assert all(torch.equal(a, b) for a, b in zip(critic_before, critic_after, strict=True))
    assert all(p.requires_grad for p in steps.critics["D_Y"].parameters())
    gen_after = [p.clone() for p in steps.generators["G"].parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(gen_before, gen_after, strict=True))
    steps.critic_step(lr, hr)
    assert all(torch.equal(a, b) for a, b in zip(gen_after, steps.generators["G"].parameters(), strict=True))


def test_step_losses_have_the_documented_keys():
    lr, hr = batch()
    cpce = tiny_steps("cpce")
    assert set(cpce.critic_step(lr, hr)) == {"d_loss", "gp"}
    assert set(cpce.generator_step(lr, hr)) == {"g_loss", "g_adv", "g_perceptual"}
    circle = tiny_steps("circle")
    assert set(circle.critic_step(lr, hr)) == {"d_loss", "d_y_loss", "d_x_loss", "gp"}
    assert set(circle.generator_step(lr, hr)) == {"g_loss", "g_adv", "g_cycle", "g_identity", "g_jst"}


@pytest.mark.parametrize("model", ["cpce", "circle"])
def test_everything_runs_under_bf16_autocast_on_cpu(model):
    steps = tiny_steps(model, "train.amp_on_cpu=true")
    lr, hr = batch()
    seen = []
    first_conv = next(m for m in steps.generators["G"].modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    with steps.autocast():
        steps.generators["G"](lr)
    assert seen == [torch.bfloat16]
    out = {**steps.critic_step(lr, hr), **steps.generator_step(lr, hr)}
    assert all(torch.isfinite(v) for v in out.values())


def test_state_dict_round_trip():
    a, b = tiny_steps("circle"), tiny_steps("circle", "train.seed=3")
    lr, hr = batch()
    a.critic_step(lr, hr)
    a.generator_step(lr, hr)
    b.load_state_dict(a.state_dict())
    a.train(False)
    b.train(False)
    torch.testing.assert_close(a.sr_generator(lr), b.sr_generator(lr))
    assert b.opt_g.state_dict()["state"].keys() == a.opt_g.state_dict()["state"].keys()


@pytest.mark.parametrize("model", ["cpce", "circle"])
def test_warmup_steps_train_the_generators_with_l1_and_leave_the_critics_alone(model):
    steps = tiny_steps(model)
    lq, gt = batch()
    critics = [p.clone() for d in steps.critics.values() for p in d.parameters()]
    values = [steps.warmup_step(lq, gt)["g_l1"].item() for _ in range(10)]
    assert values[-1] < values[0], values
    after = [p for d in steps.critics.values() for p in d.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(critics, after, strict=True))
    assert steps.opt_d.state_dict()["state"] == {}  # no critic update, not even a zero one


@pytest.mark.parametrize("model", ["cpce", "circle"])
def test_lambda_adv_scales_the_adversarial_term(model):
    lq, gt = batch()
    full = tiny_steps(model).generator_step(lq, gt)
    half = tiny_steps(model, "loss.lambda_adv=0.5").generator_step(lq, gt)
    torch.testing.assert_close(full["g_adv"], half["g_adv"])
    torch.testing.assert_close(full["g_loss"] - half["g_loss"], 0.5 * full["g_adv"])


@pytest.mark.parametrize("model", ["cpce", "circle"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_train_channels_last_builds_every_network_nhwc_on_cpu(model, channels_last):
    """Generators, critics and CPCE's VGG-19; and the same losses either way (a layout, not math)."""
    extra = ["loss.perceptual=random_vgg", "loss.lambda_p=0.1"] if model == "cpce" else []
    steps = tiny_steps(model, *extra, f"train.channels_last={str(channels_last).lower()}")
    nets = [*steps.generators.values(), *steps.critics.values(), getattr(steps, "perceptual", None)]
    convs = [m.weight for net in nets if net is not None for m in net.modules()
             if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) > 3 + (16 if model == "cpce" else 0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert all(w.is_contiguous(memory_format=layout) for w in convs)  # 3×3 kernels tell them apart
    lr, hr = batch()
    other = tiny_steps(model, *extra, f"train.channels_last={str(not channels_last).lower()}")
    for step in ("critic_step", "generator_step"):
        torch.manual_seed(2)  # the gradient penalty's interpolation draws
        a = getattr(steps, step)(lr, hr)
        torch.manual_seed(2)
        b = getattr(other, step)(lr, hr)
        assert a.keys() == b.keys()
        assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a), (a, b)
