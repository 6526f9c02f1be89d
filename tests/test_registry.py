"""The model registry agrees with the config, and reading a config never imports torch."""

import dataclasses
import subprocess
import sys
import typing

from mrisr_ray.config import Config, load_config, model_params
from mrisr_ray.registry import MODELS


def test_every_registered_model_has_its_config_section_default_config_and_own_params():
    sections = typing.get_type_hints(Config)
    for name, spec in MODELS.items():
        assert sections[name] is spec.config and dataclasses.is_dataclass(spec.config)
        config = load_config(name)
        params = model_params(config)
        others = [other for other in MODELS if other != name]
        assert any(k.startswith(f"{name}.") for k in params)
        assert not any(k.startswith(f"{other}.") for k in params for other in others)
        assert all(k in params for k in spec.loss_keys)


def test_reading_a_yaml_config_does_not_import_torch():
    code = ("import sys; from mrisr_ray.config import load_config; from mrisr_ray.registry import MODELS; "
            "[load_config(m) for m in MODELS]; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
