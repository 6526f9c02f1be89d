"""Reading one MRI volume: NIfTI → canonical orientation → float32 in [0, 1] (docs/data.md)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from mrisr_ray.errors import UserInputError, describe

# Slice-selection rule: a slice is kept when at least FOREGROUND_FRACTION of its pixels exceed
# FOREGROUND_THRESHOLD (after normalisation). Recorded in every cache manifest.
FOREGROUND_THRESHOLD = 0.05
FOREGROUND_FRACTION = 0.10


@dataclass(frozen=True)
class Volume:
    data: np.ndarray  # (H, W, S) float32 in [0, 1], RAS canonical, axial slices along the last axis
    spacing: tuple[float, float, float]  # mm
    affine: np.ndarray  # 4×4 canonical affine


def read_volume(path: str | Path, clip_percentiles: tuple[float, float] | None = None) -> Volume:
    """Load a 3-D NIfTI volume, reorient to the closest canonical (RAS) and min-max it to [0, 1].

    Args:
        path: `.nii` or `.nii.gz` file.
        clip_percentiles: optional robust normalisation, e.g. (0.5, 99.5): intensities are clipped
            to these percentiles before the min-max.

    Raises:
        UserInputError: unreadable/corrupt file, not 3-D, NaN/Inf voxels or a constant volume.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: file not found")
    with nifti_errors(path):
        image = nib.as_closest_canonical(nib.load(str(path)))
        data = voxels(image, path)
    if data.ndim != 3:
        raise UserInputError(f"{path}: expected a 3-D volume, got {data.ndim}-D shape {data.shape}")
    if not np.isfinite(data).all():
        raise UserInputError(f"{path}: contains NaN or Inf voxels")
    if clip_percentiles is not None:
        lo, hi = np.percentile(data, clip_percentiles)
        data = np.clip(data, lo, hi)
    vmin, vmax = float(data.min()), float(data.max())
    if vmax <= vmin:
        raise UserInputError(f"{path}: constant volume (every voxel is {vmin:g})")
    data = (data - vmin) / (vmax - vmin)
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    return Volume(data=data.astype(np.float32), spacing=zooms, affine=image.affine)


def load_volume(path: str | Path) -> np.ndarray:
    """(H, W, S) float32 array in [0, 1], canonical orientation. See `read_volume`."""
    return read_volume(path).data


def foreground_slices(volume: np.ndarray) -> np.ndarray:
    """Indices of the axial slices of (H, W, S) `volume` that pass the foreground rule."""
    fraction = (volume > FOREGROUND_THRESHOLD).mean(axis=(0, 1))
    return np.flatnonzero(fraction >= FOREGROUND_FRACTION)


def voxels(image: nib.spatialimages.SpatialImage, path: Path) -> np.ndarray:
    """The image's voxels as float32; complex ones are refused (casting would keep the real part)."""
    if image.get_data_dtype().kind == "c":
        raise UserInputError(f"{path}: complex-valued voxels; give a magnitude image")
    return np.asarray(image.dataobj, dtype=np.float32)


@contextmanager
def nifti_errors(path: Path) -> Iterator[None]:
    """What nibabel and the decompressors raise for a file that is not whole NIfTI, as one line."""
    try:
        yield
    except (nib.filebasedimages.ImageFileError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UserInputError(f"{path}: not a readable NIfTI image ({describe(exc)})") from None
    except nib.orientations.OrientationError as exc:
        raise UserInputError(f"{path}: its affine gives the axes no orientation ({describe(exc)})") from None
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{path}: corrupt or truncated NIfTI file ({describe(exc)})") from None
