"""A config value that cannot train is refused when the config is read, naming the key."""

import pytest

from mrisr_ray.config import load_config
from mrisr_ray.errors import UserInputError


@pytest.mark.parametrize("model,override,message", [
    ("circle", "loss.lambda_cycle=-1.0", "loss.lambda_cycle must be a finite number >= 0, got -1.0"),
    ("cpce", "loss.gp_weight=-10.0", "loss.gp_weight must be a finite number >= 0"),
    ("cpce", "loss.lambda_adv=.inf", "loss.lambda_adv must be a finite number >= 0, got inf"),
    ("cpce", "train.lr_final=1.0", "train.lr_final must be <= train.lr"),
    ("cpce", "data.foreground_bias=5.0", "data.foreground_bias must be in [0, 1]"),
    ("cpce", "train.max_patches_per_epoch=0", "train.max_patches_per_epoch must be >= 1"),
    ("cpce", "train.val_max_slices=0", "train.val_max_slices must be >= 1"),
    ("cpce", "train.sample_slices=-1", "train.sample_slices must be >= 0"),
    ("cpce", "train.seed=-1", "train.seed must be in [0, 2**32)"),
    ("circle", "circle.blocks=0", "circle.blocks must be >= 1, got 0"),
    ("cpce", "cpce.critic_widths=[64, 0, 128, 128, 256, 256]", "cpce.critic_widths must be >= 1"),
    ("cpce", "model=circle", "--set model=circle contradicts --model cpce"),
])
def test_values_that_cannot_train_are_refused(model, override, message):
    with pytest.raises(UserInputError) as refused:
        load_config(model, None, [override])
    assert message in str(refused.value)


def test_the_shipped_configs_pass():
    from mrisr_ray.defaults import defaults_dir

    for path in sorted(defaults_dir("configs").glob("*.yaml")):
        load_config(None, path)


def test_an_unreadable_config_file_is_one_error(tmp_path):
    binary = tmp_path / "config.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserInputError, match="not valid YAML"):
        load_config("cpce", binary)
    with pytest.raises(UserInputError, match="is not a file"):
        load_config("cpce", tmp_path)
