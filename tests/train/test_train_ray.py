"""Real Ray Train runs (2 gloo workers) with a real MLflow store in a temp dir."""

import os
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import TINY_RUN, ended_driver

from mrisr_ray import tracking
from mrisr_ray.config import load_config
from mrisr_ray.errors import RunFailed, UserInputError
from mrisr_ray.resources import Resources
from mrisr_ray.runs import Driver
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.checkpoint import GENERATOR_FILE, STATE_FILE, read_generator, state_sha256
from mrisr_ray.train.fault_injection import FAIL_ONCE_ENV
from mrisr_ray.train.run import TrainRequest, train
from mrisr_ray.workdir import Workdir

pytestmark = pytest.mark.ray


def request(tmp_path: Path, cache: Path, model: str, **kwargs) -> TrainRequest:
    workdir = Workdir(tmp_path / "work")
    return TrainRequest(config=load_config(model, overrides=TINY_RUN), cache=cache, workdir=workdir,
                        tracking=Tracking.for_workdir(workdir), resources=Resources(workers=2),
                        device="cpu", **kwargs)


def metric_steps(t: Tracking, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in t.client().get_metric_history(run_id, key))


def artifacts(t: Tracking, run_id: str, folder: str = "") -> set[str]:
    return {a.path for a in t.client().list_artifacts(run_id, folder)}


@pytest.mark.parametrize("model", ["cpce", "circle"])
def test_two_worker_gloo_run_logs_metrics_and_artifacts(ray_session, tiny_synthetic_cache, tmp_path,
                                                        model):
    req = request(tmp_path, tiny_synthetic_cache, model)
    result = train(req)
    t = req.tracking
    run = t.client().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    losses = {"cpce": {"g_adv", "g_perceptual", "gp"}, "circle": {"g_cycle", "g_identity", "g_jst"}}
    for key in {"d_loss", "g_loss", "lr", "patches_per_s", "val_psnr", "val_ssim"} | losses[model]:
        assert metric_steps(t, result.run_id, key) == [1, 2], key
    assert run.data.params["train.epochs"] == "2" and run.data.tags["model"] == model
    assert run.data.tags["protocol_hash"] and "gradient penalty" in run.data.tags["deviations"]
    assert run.data.tags["device"] == "cpu" and run.data.tags["workers"] == "2"
    assert {"config.yaml", "splits.json", "best_generator.pt", "samples"} <= artifacts(t, result.run_id)
    assert artifacts(t, result.run_id, "samples") == {"samples/epoch_001.png", "samples/epoch_002.png"}
    assert 0 < result.best_psnr < 60 and 0 < result.best_ssim <= 1
    generator = read_generator(result.generator)  # self-describing: network, weights, training data
    assert generator.model == model
    assert "reconstruct.weight" in generator.state_dict or "deconv8.weight" in generator.state_dict
    assert generator.data.keep == 0.5 and generator.data.origin == "synthetic"


