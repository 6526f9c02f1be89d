import pytest
import torch

from mrisr_ray.errors import UserInputError
from mrisr_ray.models.vgg import MISSING_WEIGHTS_HELP, VGG19Features, build_perceptual


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    previous = torch.hub.get_dir()  # before TORCH_HOME changes: get_dir() follows it when unset
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("MRISR_RAY_VGG19", raising=False)
    torch.hub.set_dir(str(tmp_path / "torch-home" / "hub"))
    try:
        yield tmp_path
    finally:
        torch.hub.set_dir(previous)


def torchvision_format_weights(path, seed=0):
    """What torchvision's vgg19().state_dict() holds: features.<i> for 16 convs + a classifier."""
    torch.manual_seed(seed)
    reference = VGG19Features()
    state = {f"features.{k}": torch.randn_like(v) for k, v in reference.features.state_dict().items()}
    state["classifier.0.weight"] = torch.randn(8, 8)  # extra keys must be ignored
    torch.save(state, path)
    return state


def test_loads_torchvision_format_weights_from_a_file(empty_hub):
    path = empty_hub / "vgg19.pth"
    state = torchvision_format_weights(path)
    net = build_perceptual("vgg", str(path))
    assert torch.equal(net.features[34].weight, state["features.34.weight"])  # conv5_4
    assert isinstance(net.features[35], torch.nn.ReLU) and len(net.features) == 36
    assert not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training


def test_env_variable_and_hub_cache_are_found(empty_hub, monkeypatch):
    path = empty_hub / "env.pth"
    torchvision_format_weights(path, seed=1)
    monkeypatch.setenv("MRISR_RAY_VGG19", str(path))
    first = build_perceptual("vgg", None)
    monkeypatch.delenv("MRISR_RAY_VGG19")
    cached = empty_hub / "torch-home" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    second = build_perceptual("vgg", None)
    assert torch.equal(first.features[0].weight, second.features[0].weight)


def test_missing_weights_stop_with_instructions(empty_hub):
    with pytest.raises(UserInputError) as err:
        build_perceptual("vgg", None)
    assert str(err.value) == MISSING_WEIGHTS_HELP and "--vgg-weights" in MISSING_WEIGHTS_HELP
    with pytest.raises(UserInputError, match="weights file not found"):
        build_perceptual("vgg", str(empty_hub / "nope.pth"))


def test_wrong_files_are_rejected(empty_hub):
    junk = empty_hub / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(UserInputError, match="cannot read VGG-19 weights"):
        build_perceptual("vgg", str(junk))
    partial = empty_hub / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, partial)
    with pytest.raises(UserInputError, match="not a torchvision VGG-19 state_dict"):
        build_perceptual("vgg", str(partial))


def test_explicit_opt_outs(empty_hub):
    assert build_perceptual("none", None) is None
    a, b = build_perceptual("random_vgg", None, seed=2), build_perceptual("random_vgg", None, seed=2)
    assert torch.equal(a.features[0].weight, b.features[0].weight)
