"""The MLflow run schema (runs.py) on a real SQLite store: runs tagged by its builders are found by
exactly the right queries, and by the filter strings that older code wrote (stores stay readable)."""

import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
from helpers import ended_driver

from mrisr_ray import runs, tracking
from mrisr_ray.config import load_config, with_overrides
from mrisr_ray.data.cache import Cache
from mrisr_ray.resources import Resources
from mrisr_ray.runs import RunKind, TrialRef, TrialState
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.checkpoint import GeneratorFile, read_generator, write_generator
from mrisr_ray.workdir import Workdir

EXPERIMENT = "schema"


@pytest.fixture
def store(tmp_path) -> Tracking:
    return Tracking.for_workdir(Workdir(tmp_path / "work"))


@pytest.fixture
def cache(tiny_synthetic_cache) -> Cache:
    return Cache.open(tiny_synthetic_cache)


def ids(found) -> set[str]:
    return {run.info.run_id for run in found}


def stored(t: Tracking, query: str) -> set[str]:
    """Run ids found by a hand-written filter string, as earlier versions queried the store."""
    return ids(t.client().search_runs([t.experiment_id(EXPERIMENT)], query))


def start_study(t: Tracking, cache: Cache, name: str, model: str) -> str:
    time.sleep(0.01)  # distinct start times: "newest" must be well defined
    return tracking.start_run(t, EXPERIMENT, name, runs.study_tags(name, model, cache, "psnr",
                                                                    "model: cpce\n", "0" * 64))


def start_trial(t: Tracking, cache: Cache, study: str, study_run: str, trial_id: str,
                folds: int) -> tuple[str, list[str]]:
    """A trial run and its fold runs (all left running)."""
    config = load_config("cpce")
    trial_run = tracking.start_run(t, EXPERIMENT, f"{study}-{trial_id}",
                                   runs.trial_tags(study, trial_id, config.model, cache), study_run)
    trial = TrialRef(study=study, trial_id=trial_id, run_id=trial_run)
    fold_runs = [tracking.start_run(t, EXPERIMENT, f"{trial_id}-fold{k}",
                                    runs.training_tags(RunKind.FOLD, config, cache, k, cache.path,
                                                       f"{trial_id}-fold{k}", trial), trial_run)
                 for k in range(folds)]
    return trial_run, fold_runs


def finish_fold(t: Tracking, run_id: str, psnr: float, ssim: float) -> None:
    tracking.log_metrics(t, run_id, {runs.PSNR: psnr, runs.SSIM: ssim}, step=1)
    tracking.end_run(t, run_id)


def test_kinds_and_states_are_the_strings_stores_hold():
    assert [k.value for k in RunKind] == ["train", "fold", "trial", "study", "retrain", "report"]
    assert str(RunKind.FOLD) == f"{RunKind.FOLD}" == "fold" and RunKind.STUDY == "study"
    assert {s: s.status for s in TrialState} == {"running": "RUNNING", "complete": "FINISHED",
                                                "pruned": "KILLED", "failed": "FAILED"}


