"""Real Ray Tune + Optuna studies on the tiny synthetic cohort, real MLflow in a temp dir."""

import json
import signal
import stat
import subprocess
import sys

import optuna
import pytest
import torch
from helpers import TINY_RUN, wait_for

from mrisr_ray.config import load_config
from mrisr_ray.tracking import Tracking
from mrisr_ray.tuning.study import StudyRequest, run_study
from mrisr_ray.workdir import Workdir

pytestmark = pytest.mark.ray
ONE_EPOCH = [*TINY_RUN, "train.epochs=1"]
RIGGED = """parameters:
  train.lr: {type: categorical, choices: [1.0e-4, 0.3]}   # 0.3 wrecks a 1-epoch model
  loss.tau: {type: float, low: 0.0, high: 1.0}
"""
CPCE_SPACE = """parameters:
  loss.lambda_p: {type: float, low: 0.01, high: 1.0, log: true}
  train.n_critic: {type: int, low: 1, high: 2}
"""


def study_request(tmp_path, cache, model, space_text, name, trials=3, **kwargs) -> StudyRequest:
    space = tmp_path / f"{name}.yaml"
    space.write_text(space_text)
    workdir = Workdir(tmp_path / "work")
    base = load_config(model, overrides=[*ONE_EPOCH, "train.n_critic=1"])
    return StudyRequest(config=base, space_path=space, cache=cache, workdir=workdir,
                        tracking=Tracking.for_workdir(workdir), trials=trials, folds=2, name=name, **kwargs)


def runs(t: Tracking, query: str) -> list:
    return t.client().search_runs([t.experiment_id("mrisr-ray")], query)


def test_cpce_study_completes_and_writes_the_best_config(ray_session, tiny_synthetic_cache, tmp_path):
    # Two trials, one at a time: trial 0 (the paper's configuration) and one the sampler proposes.
    req = study_request(tmp_path, tiny_synthetic_cache, "cpce", CPCE_SPACE, "cpce-study", trials=2)
    on_ctrl_c = signal.getsignal(signal.SIGINT)
    result = run_study(req)
    assert signal.getsignal(signal.SIGINT) is on_ctrl_c  # not Tune's, which would swallow the next Ctrl-C
    assert result.best is not None and result.best.folds_done == 2
    best = load_config(path=result.best_config_path)  # the schema of a training config
    assert best.model == "cpce" and best.loss.lambda_p == pytest.approx(result.best.params["loss.lambda_p"])
    assert result.best_config_path == tmp_path / "work" / "reports" / "best_cpce.yaml"
    assert sum(o.is_default for o in result.outcomes) == 1  # trial 0 = the paper's configuration
    t = req.tracking
    (study,) = runs(t, "tags.kind = 'study'")
    assert study.info.status == "FINISHED" and study.data.tags["best_trial"] == result.best.trial_id
    assert {"psnr", "psnr_sd", "ssim", "ssim_sd", "cpu_hours", "trials_complete"} <= set(study.data.metrics)
    assert study.data.metrics["psnr"] == pytest.approx(result.best.psnr_mean)
    trials = runs(t, "tags.kind = 'trial'")
    assert len(trials) == 2 and {r.data.tags["mlflow.parentRunId"] for r in trials} == {study.info.run_id}
    folds = runs(t, "tags.kind = 'fold'")
    # Display names carry model, Optuna trial number and fold; t00 is the base configuration.
    assert sorted(r.info.run_name for r in trials) == ["cpce t00", "cpce t01"]
    default = next(r for r in trials if r.data.tags.get("default_config") == "true")
    assert default.info.run_name == "cpce t00" and default.data.tags["trial_number"] == "0"
    for fold in folds:
        trial = next(r for r in trials if r.info.run_id == fold.data.tags["mlflow.parentRunId"])
        assert fold.info.run_name == f"{trial.info.run_name} f{fold.data.tags['fold']}"
        assert fold.data.tags["ray_run_name"] == f"{fold.data.tags['trial_id']}-fold{fold.data.tags['fold']}"
    # Headline metrics on every level; only CPCE's parameters; the searched keys named in a tag.
    for run in [*trials, *folds]:
        if run.data.tags.get("state") != "failed":
            assert {"psnr", "ssim"} <= set(run.data.metrics), run.info.run_name
        assert not any(k.startswith("circle.") for k in run.data.params), run.info.run_name
        assert run.data.tags["searched"] == "loss.lambda_p, train.n_critic", run.info.run_name
    for fold in folds:
        assert {"val_psnr", "val_input_psnr", "input_psnr", "epoch"} <= set(fold.data.metrics)
    trial_ids = {r.info.run_id for r in trials}
    assert {r.data.tags["mlflow.parentRunId"] for r in folds} <= trial_ids
    complete = [o for o in result.outcomes if o.state == "complete"]
    assert len(folds) >= 2 * len(complete)
    artifacts = {a.path for a in t.client().list_artifacts(study.info.run_id)}
    assert {"best_cpce.yaml", "cpce-study_history.png"} <= artifacts
    # Disk economy: fold folders keep the best generator, not the full checkpoints.
    storage = tmp_path / "work" / "ray"
    assert not list(storage.glob("*-fold*/checkpoint_*"))
    assert len(list(storage.glob("*-fold*/best_generator.pt"))) == len(folds)


