import inspect
from types import SimpleNamespace

import optuna
import pytest

from mrisr_ray.config import load_config
from mrisr_ray.defaults import defaults_dir
from mrisr_ray.errors import UserInputError
from mrisr_ray.tuning.outcomes import TrialOutcome, select_best
from mrisr_ray.tuning.space import (
    ASHA_REDUCTION_FACTOR,
    OPTUNA_STARTUP_TRIALS,
    default_space_path,
    load_space,
)
from mrisr_ray.tuning.study import optuna_sampler, scheduler


@pytest.mark.parametrize("model", ["cpce", "circle"])
def test_default_spaces_load_and_contain_the_paper_configuration(model):
    config = load_config(model)
    space = load_space(default_space_path(model), config)
    defaults = space.defaults(config)
    if model == "circle":
        assert defaults["loss.lambda_cycle"] == 1.0 and defaults["loss.lambda_identity"] == 0.5
        assert {"loss.lambda_jst", "loss.tau", "circle.dropout"} <= set(defaults)
    else:
        assert defaults == {"loss.lambda_p": 0.1, "train.lr": 1e-4, "train.decay_start": 0.5,
                            "train.n_critic": 4, "train.batch_size": 128, "loss.lambda_adv": 1.0,
                            "loss.lambda_l1": 0.0, "train.warmup_fraction": 0.0}
    # Trial 0 runs the paper's losses: no warm-up, λ_adv 1, no supervised L1.
    assert {k: defaults[k] for k in ("loss.lambda_adv", "loss.lambda_l1", "train.warmup_fraction")} \
        == {"loss.lambda_adv": 1.0, "loss.lambda_l1": 0.0, "train.warmup_fraction": 0.0}
    trial = optuna.trial.FixedTrial(defaults)
    space.define_by_run(trial)  # every dimension suggests from the trial
    assert trial.params == defaults


