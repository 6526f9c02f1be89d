"""`mrisr-ray demo` end to end (prepare, tune both models across folds, report), then the report
checked against an independent computation, rerun for reproducibility, and its bad inputs."""

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from helpers import ended_driver, run_cli
from skimage.metrics import structural_similarity
from test_cli_prepare import assert_one_line_error

from mrisr_ray import tracking
from mrisr_ray.config import with_overrides
from mrisr_ray.data.cache import Cache
from mrisr_ray.errors import UserInputError
from mrisr_ray.metrics import SubjectScore
from mrisr_ray.progress import no_watch
from mrisr_ray.report.evaluate import Evaluation, paired_test
from mrisr_ray.report.run import (
    ReportInterrupted,
    ReportRequest,
    earlier_retrain,
    make_report,
    model_sources,
)
from mrisr_ray.runs import GIT_COMMIT, load_run_config
from mrisr_ray.tracking import Tracking
from mrisr_ray.workdir import Workdir

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    result = run_cli("demo", "--workdir", workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stdout + result.stderr  # the whole console


def read_metrics(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def numpy_lr(hr: np.ndarray) -> np.ndarray:
    spectrum = np.fft.fftshift(np.fft.fft2(hr), axes=(-2, -1))
    h, w = hr.shape[-2:]
    mask = np.zeros((h, w))
    mask[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = 1
    return np.abs(np.fft.ifft2(np.fft.ifftshift(spectrum * mask, axes=(-2, -1))))


def test_demo_prints_the_table_timing_and_where_things_are(demo):
    workdir, stdout = demo
    assert "these numbers are not IXI numbers" in stdout
    for row in ("LR input (zero-filled)", "TV reconstruction", "GAN-CPCE +DC", "GAN-CIRCLE",
                "(paper, quoted)"):
        assert row in stdout
    assert "time: prepare" in stdout and "total" in stdout
    assert f"report: {workdir / 'reports' / 'report.md'}" in stdout
    assert "mrisr-ray ui" in stdout
    for name in ("report.md", "metrics.csv", "comparison.png", "subjects_boxplot.png", "cv_per_fold.png",
                 "best_cpce.yaml", "best_circle.yaml"):
        assert (workdir / "reports" / name).is_file(), name
    report = (workdir / "reports" / "report.md").read_text()
    # Every figure is linked, the studies' own figures too; importances need 10 complete trials.
    pngs = sorted(p.name for p in (workdir / "reports").glob("*.png"))
    assert len(pngs) == 5 and not [name for name in pngs if f"![{name}]({name})" not in report]
    assert not [name for name in pngs if name.endswith("_importance.png")]
    # HR, LR, TV and each model with and without +DC, one image pixel per figure pixel.
    from PIL import Image

    width, height = Image.open(workdir / "reports" / "comparison.png").size
    assert width >= 7 * 256 and height >= 4 * 256
    assert "Paired Wilcoxon signed-rank tests" in report and "(n = 6)" in report
    assert "GAN-CPCE vs LR input (zero-filled): PSNR p = " in report
    # Without ImageNet VGG-19 weights the demo trains CPCE without its (then inert) perceptual term.
    no_weights = "no VGG-19 ImageNet weights found" in stdout
    assert ("- **Perceptual loss opt-out: `none`**" in report) == no_weights
    cpce_configuration = next(line for line in report.splitlines() if line.startswith("- Configuration ("))
    assert ("lambda_p" in cpce_configuration) != no_weights
    assert "Deviations from the paper" in report
    assert "train.epochs 4 (configs/cpce.yaml: 100)" in report  # the demo config, as a deviation
    assert "central 25% of 2-D k-space (50% of each axis)" in report  # the cache's keep 0.5
    # The demo's trial 0 is its base configuration, the recipe, and the report says so.
    assert "Trial 0 of the same study (its base configuration, with L1 warm-up 2 of 4 epochs" in report


# The demo's tuned models must beat the LR input on the test subjects (mean over subjects) by at
# least min(+0.3 dB / +0.005 SSIM, half of what the demo measured: CPCE +0.28 dB / +0.021, CIRCLE
# +0.08 dB / +0.021; docs/models.md). The demo's epochs are fixed, so this does not depend on the
# machine's speed.
DEMO_MARGINS = {"GAN-CPCE": (0.14, 0.005), "GAN-CIRCLE": (0.04, 0.005)}


def test_the_demos_tuned_models_beat_the_lr_input(demo):
    workdir, stdout = demo
    rows = read_metrics(workdir / "reports" / "metrics.csv")

    def mean(method: str, metric: str) -> float:
        return float(np.mean([float(r[metric]) for r in rows if r["method"] == method]))

    for method, (psnr_margin, ssim_margin) in DEMO_MARGINS.items():
        assert mean(method, "psnr") - mean("LR input (zero-filled)", "psnr") >= psnr_margin, method
        assert mean(method, "ssim") - mean("LR input (zero-filled)", "ssim") >= ssim_margin, method
        assert f"{method} — **worse than its input**" not in stdout


def test_lr_row_equals_an_independent_numpy_computation(demo):
    workdir, _ = demo
    cache = Cache.open(workdir / "data" / "demo")
    rows = [r for r in read_metrics(workdir / "reports" / "metrics.csv")
            if r["method"] == "LR input (zero-filled)"]
    assert sorted(r["subject"] for r in rows) == sorted(cache.splits.test) and len(rows) == 6
    for row in rows:
        hr = np.asarray(cache.slices(row["subject"]), dtype=np.float64)
        lr = np.clip(numpy_lr(hr), 0, 1)
        psnr = 10 * np.log10(1 / ((lr - hr) ** 2).mean())
        ssim = np.mean([structural_similarity(h, s, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False)
                        for h, s in zip(hr, lr, strict=True)])
        assert float(row["psnr"]) == pytest.approx(psnr, abs=1e-4)
        assert float(row["ssim"]) == pytest.approx(ssim, abs=1e-5)


def test_report_from_fold_models_is_reproducible(demo, tmp_path):
    workdir, _ = demo
    wd = Workdir(workdir)
    again = make_report(ReportRequest(cache=workdir / "data" / "demo", workdir=wd,
                                      tracking=Tracking.for_workdir(wd), out=tmp_path / "again"))
    assert read_metrics(again.metrics_csv) == read_metrics(workdir / "reports" / "metrics.csv")
    runs = Tracking.for_workdir(wd).client().search_runs(
        [Tracking.for_workdir(wd).experiment_id("mrisr-ray")], "tags.kind = 'report'")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)


def test_report_bad_inputs(demo, tmp_path):
    workdir, _ = demo
    cache = workdir / "data" / "demo"
    # No finished study for a model: say which and how to make one.
    empty = tmp_path / "empty-workdir"
    assert_one_line_error(run_cli("report", "--data", cache, "--workdir", empty),
                          "no finished cpce study", "mrisr-ray tune --model cpce")
    assert_one_line_error(run_cli("report", "--data", cache, "--workdir", workdir, "--circle", "nope"),
                          "no named 'nope' circle study")
    # A cache whose protocol differs from the runs'.
    other = tmp_path / "other-protocol"
    shutil.copytree(cache, other, ignore=shutil.ignore_patterns("nifti"))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["protocol"]["foreground_fraction"] = 0.2
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(run_cli("report", "--data", other, "--workdir", workdir),
                          "no finished cpce study was tuned on", str(other))
    # Missing test subjects.
    (other / "manifest.json").write_text((cache / "manifest.json").read_text())
    test_subject = Cache.open(other).splits.test[0]
    (other / "subjects" / f"{test_subject}.npy").unlink()
    with pytest.raises(UserInputError, match=f"test subject\\(s\\) {test_subject} missing"):
        make_report(ReportRequest(cache=other, workdir=Workdir(workdir),
                                  tracking=Tracking.for_workdir(Workdir(workdir))))


def test_paired_test_needs_six_subjects():
    def scores(values):
        return [SubjectScore(f"s{i}", v, v / 40, (), ()) for i, v in enumerate(values)]

    small = Evaluation(scores={"GAN-CPCE": scores([30, 31, 32]), "GAN-CIRCLE": scores([29, 30, 30])},
                       tv_weight=0.0)
    assert paired_test(small, "GAN-CPCE", "GAN-CIRCLE", "psnr") == "n too small (n = 3)"
    six = Evaluation(scores={"GAN-CPCE": scores([30, 31, 32, 33, 34, 35]),
                             "GAN-CIRCLE": scores([29, 30, 30, 31, 32, 33])}, tv_weight=0.0)
    assert paired_test(six, "GAN-CPCE", "GAN-CIRCLE", "psnr").startswith("p = 0.03")


def test_retrain_trains_the_best_configs_on_all_non_test_subjects(demo, tmp_path):
    workdir, _ = demo
    wd = Workdir(workdir)
    result = make_report(ReportRequest(
        cache=workdir / "data" / "demo", workdir=wd, tracking=Tracking.for_workdir(wd),
        choices={"cpce": str(workdir / "reports" / "best_cpce.yaml")}, retrain=True,
        out=tmp_path / "retrained", device="cpu"))
    report = result.report.read_text()
    assert "retrained on all non-test subjects" in report
    assert "config " + str(workdir / "reports" / "best_cpce.yaml") in report
    t = Tracking.for_workdir(wd)

    def retrain_runs() -> dict:
        found = t.client().search_runs([t.experiment_id("mrisr-ray")], "tags.kind = 'retrain'")
        assert len(found) == 2  # one per model, never more: a rerun reuses or continues them
        return {r.data.tags["model"]: r for r in found}

    runs = retrain_runs()
    assert {r.data.tags["fold"] for r in runs.values()} == {"all-train"}

    # Interrupted after the retraining: the rerun reuses both finished trainings, trains nothing.
    def interrupt(items, description):
        raise KeyboardInterrupt

    request = ReportRequest(
        cache=workdir / "data" / "demo", workdir=wd, tracking=t,
        choices={"cpce": str(workdir / "reports" / "best_cpce.yaml")}, retrain=True,
        out=tmp_path / "again", device="cpu")
    with pytest.raises(ReportInterrupted, match="run the same command again: a retraining it stopped"):
        make_report(request, track=interrupt)
    assert retrain_runs().keys() == runs.keys()
    # Interrupted during CPCE's retraining (its run KILLED, as train's Ctrl-C leaves it): the
    # rerun continues that run from its checkpoint to the end, and reuses CIRCLE's.
    t.client().set_terminated(runs["cpce"].info.run_id, "KILLED")
    with pytest.raises(ReportInterrupted):  # after the retraining, before the (slow) evaluation
        make_report(request, track=interrupt)
    after = retrain_runs()
    assert {r.info.run_id for r in after.values()} == {r.info.run_id for r in runs.values()}
    assert after["cpce"].info.status == "FINISHED"
    sources = model_sources(request, Cache.open(request.cache), no_watch)
    assert [s.how.endswith(f"(run {runs[s.model].info.run_id}, by an earlier report)")
            for s in sources] == [True, True]
    # Passed over, to train anew: another configuration, other code, a failed run, one still
    # RUNNING (its driver, this process, runs: perhaps another report's).
    client, cpce_run, cache = t.client(), runs["cpce"].info.run_id, Cache.open(request.cache)
    config = load_run_config(t, cpce_run)
    assert earlier_retrain(request, config, cache).info.run_id == cpce_run
    assert earlier_retrain(request, with_overrides(config, {"train.seed": 1}), cache) is None
    client.set_tag(cpce_run, GIT_COMMIT, "another commit")
    assert earlier_retrain(request, config, cache) is None
    client.set_tag(cpce_run, GIT_COMMIT, runs["cpce"].data.tags[GIT_COMMIT])
    for status in ("FAILED", "RUNNING"):
        client.update_run(cpce_run, status=status)
        assert earlier_retrain(request, config, cache) is None, status
    # Left RUNNING by a process that has ended (a SIGKILL, a closed terminal): continued.
    tracking.set_tags(t, cpce_run, ended_driver().tag())
    assert earlier_retrain(request, config, cache).info.run_id == cpce_run
    client.update_run(cpce_run, status="FINISHED")
    assert earlier_retrain(request, config, cache).info.run_id == cpce_run


def test_report_never_scores_a_subject_the_models_trained_on(demo, tmp_path):
    """The demo cohort re-prepared with another seed: same ids and protocol, other scans and
    splits, and most of its test subjects trained the demo's fold models."""
    from mrisr_ray import runs
    from mrisr_ray.data.synthetic import prepare_synthetic_cache

    workdir, _ = demo
    cache = Cache.open(workdir / "data" / "demo")
    other = tmp_path / "seed1"
    prepare_synthetic_cache(other, n_subjects=20, seed=1, n_slices=16, n_folds=2, test_fraction=0.3)
    reseeded = Cache.open(other)
    assert reseeded.manifest.protocol_hash == cache.manifest.protocol_hash
    leaked = sorted(set(reseeded.splits.test) & cache.splits.seen_by())
    assert leaked  # the situation this test is about
    # The latest study is the one of another cohort: none is usable.
    assert_one_line_error(run_cli("report", "--data", other, "--workdir", workdir),
                          "no finished cpce study was tuned on", str(other))
    # Named explicitly: refused, naming the subjects the fold models trained on.
    t = Tracking.for_workdir(Workdir(workdir))
    (study,) = runs.study_runs(t, "mrisr-ray", model="cpce", finished=True)
    name = study.data.tags[runs.STUDY]
    assert_one_line_error(run_cli("report", "--data", other, "--workdir", workdir, "--cpce", name),
                          f"study '{name}' trained on test subject(s) {', '.join(leaked)} of {other}")
    # --retrain takes a study's configuration, chosen on its folds: the same subjects, refused alike.
    assert_one_line_error(run_cli("report", "--data", other, "--workdir", workdir, "--retrain"),
                          "no finished cpce study was tuned on", str(other))
    assert_one_line_error(run_cli("report", "--data", other, "--workdir", workdir, "--cpce", name,
                                  "--retrain"),
                          f"study '{name}' trained on test subject(s) {', '.join(leaked)} of {other}")
    # A store older than the digests: judged by the splits.json its fold runs logged.
    studies = runs.study_runs(t, "mrisr-ray", finished=True)
    keys = (runs.DATA_DIGEST, runs.SPLITS_DIGEST)
    client = t.client()
    try:
        for run in studies:
            for key in keys:
                client.delete_tag(run.info.run_id, key)
        with pytest.raises(UserInputError, match=f"trained on test subject\\(s\\) {', '.join(leaked)}"):
            make_report(ReportRequest(cache=other, workdir=Workdir(workdir), tracking=t,
                                      out=tmp_path / "r"))
    finally:
        for run in studies:
            for key in keys:
                client.set_tag(run.info.run_id, key, run.data.tags[key])


def test_demo_console_is_the_products_own(demo):
    """Redirected output of the demo (stdout and stderr): no colour codes and none of Ray's output
    (issue 14), which went to the demo's log; every fold training's score stands beside the LR
    input's. Which folds ran depends on ASHA, so the lines expected are read from the store."""
    from mrisr_ray import runs

    workdir, stdout = demo
    for noise in ("\x1b[", "TrainingReport(", "core_worker.cc", "Trial status", "tensorboard"):
        assert noise not in stdout, noise
    t = Tracking.for_workdir(Workdir(workdir))
    folds = [fold for study in runs.study_runs(t, "mrisr-ray")
             for fold in runs.fold_runs(t, "mrisr-ray", study.data.tags[runs.STUDY])]
    # Two trials of two folds per model: ASHA stops at most one trial, after its first fold.
    assert {f.data.tags[runs.MODEL] for f in folds} == {"cpce", "circle"} and len(folds) >= 6
    for fold in folds:
        psnr, ssim = runs.best_scores(fold)
        lr_psnr, lr_ssim = (fold.data.metrics[key] for key in (runs.INPUT_PSNR, runs.INPUT_SSIM))
        line = (f"{fold.info.run_name} best epoch: {psnr:.2f} dB / {ssim:.4f} (LR {lr_psnr:.2f} / "
                f"{lr_ssim:.4f}, {psnr - lr_psnr:+.2f} dB / {ssim - lr_ssim:+.4f})")
        assert line in stdout, line
    (log,) = (workdir / "logs").glob("demo-*.log")
    assert "TrainingReport(" in log.read_text()


def rest(port: int, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/{path}",
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_the_mlflow_ui_shows_the_demos_runs(demo, tmp_path):
    """What the MLflow UI reads (its REST API, served by `mrisr-ray ui`) on the demo's store: the
    experiment opens on runs, every run has the headline columns, names say what a run is, a run
    lists only its model's parameters, and the report run holds its table and its studies."""
    workdir, _ = demo
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server_log = tmp_path / "ui.log"
    with open(server_log, "w") as log:
        ui = subprocess.Popen([sys.executable, "-m", "mrisr_ray", "ui", "--port", str(port), "--workdir",
                               str(workdir)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            try:
                experiment = rest(port, "experiments/get-by-name?experiment_name=mrisr-ray")["experiment"]
                break
            except OSError as exc:
                assert time.time() < deadline and ui.poll() is None, (exc, server_log.read_text()[-3000:])
                time.sleep(0.5)
        assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in experiment["tags"]
        found = rest(port, "runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                           "max_results": 1000})["runs"]
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)

    def as_dict(run: dict, part: str) -> dict:
        return {item["key"]: item["value"] for item in run["data"].get(part, [])}

    by_kind: dict[str, list[dict]] = {}
    for run in found:
        by_kind.setdefault(as_dict(run, "tags")["kind"], []).append(run)
    assert len(by_kind["study"]) == 2 and len(by_kind["trial"]) == 4 and len(by_kind["fold"]) >= 6
    for run in by_kind["study"] + by_kind["trial"] + by_kind["fold"]:
        metrics, params, tags = as_dict(run, "metrics"), as_dict(run, "params"), as_dict(run, "tags")
        model, name = tags["model"], run["info"]["run_name"]
        assert {"psnr", "ssim"} <= set(metrics), name
        if tags["kind"] != "fold":
            assert {"psnr_sd", "ssim_sd"} <= set(metrics), name
        other = "circle" if model == "cpce" else "cpce"
        assert not any(key.startswith(f"{other}.") for key in params), name
        if tags["kind"] == "trial":
            assert re.fullmatch(f"{model} t0[01]", name) and tags["searched"], name
        if tags["kind"] == "fold":
            assert re.fullmatch(f"{model} t0[01] f[01]", name), name
    report = min(by_kind["report"], key=lambda run: int(run["info"]["start_time"]))  # the demo's own
    metrics, tags = as_dict(report, "metrics"), as_dict(report, "tags")
    for method in ("lr_input_zero_filled", "tv_reconstruction", "gan_cpce", "gan_cpce_dc", "gan_circle"):
        assert {f"{method}.psnr", f"{method}.ssim_sd", f"{method}.psnr_gain"} <= set(metrics), method
    studies = {as_dict(run, "tags")["study"]: run["info"]["run_id"] for run in by_kind["study"]}
    assert {tags["study.cpce"], tags["study.circle"]} == set(studies)
    for run_id in studies.values():
        assert f"/runs/{run_id})" in tags["mlflow.note.content"]


def test_demo_resume_keeps_the_finished_studies_and_reports_again(demo, tmp_path):
    """`demo --resume` continues the newest demo of its work directory: here both studies had
    finished (an interruption during the report), so no fold trains again. Last in this module: it
    writes a second report run."""
    workdir, _ = demo
    t = Tracking.for_workdir(Workdir(workdir))

    def fold_runs() -> int:
        return len(t.client().search_runs([t.experiment_id("mrisr-ray")], "tags.kind = 'fold'"))

    before = fold_runs()
    result = run_cli("demo", "--workdir", workdir, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("finished before, kept") == 2
    assert "LR input (zero-filled)" in result.stdout and fold_runs() == before
    assert_one_line_error(run_cli("demo", "--workdir", tmp_path / "empty", "--resume"),
                          "--resume: no demo to continue")
    assert_one_line_error(run_cli("demo", "--workdir", workdir, "--resume", "--trials", "2", "--seed", "0"),
                          "--trials/--seed cannot change them")
