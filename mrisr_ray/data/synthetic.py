"""The embedded default data: a deterministic synthetic T2-like multi-subject cohort.

Built from nilearn's bundled MNI152 2009 grey/white-matter maps (no download). Each subject is a
random affine + smooth elastic warp of the template, sampled on IXI's grid (256×256 axial,
0.9375 mm in-plane), with hard tissue labels (T2 contrast CSF > GM > WM), per-subject tissue
intensities, ±8% tissue texture, a smooth bias field and Rician noise, brain-extracted like the
real reference subject. Smooth probability mixtures would be far easier to super-resolve than
real scans (their zero-filled LR input scores ≈ 44.7 dB, docs/data.md); hard boundaries, texture
and noise bring that PSNR to the real IXI subject's (`tests/data/test_synthetic.py` checks).

Numbers measured on this cohort are not IXI numbers.
"""

from __future__ import annotations

import functools
import gzip
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from mrisr_ray.data.cache import Cache, CacheSummary, Protocol, build_atomically, write_cache
from mrisr_ray.data.discovery import discover_scans
from mrisr_ray.data.splits import make_splits
from mrisr_ray.progress import Track, no_progress

IN_PLANE_SIZE = 256
IN_PLANE_MM = 0.9375
SLICE_MM = 2.4
T2_INTENSITY = {"csf": 1.0, "gm": 0.38, "wm": 0.26}  # relative T2-weighted signal
PSF_SIGMA = 0.55  # in-plane Gaussian PSF (pixels): without it hard labels are sharper than a scan
TEXTURE = 0.08  # multiplicative tissue texture amplitude
NOISE_SIGMA = 0.02  # Rician noise, relative to the CSF intensity
BIAS = 0.10  # bias-field amplitude
SYNTHESIS_THREADS = 4


@functools.lru_cache(maxsize=1)
def tissue_template() -> tuple[np.ndarray, np.ndarray]:
    """(4, X, Y, Z) float32 probabilities of background, CSF, GM, WM on the MNI 1 mm grid, and the
    grid's affine. CSF fills the brain envelope where neither GM nor WM is."""
    from nilearn import datasets

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    gm = np.asarray(gm_img.dataobj, dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, np.float32)
    tissue = gm + wm
    envelope = ndimage.binary_fill_holes(ndimage.binary_closing(tissue > 0.5, iterations=4))
    envelope = envelope.astype(np.float32)
    csf = envelope * np.clip(1.0 - tissue, 0.0, 1.0)
    background = 1.0 - np.clip(envelope + tissue, 0.0, 1.0)
    return np.stack([background, csf, gm, wm]), gm_img.affine


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-SD Gaussian noise smoothed with `sigma` voxels."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / (field.std() + 1e-8)


def output_grid(n_slices: int) -> np.ndarray:
    """4×4 RAS affine of the synthetic scans, centred on the MNI origin."""
    zooms = np.array([IN_PLANE_MM, IN_PLANE_MM, SLICE_MM])
    shape = np.array([IN_PLANE_SIZE, IN_PLANE_SIZE, n_slices])
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = -zooms * (shape - 1) / 2 + np.array([0.0, -18.0, 18.0])
    return affine


