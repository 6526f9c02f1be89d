"""The `deviations` tag lists what a run's config makes active, and only that."""

from mrisr_ray.config import load_config
from mrisr_ray.defaults import defaults_dir
from mrisr_ray.deviations import VGG, deviation_lines


def test_the_paper_configs_list_only_what_the_code_and_their_values_switch_on():
    for model in ("cpce", "circle"):
        lines = deviation_lines(load_config(model))
        assert not any("configs/" in line for line in lines)  # no setting differs from the paper's
        assert not any("warm-up" in line for line in lines)
    assert VGG in deviation_lines(load_config("cpce"))
    assert "4 critic steps per generator step (official code 1)" in deviation_lines(load_config("circle"))


def test_values_that_turn_a_deviation_off_remove_its_line_and_name_the_setting():
    circle = deviation_lines(load_config("circle", None, [
        "train.n_critic=1", "circle.dropout=0.0", "loss.gp_weight=1.0"]))
    assert not any("dropout p=" in line or "GP weight" in line or "critic steps" in line for line in circle)
    assert {"train.n_critic 1 (configs/circle.yaml: 4)", "circle.dropout 0 (configs/circle.yaml: 0.2)",
            "loss.gp_weight 1 (configs/circle.yaml: 10)"} <= set(circle)
    cpce = deviation_lines(load_config("cpce", None, ["loss.perceptual=random_vgg", "cpce.residual=false"]))
    assert VGG not in cpce and not any("residual output" in line for line in cpce)
    assert {"loss.perceptual random_vgg (configs/cpce.yaml: vgg)",
            "cpce.residual false (configs/cpce.yaml: true)"} <= set(cpce)


def test_the_demo_configs_list_every_setting_they_change_but_not_how_a_run_executes():
    lines = deviation_lines(load_config("circle", defaults_dir("configs") / "demo_circle.yaml",
                                        ["train.seed=3", "train.compile=true"]))
    assert "L1 warm-up of the generator(s), no critic: 2 of 4 epochs, then fresh optimizers" in lines
    for expected in ("circle.branch_a 16 (configs/circle.yaml: 24)",
                     "loss.lambda_l1 10 (configs/circle.yaml: 0)",
                     "circle.critic_widths [32, 64, 128, 128] (configs/circle.yaml: [64, 128, 256, 512])",
                     "train.max_patches_per_epoch 256 (configs/circle.yaml: all)"):
        assert expected in lines
    assert not any(line.startswith(("train.seed", "train.compile")) for line in lines)
