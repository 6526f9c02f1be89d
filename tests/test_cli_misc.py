"""Help texts, `tune` argument errors and dry-run, and the MLflow UI server."""

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
from helpers import TINY_RUN, run_cli
from test_cli_prepare import assert_one_line_error

COMMANDS = ["prepare", "train", "tune", "report", "predict", "demo", "ui"]


def test_every_command_has_a_purpose_and_an_example():
    top = run_cli("--help")
    for command in COMMANDS:
        assert command in top.stdout
        result = run_cli(command, "--help")
        assert result.returncode == 0
        assert f"Example: mrisr-ray {command}" in result.stdout, command


def test_help_shows_no_type_placeholders_on_flags_and_lists_the_models():
    """Flags are plain switches (`--dry-run`, not `--dry-run <bool>`), `--set` shows KEY=VALUE,
    and every `--model` (and predict's `--latest`) names the registry's models."""
    helps = {command: run_cli(command, "--help").stdout for command in COMMANDS}
    helps["top"] = run_cli("--help").stdout
    for command, text in helps.items():
        assert "<bool>" not in text and "<list" not in text and "--no-" not in text, command
    for command in ("train", "tune", "predict"):
        option = "--latest" if command == "predict" else "--model"
        row = next(line for line in helps[command].splitlines() if option in line)
        assert "cpce" in row and "circle" in row, (command, row)
    assert "KEY=VALUE" in helps["train"] and "KEY=VALUE" in helps["tune"]
    assert "--retrain" in helps["report"] and "--use-fold-models" in helps["report"]
    assert "run id" in " ".join(helps["tune"].split())  # --resume's other meaning, on train


def test_top_level_help_gives_the_order_of_commands_and_the_demo_example():
    text = " ".join(run_cli("--help").stdout.split())
    assert "Example: mrisr-ray demo" in text
    order = text.index("Order of commands")
    assert order < text.index("prepare", order) < text.index("tune", order) < text.index("report", order) \
        < text.index("predict", order)


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"mrisr-ray {version('mrisr-ray')}"


def tune_args(cache, workdir, *extra):
    sets = [arg for item in TINY_RUN for arg in ("--set", item)]
    return ["tune", "--model", "circle", "--data", cache, "--workdir", workdir, "--folds", "2", *sets,
            *extra]


def test_tune_dry_run_prints_the_plan(tiny_synthetic_cache, tmp_path):
    result = run_cli(*tune_args(tiny_synthetic_cache, tmp_path, "--trials", "7", "--folds", "3",
                                "--dry-run", "--name", "plan"))
    assert result.returncode == 0, result.stderr
    assert "trials       7" in result.stdout and "at most 21 fold trainings of 2 epochs" in result.stdout
    assert "loss.lambda_jst ∈ [0.0001, 1] log" in result.stdout
    assert "random draws until 3 trials have completed or been pruned" in result.stdout  # circle.yaml
    assert "ASHA may stop a trial after fold 1 or 2 (the top 1/2 of those recorded there go on)" \
        in result.stdout
    assert not (tmp_path / "ray").exists()


def test_tune_uses_all_of_the_caches_folds_by_default(tiny_synthetic_cache, tmp_path):
    result = run_cli("tune", "--model", "circle", "--data", tiny_synthetic_cache, "--workdir", tmp_path,
                     "--dry-run")  # no --folds: the tiny cache has 3
    assert result.returncode == 0, result.stderr
    assert "folds        3 per trial" in result.stdout


@pytest.mark.parametrize("extra,fragments", [
    (["--folds", "4"], ["--folds 4", "has 3 folds"]),
    (["--resume"], ["--resume needs --name STUDY"]),
    (["--resume", "--name", "ghost"], ["--resume: no study named 'ghost'"]),
    (["--workers-per-trial", "64"], ["--workers 64 needs 64 CPUs"]),
    (["--workers", "2", "--gpus-per-worker", "0.5"], ["fractional --gpus-per-worker"]),
    (["--metric", "mae"], ["--metric must be psnr or ssim"]),
    (["--worker-resource", "fold_node"], ["--worker-resource fold_node places workers", "--address"]),
    (["--storage-path", "s3://bucket/ray"], ["--storage-path s3://bucket/ray", "not a URI"]),
    (["--max-failures", "-1"], ["--max-failures must be 0 or more"]),
])
def test_tune_bad_input_stops_before_launch(tiny_synthetic_cache, tmp_path, extra, fragments):
    assert_one_line_error(run_cli(*tune_args(tiny_synthetic_cache, tmp_path, *extra)), *fragments)
    assert not (tmp_path / "ray").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_tune_asks_for_a_gpu_in_its_own_words(tiny_synthetic_cache, tmp_path):
    assert_one_line_error(run_cli(*tune_args(tiny_synthetic_cache, tmp_path, "--gpus-per-worker", "1")),
                          "--gpus-per-worker: no CUDA device is available on this machine")


def test_tune_rejects_a_bad_space_file(tiny_synthetic_cache, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("parameters:\n  loss.lambda_zz: {type: float, low: 0.1, high: 1}\n")
    assert_one_line_error(run_cli(*tune_args(tiny_synthetic_cache, tmp_path, "--space", space)),
                          "unknown config key 'loss.lambda_zz'")


def test_ui_serves_the_workdir_store_on_loopback(tmp_path):
    port = 5000 + (hash(str(tmp_path)) % 1000)
    ui = subprocess.Popen([sys.executable, "-m", "mrisr_ray", "ui", "--port", str(port), "--workdir",
                           str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
    try:
        deadline, status = time.time() + 60, None
        while time.time() < deadline and status is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status
            except OSError:
                time.sleep(0.5)
        assert status == 200
    finally:
        os.killpg(ui.pid, signal.SIGTERM)  # the server and its worker processes
        ui.wait(timeout=30)