def write(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("body,message", [
    ("parameters:\n  loss.lambda_q: {type: float, low: 0.1, high: 1}", "unknown config key 'loss.lambda_q'"),
    ("parameters:\n  loss.tau: {type: float, low: 0.8, high: 0.2}", "empty range"),
    ("parameters:\n  loss.tau: {type: float, low: zero, high: 1}", "low must be a number"),
    ("parameters:\n  train.n_critic: {type: int, low: 1.5, high: 5}", "low must be an integer"),
    ("parameters:\n  train.n_critic: {type: integer, low: 1, high: 5}", "type must be one of"),
    ("parameters:\n  train.batch_size: {type: categorical, choices: []}", "non-empty list of choices"),
    ("parameters:\n  train.lr: {type: float, low: 0, high: 1, log: true}", "log range needs low > 0"),
    ("parameters:\n  train.lr: {type: float, low: 1e-3, high: 1e-2, step: 2}", "unknown field(s) step"),
    ("parameters:\n  train.lr: {type: float, low: 1.0e-3, high: 1.0e-2}", "lies outside the range"),
    ("parameters:\n  train.batch_size: {type: categorical, choices: [big, 128]}",
     "expected an integer"),
    ("params: {}", "a top-level key 'parameters'"),
    # Every draw must be a valid value of its key, and a key of the model searched.
    ("parameters:\n  train.warmup_fraction: {type: float, low: 0.0, high: 0.9}",
     "train.warmup_fraction: 0.9: train.warmup_fraction must be in"),
    ("parameters:\n  train.epochs: {type: int, low: -5, high: 10}", "train.epochs must be >= 1"),
    ("parameters:\n  loss.lambda_cycle: {type: float, low: 0.1, high: 1}",
     "loss.lambda_cycle: not a setting of cpce"),
    # Each end valid alone (lr_final 5e-5 <= the base lr 1e-4), not together.
    ("parameters:\n  train.lr: {type: float, low: 2.0e-5, high: 1.0e-3, log: true}\n"
     "  train.lr_final: {type: float, low: 1.0e-6, high: 5.0e-5, log: true}",
     "train.lr 2e-05 with train.lr_final 5e-05: train.lr_final must be <= train.lr"),
])
def test_bad_space_files(tmp_path, body, message):
    with pytest.raises(UserInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_space(write(tmp_path, body), load_config("cpce"))


def test_best_trial_ignores_trials_with_fewer_folds():
    outcomes = [
        TrialOutcome("a", {}, "complete", 3, psnr_mean=30.0, ssim_mean=0.90),
        TrialOutcome("b", {}, "pruned", 1, psnr_mean=35.0, ssim_mean=0.99),  # fold 0 is easier
        TrialOutcome("c", {}, "complete", 3, psnr_mean=31.0, ssim_mean=0.89),
        TrialOutcome("d", {}, "failed", 2, psnr_mean=40.0, ssim_mean=0.99),
    ]
    assert select_best(outcomes, 3, "psnr").trial_id == "c"
    assert select_best(outcomes, 3, "ssim").trial_id == "a"
    assert select_best(outcomes[1:2], 3, "psnr") is None


@pytest.mark.parametrize("body,message", [
    ("tpe: {startup_trials: 0}", "startup_trials must be an integer >= 1, got 0"),
    ("tpe: {startup_trials: true}", "startup_trials must be an integer >= 1, got True"),
    ("tpe: {n_startup_trials: 5}", "one key, startup_trials"),
    ("sampler: {startup_trials: 5}", "top-level key 'parameters'"),
    ("asha: {reduction_factor: 1}", "reduction_factor must be an integer >= 2, got 1"),
    ("asha: {reduction_factor: 2.5}", "reduction_factor must be an integer >= 2, got 2.5"),
    ("asha: {grace_period: 2}", "one key, reduction_factor"),
])
def test_bad_tpe_and_asha_settings(tmp_path, body, message):
    text = f"parameters:\n  loss.tau: {{type: float, low: 0.0, high: 1.0}}\n{body}"
    with pytest.raises(UserInputError, match=message):
        load_space(write(tmp_path, text), load_config("circle"))


@pytest.mark.parametrize("asha,factor", [("", 2), ("asha: {reduction_factor: 3}", 3),
                                         ("asha: {reduction_factor: 4}", 4)])
def test_asha_stops_trials_at_the_rungs_of_the_spaces_reduction_factor(tmp_path, asha, factor):
    """The study's ASHA takes the space's factor, and `asha_rungs` (what the plan prints) names the
    folds before the last at which Ray's ASHA decides: over 3 folds, after folds 1 and 2 with
    factor 2, only after fold 1 with 3."""
    body = f"parameters:\n  loss.tau: {{type: float, low: 0.0, high: 1.0}}\n{asha}"
    space = load_space(write(tmp_path, body), load_config("circle"))
    assert space.reduction_factor == factor
    for folds in range(1, 7):
        asha_scheduler = scheduler(SimpleNamespace(pruning=True),
                                   SimpleNamespace(folds=folds, space=space), "psnr_mean")
        rays = sorted(milestone for milestone, _ in asha_scheduler._brackets[0]._rungs if milestone < folds)
        assert space.asha_rungs(folds) == rays
    assert space.asha_rungs(3) == ([1, 2] if factor == 2 else [1])


@pytest.mark.parametrize("startup", [3, 6])
def test_tpe_draws_at_random_for_the_spaces_startup_trials_then_models(tmp_path, startup):
    """TPE's first `startup` trials are its internal RandomSampler's draws (same seed); the next
    one is modelled on them, so it differs."""
    body = ("parameters:\n  loss.tau: {type: float, low: 0.0, high: 1.0}\n"
            f"tpe: {{startup_trials: {startup}}}")
    space = load_space(write(tmp_path, body), load_config("circle"))
    assert space.startup_trials == startup

    def draws(kind: str) -> list[float]:
        study = optuna.create_study(sampler=optuna_sampler(kind, 7, space), direction="maximize")
        study.optimize(lambda t: -abs(t.suggest_float("loss.tau", 0.0, 1.0) - 0.3), n_trials=startup + 1)
        return [t.params["loss.tau"] for t in study.trials]

    tpe, random = draws("tpe"), draws("random")
    assert tpe[:startup] == random[:startup]
    assert tpe[startup] != random[startup]


def test_spaces_name_their_tpe_startup_or_take_optunas():
    for space, model in (("cpce", "cpce"), ("circle", "circle"), ("hpo_benchmark_cpce", "cpce")):
        loaded = load_space(default_space_path(space), load_config(model))
        assert (loaded.startup_trials, loaded.reduction_factor) == (3, ASHA_REDUCTION_FACTOR)
    demo = load_space(default_space_path("demo_cpce"),
                      load_config("cpce", defaults_dir("configs") / "demo_cpce.yaml"))
    assert demo.startup_trials == OPTUNA_STARTUP_TRIALS == \
        inspect.signature(optuna.samplers.TPESampler).parameters["n_startup_trials"].default


def test_an_unknown_sampler_is_refused():
    space = load_space(default_space_path("cpce"), load_config("cpce"))
    with pytest.raises(ValueError, match="unknown sampler 'grid'"):
        optuna_sampler("grid", 0, space)


def test_an_unreadable_space_file_is_one_error(tmp_path):
    binary = tmp_path / "space.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserInputError, match="not valid YAML"):
        load_space(binary, load_config("cpce"))
    with pytest.raises(UserInputError, match="is not a file"):
        load_space(tmp_path, load_config("cpce"))
