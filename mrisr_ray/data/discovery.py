"""Finding the T2 scans of a cohort and naming their subjects and sites (docs/data.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mrisr_ray.errors import UserInputError

IXI_NAME = re.compile(r"(IXI\d{3}-(?P<site>[A-Za-z]+)-\d{4})-(?P<modality>[A-Za-z0-9]+)")
UNKNOWN_SITE = "unknown"
NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class Scan:
    subject: str
    site: str
    path: Path


def nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def identify(path: Path) -> Scan | None:
    """Subject and site of one file; None for an IXI scan of another modality (T1, PD, ...)."""
    match = IXI_NAME.search(path.name)
    if match is None:
        return Scan(subject=nifti_stem(path), site=UNKNOWN_SITE, path=path)
    if match["modality"] != "T2":
        return None
    return Scan(subject=match.group(1), site=match["site"], path=path)


def discover_scans(data_dir: str | Path, sites: list[str] | None = None) -> list[Scan]:
    """All T2 scans under `data_dir` (recursive), one per subject, sorted by subject.

    Args:
        data_dir: folder holding `.nii`/`.nii.gz` files.
        sites: keep only these sites (e.g. ["Guys"], the seed paper's scanner); None keeps all.

    Raises:
        UserInputError: missing or empty folder, no T2 scans, or two files of one subject.
    """
    root = Path(data_dir)
    if not root.is_dir():
        what = "is a file, not a folder of scans" if root.exists() else "data directory not found"
        raise UserInputError(f"{root}: {what}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))
    if not files:
        raise UserInputError(f"{root}: no NIfTI files (.nii/.nii.gz) found")
    scans: dict[str, Scan] = {}
    for path in files:
        scan = identify(path)
        if scan is None:
            continue
        if scan.subject in scans:
            raise UserInputError(
                f"{path}: resolves to subject {scan.subject} like {scans[scan.subject].path}; "
                "keep one T2 scan per subject (a mask or a second copy would leak across splits)"
            )
        scans[scan.subject] = scan
    if sites is not None:
        scans = {k: s for k, s in scans.items() if s.site in sites}
    if not scans:
        where = f" from sites {', '.join(sites)}" if sites else ""
        raise UserInputError(f"{root}: no T2 scans found{where}")
    return [scans[k] for k in sorted(scans)]
