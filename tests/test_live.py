"""The live view (live.py, console.py) read from a real SQLite store, as a study's trainings write
it: what is shown at each point, the ETA, the plain lines, and older stores' metric names."""

import io
import time

import pytest
from rich.console import Console as RichConsole

from mrisr_ray import console, live, runs, tracking
from mrisr_ray.config import load_config
from mrisr_ray.console import Console
from mrisr_ray.data.cache import Cache
from mrisr_ray.progress import Target
from mrisr_ray.runs import RunKind, TrialRef, TrialState
from mrisr_ray.tracking import Tracking
from mrisr_ray.workdir import Workdir

EXPERIMENT = "live"


@pytest.fixture
def store(tmp_path) -> Tracking:
    return Tracking.for_workdir(Workdir(tmp_path / "work"))


def start_fold(t: Tracking, cache: Cache, trial: TrialRef, fold: int) -> str:
    config = load_config("cpce")
    return tracking.start_run(t, EXPERIMENT, runs.display_name("cpce", trial.number, fold),
                              runs.training_tags(RunKind.FOLD, config, cache, fold, cache.path,
                                                 f"{trial.trial_id}-fold{fold}", trial), trial.run_id)


def log_epoch(t: Tracking, run_id: str, epoch: int, psnr: float) -> None:
    tracking.log_metrics(t, run_id, {"epoch": epoch, "val_psnr": psnr, "val_ssim": 0.9,
                                     "val_input_psnr": 35.0, "val_input_ssim": 0.88}, step=epoch)


def test_a_study_seen_through_its_runs(store, tiny_synthetic_cache):
    t, cache = store, Cache.open(tiny_synthetic_cache)
    target = Target(tracking=t, experiment=EXPERIMENT, model="cpce", epochs=4, study="s", trials=2, folds=2)
    started = time.time()
    assert live.events(None, live.snapshot(target, started)) == []  # nothing logged yet
    trial_run = tracking.start_run(t, EXPERIMENT, "cpce t00", runs.trial_tags("s", "a", "cpce", cache, 0))
    tracking.log_params(t, trial_run, {"search.loss.lambda_p": 0.1})
    trial = TrialRef(study="s", trial_id="a", run_id=trial_run, number=0)
    fold0 = start_fold(t, cache, trial, 0)
    log_epoch(t, fold0, 1, 35.5)
    first = live.snapshot(target, started)
    (row,) = first.folds
    assert (row.name, row.epoch, row.running, row.done) == ("cpce t00 f0", 1, True, 0.25)
    assert row.scores() == "35.50 dB / 0.9000 (LR 35.00 / 0.8800, +0.50 dB / +0.0200)"
    # A study's ETA: 4 fold trainings planned, a quarter of one done.
    assert first.eta() == pytest.approx(3.75 * row.seconds / 0.25, rel=0.05, abs=1.0)
    assert live.events(None, first) == []  # a study prints when trainings end, not every epoch

    tracking.log_metrics(t, fold0, {runs.PSNR: 36.0, runs.SSIM: 0.91}, step=4)
    tracking.end_run(t, fold0)
    tracking.log_metrics(t, trial_run, {runs.PSNR: 36.0, runs.PSNR_SD: 0.0, runs.SSIM: 0.91,
                                        runs.SSIM_SD: 0.0, "folds_done": 1}, step=1)
    runs.end_trial(t, trial_run, TrialState.PRUNED)  # ASHA stopped it after one fold
    second = live.snapshot(target, started)
    lines = live.events(first, second)
    assert lines[0].startswith("cpce t00 f0 best epoch: 36.00 dB / 0.9100 (LR 35.00 / 0.8800, +1.00 dB")
    assert lines[1] == "cpce t00 pruned: CV 36.00 ± 0.00 dB / 0.9100 ± 0.0000 over 1 fold(s); lambda_p=0.1"
    assert "1/2 trials · 1/4 fold trainings" in lines[2] and lines[2].endswith("at most")
    # The pruned trial's second fold never runs: 2 fold trainings are left, not 3.
    assert second.eta() == pytest.approx(2 * second.folds[0].seconds, abs=1.0)
    assert live.events(second, live.snapshot(target, started)) == []  # each event once

    # On a terminal: one table, the trial (its searched value and CV) above its fold.
    screen = io.StringIO()
    RichConsole(file=screen, width=160, color_system=None).print(console.study_table(second))
    rows = [line.strip() for line in screen.getvalue().splitlines()]
    assert rows[0].startswith("tune cpce · study s · 1/2 trials · 1/4 fold trainings · elapsed")
    trial_row = next(i for i, line in enumerate(rows) if line.startswith("cpce t00 "))
    assert "pruned" in rows[trial_row] and "CV 36.00 ± 0.00 dB" in rows[trial_row]
    assert "lambda_p=0.1" in rows[trial_row] and rows[trial_row + 1].startswith("cpce t00 f0  finished  1/4")


