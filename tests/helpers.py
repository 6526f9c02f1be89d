"""Helpers the tests import: small NIfTI writers and the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_IXI = REPO.parent / "shared" / "data" / "ixi_t2"
REAL_T2 = SHARED_IXI / "hd_bet_IXI002-Guys-0828-T2.nii.gz"

# Tiny networks (same architectures, fewer/narrower layers) for fast CPU tests.
TINY_MODELS = ["data.patch_size=32", "loss.perceptual=random_vgg", "cpce.width=8",
               "cpce.critic_widths=[8, 8, 16, 16, 16, 16]", "cpce.critic_fc=32",
               "circle.first_width=16", "circle.min_width=8", "circle.blocks=4",
               "circle.critic_widths=[8, 16, 16, 16]", "circle.critic_fc=32"]
# Tiny runs: 2 epochs of 32 patches, 2 validation slices per subject.
TINY_RUN = [*TINY_MODELS, "train.epochs=2", "train.batch_size=8", "train.n_critic=1",
            "train.max_patches_per_epoch=32", "train.val_max_slices=2"]


def write_nifti(path: Path, data: np.ndarray, zooms=(0.9375, 0.9375, 1.2)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    spatial = [*zooms[:3], 1.0, 1.0, 1.0][:3]
    affine = np.diag([*spatial, 1.0])
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def blob_volume(seed: int, shape=(32, 32, 6)) -> np.ndarray:
    """A bright ellipse with noise: passes the foreground rule on every slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ellipse = ((yy - shape[0] / 2) / (shape[0] / 3)) ** 2 + ((xx - shape[1] / 2) / (shape[1] / 3)) ** 2 < 1
    vol = np.repeat(ellipse[:, :, None], shape[2], axis=2).astype(np.float32) * 100
    return (vol + rng.uniform(0, 20, size=shape)).astype(np.int16)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrisr_ray", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=600)


def other_protocol_cache(cache: Path, folder: Path, version: int) -> Path:
    """A copy of `cache`'s manifest and splits whose protocol version is `version`."""
    folder.mkdir()
    (folder / "splits.json").write_text((cache / "splits.json").read_text())
    manifest = json.loads((cache / "manifest.json").read_text())
    manifest["protocol"]["version"] = version
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def ended_driver():
    """This process's `runs.Driver` with the pid of a process that has exited, as a SIGKILL of a
    run's driver leaves its tag."""
    from mrisr_ray.runs import Driver

    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    return replace(Driver.this_process(), pid=ended.pid)