def test_workers_cannot_reach_mlflow_and_the_controller_logs_for_them(ray_session, tmp_path):
    """The runs above logged every metric and sample grid, and `train_worker` refuses to run
    without this worker environment; under it a worker's MLflow call fails, so everything they
    logged came from the controller (train/logger.py)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from mrisr_ray.train.logger import WORKER_RUNTIME_ENV

    store = Tracking.for_workdir(Workdir(tmp_path / "work"))

    def call_mlflow(_config: dict) -> str:
        try:
            store.client()
        except RuntimeError as exc:
            return str(exc)
        return "reached MLflow"

    run_config = ray.train.RunConfig(name="no-tracking", storage_path=str(tmp_path / "ray"),
                                     worker_runtime_env=WORKER_RUNTIME_ENV)
    result = TorchTrainer(call_mlflow, train_loop_config={},
                          scaling_config=ray.train.ScalingConfig(num_workers=1), run_config=run_config).fit()
    assert result.return_value.startswith("no MLflow calls in this process"), result.return_value
    store.client()  # the driver (where the controller's callback runs too) reaches it


def test_killed_run_resumes_from_its_epoch_1_checkpoint(ray_session, tiny_synthetic_cache, tmp_path,
                                                        monkeypatch):
    monkeypatch.setenv(FAIL_ONCE_ENV, f"1:{tmp_path / 'killed'}")
    first = request(tmp_path, tiny_synthetic_cache, "circle", max_failures=0)
    with pytest.raises(RunFailed, match="injected failure after epoch 1"):
        train(first)
    t = first.tracking
    (run,) = t.client().search_runs([t.experiment_id("mrisr-ray")])
    assert run.info.status == "FAILED"
    assert metric_steps(t, run.info.run_id, "val_psnr") == [1]
    storage = first.workdir.ray_storage / run.data.tags["ray_run_name"]
    (epoch_1,) = [p for p in storage.glob("checkpoint_*") if (p / GENERATOR_FILE).exists()]
    epoch_1_sha = state_sha256(read_generator(epoch_1 / GENERATOR_FILE).state_dict)

    refuse_what_is_not_the_same_run(first, run.info.run_id, storage, tmp_path)

    # Resumed from another work directory: the run's `ray_storage_path` tag finds its checkpoints.
    elsewhere = replace(first, workdir=Workdir(tmp_path / "elsewhere"), config=None,
                        resume_run_id=run.info.run_id)
    resumed = train(elsewhere)
    assert resumed.run_id == run.info.run_id and not (tmp_path / "elsewhere" / "ray").exists()
    tags = t.client().get_run(run.info.run_id).data.tags
    assert tags["resumed_from_epoch"] == "1" and tags["resumed_generator_sha256"] == epoch_1_sha
    assert tags["driver"] == Driver.this_process().tag()["driver"]  # its new driver
    assert metric_steps(t, run.info.run_id, "val_psnr") == [1, 2]  # ends at the configured 2
    assert t.client().get_run(run.info.run_id).info.status == "FINISHED"


def refuse_what_is_not_the_same_run(first: TrainRequest, run_id: str, storage: Path, tmp_path: Path):
    """`--resume` of a run still training, with other data, another config, a damaged checkpoint
    or checkpoints that are gone: one clear error on the driver, before any worker starts. The
    run is left RUNNING by a driver that has ended."""
    from mrisr_ray.data.synthetic import prepare_synthetic_cache

    again = replace(first, resume_run_id=run_id)
    # Still RUNNING with its driver (this process) alive: another `--resume` would train it twice.
    client = first.tracking.client()
    client.update_run(run_id, status="RUNNING")
    with pytest.raises(UserInputError, match=f"the run is still training in process {os.getpid()}; "
                                             f"stop it first"):
        train(again)
    # RUNNING with its driver gone, as a SIGKILL leaves it: the caller's resume continues it.
    tracking.set_tags(first.tracking, run_id, ended_driver().tag())
    reseeded = tmp_path / "reseeded"  # same subject ids and protocol, other scans and splits
    prepare_synthetic_cache(reseeded, n_subjects=7, n_slices=6, n_folds=3, test_fraction=0.1, seed=1)
    with pytest.raises(UserInputError, match=f"--data {reseeded} differs from the run's"):
        train(replace(again, cache=reseeded))
    changed = load_config("circle", overrides=[*TINY_RUN, "train.lr=0.5"])
    with pytest.raises(UserInputError, match=r"--config/--set change train\.lr from the run.s"):
        train(replace(again, config=changed))
    (latest,) = [p for p in storage.glob("checkpoint_*") if (p / STATE_FILE).exists()]
    state = (latest / STATE_FILE).read_bytes()
    (latest / STATE_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(UserInputError, match=r"state\.pt: not a mrisr-ray checkpoint"):
        train(again)
    (latest / STATE_FILE).write_bytes(state)
    storage.rename(storage.with_name("moved"))
    with pytest.raises(UserInputError, match="which does not exist here"):
        train(again)
    storage.with_name("moved").rename(storage)


def test_worker_failure_is_recovered_from_the_checkpoint(ray_session, tiny_synthetic_cache, tmp_path,
                                                         monkeypatch):
    monkeypatch.setenv(FAIL_ONCE_ENV, f"1:{tmp_path / 'crashed'}")
    req = request(tmp_path, tiny_synthetic_cache, "cpce", max_failures=1)
    result = train(req)
    assert (tmp_path / "crashed").exists()  # the failure did happen
    run = req.tracking.client().get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["resumed_from_epoch"] == "1"
    assert metric_steps(req.tracking, result.run_id, "lr") == [1, 2]


def test_a_worker_killed_mid_epoch_is_recovered_from_the_checkpoint(ray_session, tiny_synthetic_cache,
                                                                     tmp_path, monkeypatch):
    """SIGKILL, not an exception: the process vanishes during epoch 2 of 3 without a word."""
    monkeypatch.setenv(FAIL_ONCE_ENV, f"1:{tmp_path / 'killed'}:kill")
    req = request(tmp_path, tiny_synthetic_cache, "circle", max_failures=1)
    req = replace(req, config=load_config("circle", overrides=[*TINY_RUN, "train.epochs=3",
                                                               "train.max_patches_per_epoch=64"]))
    result = train(req)
    assert (tmp_path / "killed").exists()  # the kill did happen
    run = req.tracking.client().get_run(result.run_id)
    # Killed 0.3 s into epoch 2: it resumes from epoch 1's checkpoint (epoch 2's, had epoch 2
    # been over by then on a fast machine).
    assert run.info.status == "FINISHED" and run.data.tags["resumed_from_epoch"] in ("1", "2")
    assert metric_steps(req.tracking, result.run_id, "lr") == [1, 2, 3]


def test_all_train_uses_every_development_subject_and_no_validation(ray_session, tiny_synthetic_cache,
                                                                     tmp_path):
    req = request(tmp_path, tiny_synthetic_cache, "circle", fold=None)
    result = train(req)
    assert result.best_epoch == 2  # the last epoch is the result
    assert metric_steps(req.tracking, result.run_id, "val_psnr") == []
    assert req.tracking.client().get_run(result.run_id).data.tags["fold"] == "all-train"