def test_queries_find_exactly_their_runs(store, cache):
    t = store
    s1 = start_study(t, cache, "s1", "cpce")
    s1_t0, s1_t0_folds = start_trial(t, cache, "s1", s1, "t0", 2)
    s1_t1, s1_t1_folds = start_trial(t, cache, "s1", s1, "t1", 2)
    s2 = start_study(t, cache, "s2", "cpce")
    s2_t0, s2_t0_folds = start_trial(t, cache, "s2", s2, "t0", 1)  # same trial id, other study
    s3 = start_study(t, cache, "s3", "circle")
    config = load_config("cpce")
    for kind, fold in ((RunKind.TRAIN, 0), (RunKind.RETRAIN, None)):  # fold-like, not in a study
        tracking.start_run(t, EXPERIMENT, kind.value, runs.training_tags(kind, config, cache, fold,
                                                                         cache.path, kind.value))
    for run_id in (*s1_t0_folds, s1_t1_folds[1], *s2_t0_folds):
        finish_fold(t, run_id, 30.0, 0.9)
    tracking.end_run(t, s1)
    tracking.end_run(t, s2)

    assert [r.info.run_id for r in runs.study_runs(t, EXPERIMENT)] == [s3, s2, s1]  # newest first
    assert ids(runs.study_runs(t, EXPERIMENT, study="s1")) == {s1}
    assert ids(runs.study_runs(t, EXPERIMENT, model="circle")) == {s3}
    assert ids(runs.study_runs(t, EXPERIMENT, finished=True)) == {s1, s2}
    assert [r.info.run_id for r in runs.study_runs(t, EXPERIMENT, model="cpce", finished=True)] == [s2, s1]
    assert ids(runs.study_runs(t, EXPERIMENT, study="s1", model="cpce", finished=True)) == {s1}
    assert runs.study_runs(t, EXPERIMENT, model="circle", finished=True) == []  # s3 is still running
    assert runs.study_runs(t, EXPERIMENT, study="s3", model="cpce") == []  # another model's study

    assert ids(runs.trial_runs(t, EXPERIMENT, "s1", "t0")) == {s1_t0}
    assert ids(runs.trial_runs(t, EXPERIMENT, "s2", "t0")) == {s2_t0}
    assert runs.trial_runs(t, EXPERIMENT, "s1", "t9") == []
    assert [r.info.run_id for r in runs.fold_runs(t, EXPERIMENT, "s1", "t0")] == s1_t0_folds
    assert ids(runs.fold_runs(t, EXPERIMENT, "s1")) == {*s1_t0_folds, *s1_t1_folds}
    assert ids(runs.fold_runs(t, EXPERIMENT, "s1", finished=True)) == {*s1_t0_folds, s1_t1_folds[1]}
    assert runs.best_scores(runs.fold_runs(t, EXPERIMENT, "s2", "t0")[0]) == (30.0, 0.9)

    assert runs.default_trial(t, EXPERIMENT, "s1") is None
    runs.mark_default_trial(t, EXPERIMENT, "s1", "t0")
    assert runs.default_trial(t, EXPERIMENT, "s1").info.run_id == s1_t0
    assert runs.default_trial(t, EXPERIMENT, "s2") is None

    # The filter strings of earlier versions find the same runs: the stored schema is unchanged.
    assert stored(t, "tags.kind = 'study' and tags.model = 'cpce' and attributes.status = 'FINISHED'") \
        == {s1, s2}
    assert stored(t, "tags.study = 's1' and tags.kind = 'trial' and tags.trial_id = 't0'") == {s1_t0}
    assert stored(t, "tags.kind = 'fold' and tags.trial_id = 't1' and tags.study = 's1'") \
        == set(s1_t1_folds)
    assert stored(t, "tags.kind = 'trial' and tags.study = 's1' and tags.default_config = 'true'") \
        == {s1_t0}
    assert stored(t, "tags.kind = 'trial' and tags.state = 'running'") == {s1_t0, s1_t1, s2_t0}
    assert len(stored(t, "tags.kind = 'train' and tags.fold = '0'")) == 1
    assert len(stored(t, "tags.kind = 'retrain' and tags.fold = 'all-train'")) == 1


def test_tag_builders_write_the_stored_names_and_values(store, cache):
    t = store
    runs.set_best_trial(t, start_study(t, cache, "s", "circle"), "t3")
    (study,) = runs.study_runs(t, EXPERIMENT, study="s")
    assert study.data.tags["best_trial"] == "t3" and study.data.tags["kind"] == "study"
    assert study.data.tags["protocol_hash"] == cache.manifest.protocol_hash
    circle, cpce = load_config("circle"), load_config("cpce", overrides=["loss.perceptual=random_vgg"])
    tags = runs.training_tags(RunKind.TRAIN, circle, cache, None, cache.path, "name")
    assert tags["fold"] == "all-train" and tags["perceptual"] == "n/a" and tags["ray_run_name"] == "name"
    assert "study" not in tags and "trial_id" not in tags
    tags = runs.training_tags(RunKind.FOLD, cpce, cache, 2, cache.path, "t-fold2", TrialRef("s", "t", "r"))
    assert (tags["kind"], tags["fold"], tags["study"], tags["trial_id"], tags["perceptual"]) == \
        ("fold", "2", "s", "t", "random_vgg")
    assert runs.resource_tags(Resources(workers=2)) == {"device": "cpu", "workers": "2"}
    assert runs.resource_tags(Resources(gpus_per_worker=0.5))["device"] == "cuda"
    assert runs.report_tags(cache, "m")["kind"] == "report"