def test_a_single_training_prints_each_epoch_in_plain_mode(store, tiny_synthetic_cache, monkeypatch):
    monkeypatch.setattr(console, "POLL_S", 0.1)
    t, cache = store, Cache.open(tiny_synthetic_cache)
    run_id = tracking.start_run(t, EXPERIMENT, "cpce-run", runs.training_tags(
        RunKind.TRAIN, load_config("cpce"), cache, 0, cache.path, "cpce-run"))
    out = io.StringIO()
    view = Console(out=out, err=out)
    target = Target(tracking=t, experiment=EXPERIMENT, model="cpce", epochs=2, run_id=run_id)
    with view.watch(target):
        log_epoch(t, run_id, 1, 35.2)
        time.sleep(1.0)  # ten polls
        runs.mark_resumed(t, run_id, 1, "0" * 64)  # as a restarted worker group marks it
        log_epoch(t, run_id, 2, 35.4)
    text = out.getvalue()
    assert text.count("cpce-run resumed from the checkpoint of epoch 1") == 1
    assert "cpce-run epoch 1/2: 35.20 dB / 0.9000 (LR 35.00 / 0.8800, +0.20 dB / +0.0200)" in text
    assert "cpce-run epoch 2/2: 35.40 dB" in text  # the last poll, after the block
    assert "train cpce · cpce-run · elapsed" in text and "\x1b[" not in text


def test_plain_track_prints_start_and_end_lines():
    out = io.StringIO()
    assert list(Console(out=out, err=out).track(range(3), "scoring")) == [0, 1, 2]
    assert out.getvalue().splitlines()[0] == "scoring …"
    assert out.getvalue().splitlines()[-1].startswith("  scoring: 3/3 done in 0:00")


def test_headline_metrics_are_read_under_their_older_names_too(store, tiny_synthetic_cache):
    t, cache = store, Cache.open(tiny_synthetic_cache)
    config = load_config("cpce")
    old = tracking.start_run(t, EXPERIMENT, "old", runs.training_tags(RunKind.FOLD, config, cache, 0,
                                                                      cache.path, "old"))
    tracking.log_metrics(t, old, {"best_val_psnr": 34.0, "best_val_ssim": 0.8}, step=1)
    old_trial = tracking.start_run(t, EXPERIMENT, "t", runs.trial_tags("s", "t", "cpce", cache))
    tracking.log_metrics(t, old_trial, {"psnr_mean": 33.0, "psnr_sd": 0.5, "ssim_mean": 0.7}, step=1)
    client = t.client()
    assert runs.best_scores(client.get_run(old)) == (34.0, 0.8)
    trial = client.get_run(old_trial)
    assert [runs.headline(trial, k) for k in (runs.PSNR, runs.PSNR_SD, runs.SSIM, runs.SSIM_SD)] == \
        [33.0, 0.5, 0.7, None]
