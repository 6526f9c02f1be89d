from pathlib import Path

import pytest
from helpers import SHARED_IXI, blob_volume, write_nifti

from mrisr_ray.data import discover_scans
from mrisr_ray.data.discovery import identify
from mrisr_ray.errors import UserInputError


def test_ixi_names_give_subject_and_site():
    scan = identify(Path("/x/IXI002-Guys-0828-T2.nii.gz"))
    assert (scan.subject, scan.site) == ("IXI002-Guys-0828", "Guys")
    assert identify(Path("hd_bet_IXI013-HH-1212-T2.nii")).subject == "IXI013-HH-1212"
    assert identify(Path("IXI002-Guys-0828-PD.nii.gz")) is None
    other = identify(Path("/x/patient_7.nii.gz"))
    assert (other.subject, other.site) == ("patient_7", "unknown")


def test_discovery_finds_t2_only_and_filters_sites(ixi_dir):
    scans = discover_scans(ixi_dir)
    assert [s.subject for s in scans] == [f"IXI{i:03d}-{'Guys' if i % 2 == 0 else 'HH'}-{1000 + i}"
                                          for i in range(8)]
    assert all(s.path.name.endswith("-T2.nii.gz") for s in scans)
    guys = discover_scans(ixi_dir, sites=["Guys"])
    assert {s.site for s in guys} == {"Guys"} and len(guys) == 4
    with pytest.raises(UserInputError, match="no T2 scans found from sites IOP"):
        discover_scans(ixi_dir, sites=["IOP"])


def test_two_files_of_one_subject_is_an_error(ixi_dir):
    write_nifti(ixi_dir / "masks" / "mask_IXI003-HH-1003-T2.nii.gz", blob_volume(0))
    with pytest.raises(UserInputError, match="resolves to subject IXI003-HH-1003"):
        discover_scans(ixi_dir)


def test_shared_folder_scan_and_mask_collide(real_t2):
    # ../shared holds a scan, its dilated variant and its mask: one subject, three files.
    with pytest.raises(UserInputError, match="IXI002-Guys-0828"):
        discover_scans(SHARED_IXI)


def test_missing_empty_and_nifti_free_folders(tmp_path):
    with pytest.raises(UserInputError, match="data directory not found"):
        discover_scans(tmp_path / "absent")
    with pytest.raises(UserInputError, match="no NIfTI files"):
        discover_scans(tmp_path)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(UserInputError, match="no NIfTI files"):
        discover_scans(tmp_path)
    write_nifti(tmp_path / "IXI001-IOP-0001-T1.nii.gz", blob_volume(0))
    with pytest.raises(UserInputError, match="no T2 scans found"):
        discover_scans(tmp_path)