def test_asha_prunes_a_weak_trial_and_optuna_and_mlflow_record_it(ray_session, tiny_synthetic_cache,
                                                                   tmp_path):
    req = study_request(tmp_path, tiny_synthetic_cache, "circle", RIGGED, "rigged", seed=0)
    result = run_study(req)
    bad = [o for o in result.outcomes if o.params["train.lr"] == 0.3]
    assert bad, "the seeded TPE sampler should propose lr = 0.3 in trials 1-2"
    assert all(o.state == "pruned" and o.folds_done == 1 for o in bad)
    assert result.best is not None and result.best.params["train.lr"] == 1e-4
    study = optuna.load_study(study_name="rigged", storage=f"sqlite:///{req.workdir.optuna_db}")
    states = {t.params["train.lr"]: t.state for t in study.trials}
    assert states[0.3] == optuna.trial.TrialState.PRUNED
    pruned_runs = runs(req.tracking, "tags.kind = 'trial' and tags.state = 'pruned'")
    assert {r.data.tags["trial_id"] for r in pruned_runs} == {o.trial_id for o in bad}
    assert all(r.info.status == "KILLED" for r in pruned_runs)


def test_interrupted_study_resumes_without_training_a_fold_twice(tiny_synthetic_cache, tmp_path):
    """Interrupted (Ctrl-C) once trial 0's fold 0 has FINISHED and its fold 1 has written an epoch
    checkpoint; resumed: fold 0's run is untouched, fold 1 continues from its checkpoint."""
    space = tmp_path / "space.yaml"
    space.write_text(RIGGED.replace("0.3]", "2.0e-4]"))
    epochs = 10  # of ~1.5 s (64 patches): room for the Ctrl-C to land mid-fold
    common = ["--model", "circle", "--data", str(tiny_synthetic_cache), "--space", str(space),
              "--trials", "1", "--folds", "2", "--name", "paused", "--workdir", str(tmp_path / "w")]
    common += [arg for item in [*TINY_RUN, f"train.epochs={epochs}", "train.max_patches_per_epoch=64"]
               for arg in ("--set", item)]
    cli = [sys.executable, "-m", "mrisr_ray", "tune"]
    t = Tracking.for_workdir(Workdir(tmp_path / "w"))

    def fold_run(k: int):
        found = runs(t, f"tags.kind = 'fold' and tags.fold = '{k}'")
        return found[0] if found else None

    first = subprocess.Popen([*cli, *common], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    # Files first: reading the store while the tune process creates its schema would race it.
    wait_for(lambda: any((tmp_path / "w" / "ray").glob("*-fold0/best_generator.pt")), "fold 0's generator")
    wait_for(lambda: fold_run(0).info.status == "FINISHED", "fold 0 to finish")
    wait_for(lambda: any((tmp_path / "w" / "ray").glob("*-fold1/checkpoint_*/state.pt")),
             "fold 1's first checkpoint")
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 130, stderr[-2000:]
    assert "--resume --name paused" in stderr
    fold0, fold1 = fold_run(0), fold_run(1)
    assert fold1.info.status != "FINISHED"
    (fold1_folder,) = (tmp_path / "w" / "ray").glob("*-fold1")
    newest = torch.load(sorted(fold1_folder.glob("checkpoint_*/state.pt"))[-1], weights_only=True)["epoch"]
    # What a restart continues from is the checkpoint Ray Train registered last; its controller
    # registers a reported checkpoint a moment after the files land, so under load an interrupt
    # can fall between the two.
    snapshot = json.loads((fold1_folder / "checkpoint_manager_snapshot.json").read_text())
    checkpoint_epoch = snapshot["latest_checkpoint_result"]["metrics"]["epoch"]
    assert checkpoint_epoch in (newest, newest - 1) and checkpoint_epoch < epochs  # interrupted mid-fold
    # An epoch is logged once Ray registered its checkpoint (train/logger.py): MLflow may lag it by
    # an epoch (the resume logs that one), never lead the checkpoint a restart continues from.
    assert metric_steps(t, fold1.info.run_id)[-1:] in ([checkpoint_epoch], [checkpoint_epoch - 1], [])

    # --resume continues the same study only.
    other_space = tmp_path / "other-space.yaml"
    other_space.write_text(RIGGED)
    changed = [*common[: common.index("--space") + 1], str(other_space),
               *common[common.index("--space") + 2 :], "--resume"]
    refused = subprocess.run([*cli, *changed], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "the search space" in refused.stderr, refused.stderr[-2000:]
    assert len(refused.stderr.strip().splitlines()) == 1
    refused = subprocess.run([*cli, *common, "--set", "train.n_critic=2", "--resume"], capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == 2 and "the base configuration" in refused.stderr, refused.stderr[-2000:]
    fewer = [*common[: common.index("--folds") + 1], "1", *common[common.index("--folds") + 2 :], "--resume"]
    refused = subprocess.run([*cli, *fewer], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--folds 1 differs from the study's 2" in refused.stderr, \
        refused.stderr[-2000:]

    # Ray restores a study by unpickling its folder's files: one that everyone can write is refused.
    tuner_state = tmp_path / "w" / "ray" / "tune" / "paused" / "tuner.pkl"
    tuner_state.chmod(tuner_state.stat().st_mode | stat.S_IWOTH)
    refused = subprocess.run([*cli, *common, "--resume"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and f"{tuner_state}: owned by another user or writable by everyone" \
        in refused.stderr, refused.stderr[-2000:]
    assert len(refused.stderr.strip().splitlines()) == 1
    tuner_state.chmod(tuner_state.stat().st_mode & ~stat.S_IWOTH)

    second = subprocess.run([*cli, *common, "--resume"], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]

    trial_0 = fold0.data.tags["trial_id"]
    after = {int(r.data.tags["fold"]): r
             for r in runs(t, f"tags.kind = 'fold' and tags.trial_id = '{trial_0}'")}
    assert set(after) == {0, 1}  # no fold run was made twice
    assert after[0].info.end_time == fold0.info.end_time  # the finished fold was not touched
    assert metric_steps(t, fold0.info.run_id) == list(range(1, epochs + 1))
    assert int(after[1].data.tags["resumed_from_epoch"]) == checkpoint_epoch  # its last checkpoint
    # No epoch lost, none logged twice (an epoch trained again after the resume was never logged).
    assert metric_steps(t, fold1.info.run_id) == list(range(1, epochs + 1))
    assert after[1].info.status == "FINISHED"
    study = optuna.load_study(study_name="paused", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    assert len(study.trials) == 1 and all(tr.state.is_finished() for tr in study.trials)
    (study_run,) = runs(t, "tags.kind = 'study'")
    assert study_run.info.status == "FINISHED"
    assert (tmp_path / "w" / "reports" / "best_circle.yaml").is_file()


def metric_steps(t: Tracking, run_id: str) -> list[int]:
    """Steps of a fold's per-epoch validation PSNR, repeats included."""
    return sorted(m.step for m in t.client().get_metric_history(run_id, "val_psnr"))