def test_trial_ends_and_closing_what_tune_left_open(store, cache):
    t = store
    study = start_study(t, cache, "s", "cpce")
    trial, (fold_0, fold_1) = start_trial(t, cache, "s", study, "t0", 2)
    finish_fold(t, fold_0, 30.0, 0.9)
    runs.close_trial(t, EXPERIMENT, "s", "t0", TrialState.PRUNED)
    run = t.client().get_run(trial)
    assert run.info.status == "KILLED" and run.data.tags["state"] == "pruned"
    assert t.client().get_run(fold_0).info.status == "FINISHED"  # ended folds keep their status
    assert t.client().get_run(fold_1).info.status == "KILLED"

    done, _ = start_trial(t, cache, "s", study, "t1", 0)
    runs.end_trial(t, done, TrialState.COMPLETE)
    run = t.client().get_run(done)
    assert run.info.status == "FINISHED" and run.data.tags["state"] == "complete"

    # A trial run ended (e.g. by an interrupted study) while its state tag still says running.
    lost, _ = start_trial(t, cache, "s", study, "t2", 0)
    tracking.end_run(t, lost, "KILLED")
    runs.close_trial(t, EXPERIMENT, "s", "t2", TrialState.FAILED)
    run = t.client().get_run(lost)
    assert run.info.status == "KILLED" and run.data.tags["state"] == "failed"


def test_a_run_left_running_is_told_from_one_still_training(store):
    """The driver tag names this process; a run whose driver has ended (a process that exited, or
    a pid now held by another process) was left RUNNING; another machine's cannot be told."""
    t = store
    run_id = tracking.start_run(t, EXPERIMENT, "run", runs.Driver.this_process().tag())
    run = t.client().get_run(run_id)
    assert runs.Driver.of(run) == runs.Driver.this_process() and runs.Driver.of(run).running()
    assert not runs.left_running(run)
    me = runs.Driver.this_process()
    other = subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE)  # after `me`
    for gone in (ended_driver(), replace(me, pid=other.pid)):  # other: as a pid reused
        tracking.set_tags(t, run_id, gone.tag())
        run = t.client().get_run(run_id)
        assert runs.Driver.of(run) == gone and gone.running() is False and runs.left_running(run)
    other.communicate(b"\n")
    unreaped = subprocess.Popen([sys.executable, "-c", ""])  # ended, a zombie until waited for
    while runs.process_stat(unreaped.pid)[0] != "Z":
        time.sleep(0.05)
    assert replace(me, pid=unreaped.pid, started=runs.process_stat(unreaped.pid)[1]).running() is False
    unreaped.wait()
    tracking.end_run(t, run_id, "FINISHED")
    assert not runs.left_running(t.client().get_run(run_id))
    assert replace(me, machine="another-machine").running() is None  # or container, or boot
    assert replace(me, started="").running() is None  # no /proc there: nothing is told
    assert runs.Driver.of(t.client().get_run(tracking.start_run(t, EXPERIMENT, "older", {}))) is None


def test_config_and_generator_round_trip(store, tmp_path):
    t = store
    config = with_overrides(load_config("circle"), {"loss.tau": 0.3, "train.betas": [0.5, 0.9]})
    run_id = tracking.start_run(t, EXPERIMENT, "run", {})
    runs.log_config(t, run_id, config, search={"loss.tau": 0.3})
    assert runs.load_run_config(t, run_id) == config
    params = t.client().get_run(run_id).data.params
    assert params["loss.tau"] == params["search.loss.tau"] == "0.3" and params["model"] == "circle"
    assert not [k for k in params if k.startswith("cpce.") or k == "loss.lambda_p"]  # only its model's

    weights = tmp_path / runs.GENERATOR_ARTIFACT
    write_generator(weights, GeneratorFile(config=config, state_dict={"w": torch.ones(2)}))
    tracking.log_file(t, run_id, weights)
    downloaded = runs.download_generator(t, run_id, tmp_path / "down" / run_id)
    assert read_generator(downloaded).config == config and downloaded.parent == tmp_path / "down" / run_id


def test_experiments_open_on_the_runs_table(store):
    """MLflow 3's UI opens an experiment on its runs table only with the kind tag: a new experiment
    is created with it, one made without it (an earlier version's) gets it on first use."""
    new = store.experiment_id("new")
    assert store.client().get_experiment(new).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    old = store.client().create_experiment("old")
    assert tracking.EXPERIMENT_KIND_TAG not in store.client().get_experiment(old).tags
    assert store.experiment_id("old") == old
    assert store.client().get_experiment(old).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_ui_address_is_the_runs_table_of_an_existing_experiment(store):
    assert store.runs_url(5123, "mrisr-ray") == "http://127.0.0.1:5123"  # no store yet
    experiment = store.experiment_id("mrisr-ray")
    assert store.runs_url(5123, "mrisr-ray") == f"http://127.0.0.1:5123/#/experiments/{experiment}/runs"
    assert store.runs_url(5123, "elsewhere") == "http://127.0.0.1:5123"
