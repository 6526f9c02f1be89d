"""A scan as `predict` reads and writes it: the network sees it in canonical (RAS) orientation,
axial slices along the last axis, as in training (docs/data.md); the output goes back to the
input's own orientation, affine, shape and header, as float32 with the scaling fields reset."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from mrisr_ray.data.volume import nifti_errors, voxels
from mrisr_ray.errors import UserInputError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MIN_IN_PLANE = 16  # CPCE's valid convolutions take 8 voxels off each side before growing back


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


@dataclass
class Scan:
    path: Path
    image: nib.Nifti1Image  # as read: its header, affine and shape are the output's
    data: np.ndarray  # (H, W, S) float32, canonical, the file's intensities
    affine: np.ndarray  # canonical 4×4

    @property
    def ornt(self) -> np.ndarray:
        """File axes → canonical axes (nibabel orientation)."""
        return io_orientation(self.image.affine)

    @property
    def spacing(self) -> tuple[float, float]:
        """In-plane voxel size of the canonical slices, mm."""
        zooms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return float(zooms[0]), float(zooms[1])


def read_scan(path: Path) -> Scan:
    """A 3-D NIfTI (or 4-D with one volume), finite and not constant; anything else is refused
    with one line."""
    with nifti_errors(path):
        image = nib.load(str(path))
        if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
            raise UserInputError(f"{path}: not a NIfTI image ({type(image).__name__})")
        data = voxels(image, path)
        ornt = io_orientation(image.affine)
    if np.isnan(ornt).any():  # an axis the affine maps to nothing
        raise UserInputError(f"{path}: its affine gives the axes no orientation (a singular affine)")
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise UserInputError(f"{path}: expected a 3-D volume (or 4-D with one volume), got shape "
                             f"{data.shape}")
    if not np.isfinite(data).all():
        raise UserInputError(f"{path}: contains NaN or Inf voxels")
    if data.max() <= data.min():
        raise UserInputError(f"{path}: constant volume (every voxel is {float(data.min()):g})")
    canonical = np.ascontiguousarray(apply_orientation(data, ornt))
    if min(canonical.shape[:2]) < MIN_IN_PLANE:
        raise UserInputError(f"{path}: axial slices of {canonical.shape[0]}×{canonical.shape[1]} voxels are "
                             f"too small (at least {MIN_IN_PLANE}×{MIN_IN_PLANE})")
    affine = image.affine @ inv_ornt_aff(ornt, data.shape)
    return Scan(path=path, image=image, data=canonical, affine=affine)


def to_file_orientation(scan: Scan, data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """Canonical `data` with canonical `affine` (the scan's, or a finer grid's) as an image in the
    scan's own orientation, header and qform/sform codes; float32, scaling fields reset."""
    back = ornt_transform(io_orientation(affine), scan.ornt)
    out = apply_orientation(data, back).astype(np.float32)
    file_affine = affine @ inv_ornt_aff(back, data.shape)
    # Voxel (new file grid) → voxel (input file grid): identity unless the grid was refined.
    to_input = np.linalg.inv(scan.image.affine) @ file_affine
    same_grid = out.shape == scan.data.shape and np.allclose(to_input, np.eye(4), atol=1e-6)
    header = scan.image.header.copy()
    header.set_data_dtype(np.float32)
    header.set_slope_inter(None, None)
    header["cal_min"], header["cal_max"] = 0.0, 0.0
    if len(scan.image.shape) == 4:
        out = out[..., None]
    image = nib.Nifti1Image(out, scan.image.affine if same_grid else file_affine, header)
    qform, qcode = scan.image.get_qform(coded=True)
    sform, scode = scan.image.get_sform(coded=True)
    # The input's own qform and sform (they may differ), moved with the grid when it changed.
    step = np.eye(4) if same_grid else to_input
    image.set_qform(None if qform is None else qform @ step, code=int(qcode))
    image.set_sform(None if sform is None else sform @ step, code=int(scode))
    return image


def write_atomically(image: nib.Nifti1Image, path: Path) -> None:
    """Write beside `path` and rename: an interrupted write leaves no half file."""
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    partial = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.partial{suffix}"
    try:
        nib.save(image, str(partial))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