def synthesize_subject(index: int, seed: int, n_slices: int) -> tuple[np.ndarray, np.ndarray]:
    """One subject's (256, 256, n_slices) float32 T2-like volume and its affine."""
    rng = np.random.default_rng([seed, index])
    probs, template_affine = tissue_template()
    affine = output_grid(n_slices)
    shape = (IN_PLANE_SIZE, IN_PLANE_SIZE, n_slices)

    # Output voxel → world (mm) → per-subject deformation → template voxel.
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4]
    angle = np.deg2rad(rng.uniform(-6, 6))
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0],
                         [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    scale = np.diag(rng.uniform(0.92, 1.08, size=3))
    world = (rotation @ scale) @ world + rng.uniform(-4, 4, size=(3, 1))
    coarse = (16, 16, 8)
    for axis in range(3):
        warp = ndimage.zoom(smooth_noise(rng, coarse, 1.0), np.array(shape) / coarse, order=1)
        world[axis] += 2.5 * warp.reshape(-1)
    inverse = np.linalg.inv(template_affine)
    template_ijk = inverse[:3, :3] @ world + inverse[:3, 3:4]
    sampled = np.stack([
        ndimage.map_coordinates(p, template_ijk, order=1, mode="constant", cval=float(c == 0))
        for c, p in enumerate(probs)
    ]).reshape(4, *shape)
    labels = sampled.argmax(axis=0)  # hard tissue boundaries

    levels = np.array([0.0, *(T2_INTENSITY[t] * rng.uniform(0.95, 1.05) for t in ("csf", "gm", "wm"))])
    image = levels[labels].astype(np.float32)
    image = ndimage.gaussian_filter(image, (PSF_SIGMA, PSF_SIGMA, 0))  # the scanner's in-plane PSF
    image *= 1.0 + TEXTURE * smooth_noise(rng, shape, 0.8)
    bias = ndimage.zoom(smooth_noise(rng, (4, 4, 2), 1.0), np.array(shape) / (4, 4, 2), order=1)
    image *= 1.0 + BIAS * bias
    noise = NOISE_SIGMA * rng.standard_normal((2, *shape)).astype(np.float32)
    image = np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2)
    image[labels == 0] = 0.0  # brain-extracted, like the real reference subject
    return image, affine


def write_cohort(folder: Path, n_subjects: int, seed: int = 0, n_slices: int = 60,
                 track: Track = no_progress) -> list[Path]:
    """Write `n_subjects` synthetic scans `synthNNN.nii.gz` as int16 NIfTI; same seed, same bytes.
    Subjects are made on one thread per core, at most SYNTHESIS_THREADS (NumPy, SciPy's
    interpolation and zlib release the GIL for much of the work; each subject has its own random
    generator; a thread holds ~0.4 GB at 60 slices)."""
    folder.mkdir(parents=True, exist_ok=True)
    tissue_template()  # loaded once, before the threads share it

    def write(index: int) -> Path:
        image, affine = synthesize_subject(index, seed, n_slices)
        path = folder / f"synth{index:03d}.nii.gz"
        nifti = nib.Nifti1Image(np.round(image * 1000).astype(np.int16), affine)
        nifti.set_qform(affine, code=1)
        nifti.set_sform(affine, code=1)
        # Fixed gzip mtime so that the same seed gives the same bytes.
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(nifti.to_bytes())
        return path

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with ThreadPoolExecutor(max(1, min(cores, SYNTHESIS_THREADS, n_subjects))) as pool:
        futures = [pool.submit(write, index) for index in range(n_subjects)]
        try:
            # A subject counts as done once its file is written, in order, as in a plain loop.
            return [future.result() for future in track(futures, "Generating synthetic subjects")]
        except BaseException:  # Ctrl-C or a failed subject: the queued subjects are not started
            pool.shutdown(cancel_futures=True)
            raise


def prepare_synthetic_cache(out: str | Path, n_subjects: int = 20, seed: int = 0,
                            n_slices: int = 60, n_folds: int = 5, test_fraction: float = 0.1,
                            overwrite: bool = False, track: Track = no_progress) -> CacheSummary:
    """Generate the cohort under `<out>/nifti/` and build its cache through the IXI code path."""
    out = Path(out).resolve()
    splits_args = {"n_folds": n_folds, "test_fraction": test_fraction, "seed": seed}
    make_splits({f"synth{i:03d}": "unknown" for i in range(n_subjects)}, **splits_args)
    origin = {"synthetic": {"subjects": n_subjects, "seed": seed, "slices": n_slices,
                            "note": "synthetic T2-like cohort; numbers are not IXI numbers"}}

    def fill(staging: Path) -> None:
        # Written afresh (the same seed gives the same bytes, so an interrupted run's subjects
        # are still reused): a leftover of another --subjects would add scans.
        shutil.rmtree(staging / "nifti", ignore_errors=True)
        write_cohort(staging / "nifti", n_subjects, seed, n_slices, track)
        scans = discover_scans(staging / "nifti")
        write_cache(scans, staging, Protocol(), splits_args, origin=origin, track=track)

    build_atomically(out, overwrite, fill)
    return Cache.open(out).summary()
