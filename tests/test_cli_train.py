"""`mrisr-ray train` bad input: one line, exit code 2, before Ray starts (never a hang)."""

import os

import pytest
import torch
from helpers import other_protocol_cache, run_cli
from test_cli_prepare import assert_one_line_error


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
