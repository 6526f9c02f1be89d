"""Shared fixtures: small NIfTI volumes written to tmp dirs, a tiny synthetic cache, the real
IXI subject from ../shared (skipped where that folder is absent), the CLI as a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import REAL_T2, blob_volume, write_nifti

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def real_t2() -> Path:
    if not REAL_T2.is_file():
        pytest.skip(f"real IXI subject not found at {REAL_T2} (../shared is not beside this checkout)")
    return REAL_T2


@pytest.fixture
def ixi_dir(tmp_path: Path) -> Path:
    """Eight small IXI-named T2 subjects over two sites (plus a T1 file that must be ignored)."""
    root = tmp_path / "IXI-T2"
    for i in range(8):
        site = "Guys" if i % 2 == 0 else "HH"
        write_nifti(root / f"IXI{i:03d}-{site}-{1000 + i:04d}-T2.nii.gz", blob_volume(i))
    write_nifti(root / "IXI000-Guys-1000-T1.nii.gz", blob_volume(99))
    return root


@pytest.fixture(scope="session")
def tiny_synthetic_cache(tmp_path_factory) -> Path:
    """Seven synthetic subjects of 6 slices each: 1 test subject + 3 folds."""
    from mrisr_ray.data.synthetic import prepare_synthetic_cache

    out = tmp_path_factory.mktemp("cache") / "synthetic"
    prepare_synthetic_cache(out, n_subjects=7, n_slices=6, n_folds=3, test_fraction=0.1)
    return out


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray runtime for the whole session (each start costs seconds)."""
    import ray

    from mrisr_ray.ray_runtime import ensure_ray

    ensure_ray(num_cpus=4)
    yield
    ray.shutdown()
