"""`mrisr-ray train` bad input: one line, exit code 2, before Ray starts (never a hang)."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from helpers import TINY_RUN, other_protocol_cache, run_cli, wait_for
from test_cli_prepare import assert_one_line_error

from mrisr_ray.signals import handler_while, stop_as_on_ctrl_c


@pytest.mark.parametrize("args,fragments", [
    (["--model", "srgan"], ["unknown model 'srgan'"]),
    (["--model", "cpce", "--set", "train.learning_rate=1"], ["unknown config key 'train.learning_rate'"]),
    (["--model", "cpce", "--set", "train.epochs=many"], ["train.epochs: expected an integer"]),
    (["--model", "circle", "--fold", "3"], ["fold 3 out of range"]),
    (["--model", "circle", "--workers", str((os.cpu_count() or 1) + 1), "--device", "cpu"],
     ["needs", "CPUs, this machine has"]),
    (["--model", "cpce", "--device", "tpu"], ["--device must be auto, cpu or cuda"]),
    (["--resume", "0123abcd", "--set", "train.lr=1"], ["--resume 0123abcd continues the run's own",
                                                       "cannot change it"]),
])
def test_bad_arguments(tiny_synthetic_cache, tmp_path, args, fragments):
    result = run_cli("train", "--data", tiny_synthetic_cache, "--workdir", tmp_path, *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "ray").exists()  # stopped before Ray started


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(tiny_synthetic_cache, tmp_path):
    result = run_cli("train", "--model", "circle", "--data", tiny_synthetic_cache, "--device", "cuda",
                     "--workdir", tmp_path)
    assert_one_line_error(result, "--device cuda: no CUDA device")


def test_missing_and_foreign_caches(tiny_synthetic_cache, tmp_path):
    assert_one_line_error(run_cli("train", "--model", "cpce", "--data", tmp_path / "nothing",
                                  "--workdir", tmp_path), "not a prepared mrisr-ray cache")
    assert_one_line_error(run_cli("train", "--model", "cpce", "--data",
                                  other_protocol_cache(tiny_synthetic_cache, tmp_path / "old", 99),
                                  "--workdir", tmp_path), "cache protocol version 99")


def test_missing_vgg_weights_say_how_to_provide_them(tiny_synthetic_cache, tmp_path):
    result = run_cli("train", "--model", "cpce", "--data", tiny_synthetic_cache, "--workdir", tmp_path,
                     env={"TORCH_HOME": str(tmp_path / "torch"), "MRISR_RAY_VGG19": ""})
    assert_one_line_error(result, "VGG-19 ImageNet weights are needed", "--vgg-weights",
                          "loss.perceptual=random_vgg")


def test_train_help_has_an_example():
    result = run_cli("train", "--help")
    assert result.returncode == 0 and "Example: mrisr-ray train --model cpce" in result.stdout


def test_sigterm_goes_where_ctrl_c_would():
    """`stop_as_on_ctrl_c` calls the SIGINT handler in force (Tune's stops a study gracefully),
    ignores further SIGTERMs, and raises KeyboardInterrupt itself where SIGINT is ignored (a
    script's background job)."""
    called = []
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: called.append(signum))
        try:
            stop_as_on_ctrl_c(signal.SIGTERM, None)
        except KeyboardInterrupt:  # would end the pytest session, not fail this test
            pytest.fail("raised KeyboardInterrupt instead of calling the SIGINT handler in force")
        assert called == [signal.SIGINT] and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with pytest.raises(KeyboardInterrupt):
            stop_as_on_ctrl_c(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


@pytest.mark.parametrize("stop", ["ctrl_c", "sigterm"])
def test_ctrl_c_says_how_to_resume_the_run(tiny_synthetic_cache, tmp_path, stop):
    """Ctrl-C in a terminal (SIGINT to the whole process group) after the first checkpoint: exit
    130, the run marked KILLED, and the command that continues it (a run id the user could not
    know otherwise). `kill PID` (SIGTERM to the command alone) does the same (signals.py)."""
    from mrisr_ray.tracking import Tracking
    from mrisr_ray.workdir import Workdir

    overrides = [arg for item in [*TINY_RUN, "train.epochs=50"] for arg in ("--set", item)]
    # A terminal's foreground command starts with SIGINT at its default. Under a runner that ignores
    # it (a script's background job) the command would inherit that and rightly ignore Ctrl-C; a
    # handled signal is reset to its default across exec, an ignored one is not.
    with handler_while(signal.SIGINT, signal.default_int_handler):
        run = subprocess.Popen([sys.executable, "-m", "mrisr_ray", "train", "--model", "circle", "--data",
                                str(tiny_synthetic_cache), "--workdir", str(tmp_path), "--device", "cpu",
                                *overrides], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    wait_for(lambda: any((tmp_path / "ray").glob("*/checkpoint_*/state.pt")), "a checkpoint")
    if stop == "ctrl_c":
        os.killpg(run.pid, signal.SIGINT)
    else:
        os.kill(run.pid, signal.SIGTERM)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 130, stderr[-2000:]
    t = Tracking.for_workdir(Workdir(tmp_path))
    (killed,) = t.client().search_runs([t.experiment_id("mrisr-ray")], "tags.kind = 'train'")
    assert killed.info.status == "KILLED"
    assert (f"continue it with: mrisr-ray train --resume {killed.info.run_id} --data {tiny_synthetic_cache}"
            in stderr.strip().splitlines()[-1])
