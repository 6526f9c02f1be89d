import gzip

import nibabel as nib
import numpy as np
import pytest
from helpers import blob_volume, write_nifti

from mrisr_ray.data import load_volume, read_volume
from mrisr_ray.data.volume import foreground_slices
from mrisr_ray.errors import UserInputError


def test_real_subject_loads_canonical_in_unit_range(real_t2):
    volume = read_volume(real_t2)
    assert volume.data.shape == (256, 256, 130)
    assert volume.data.dtype == np.float32
    assert volume.data.min() == 0.0 and volume.data.max() == 1.0
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert volume.spacing == pytest.approx((0.9375, 0.9375, 1.2), abs=0.06)
    kept = foreground_slices(volume.data)
    # The brain spans slices 13-117; the 10%-above-0.05 rule keeps its central part.
    assert 60 < kept.size < 105 and kept.min() > 13 and kept.max() < 117


def test_load_volume_reorients_to_canonical(tmp_path):
    data = blob_volume(0).astype(np.float32)
    flipped = np.diag([-0.9375, 0.9375, 1.2, 1.0])  # stored L-to-R reversed
    path = tmp_path / "flip.nii.gz"
    nib.save(nib.Nifti1Image(data, flipped), str(path))
    loaded = load_volume(path)
    expected = data[::-1]
    np.testing.assert_allclose(loaded, (expected - data.min()) / (data.max() - data.min()), atol=1e-6)


def test_percentile_clipping(tmp_path):
    data = blob_volume(1).astype(np.float32)
    data[0, 0, 0] = 10_000  # one hot voxel
    path = write_nifti(tmp_path / "hot.nii.gz", data)
    plain, robust = load_volume(path), read_volume(path, (0.0, 99.0)).data
    assert plain[16, 16].mean() < 0.02  # the outlier squashes everything
    assert robust[16, 16].mean() > 0.5


@pytest.mark.parametrize("data,message", [
    (np.ones((8, 8), np.float32), "expected a 3-D volume, got 2-D"),
    (np.ones((8, 8, 4, 2), np.float32), "expected a 3-D volume, got 4-D"),
    (np.full((8, 8, 4), 7.0, np.float32), "constant volume"),
])
def test_bad_shapes_and_constant(tmp_path, data, message):
    path = write_nifti(tmp_path / "bad.nii.gz", data, zooms=(1,) * data.ndim)
    with pytest.raises(UserInputError, match=message) as err:
        load_volume(path)
    assert str(path) in str(err.value)


def test_nan_and_inf_voxels(tmp_path):
    for value in (np.nan, np.inf):
        data = blob_volume(2).astype(np.float32)
        data[3, 3, 3] = value
        path = write_nifti(tmp_path / f"nonfinite{value}.nii.gz", data)
        with pytest.raises(UserInputError, match="NaN or Inf"):
            load_volume(path)


def test_truncated_gzip(tmp_path):
    good = write_nifti(tmp_path / "good.nii.gz", blob_volume(3, shape=(64, 64, 16)))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserInputError, match=r"truncated\.nii\.gz"):
        load_volume(truncated)


def test_not_a_nifti_with_nifti_name(tmp_path):
    fake = tmp_path / "notes.nii.gz"
    with gzip.open(fake, "wb") as f:
        f.write(b"this is a text file, not an image" * 20)
    plain = tmp_path / "plain.nii"
    plain.write_text("hello")
    for path in (fake, plain):
        with pytest.raises(UserInputError, match="NIfTI"):
            load_volume(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="file not found"):
        load_volume(tmp_path / "nope.nii.gz")


def test_singular_affine_and_complex_voxels_are_one_line(tmp_path):
    data = blob_volume(0)
    singular = nib.Nifti1Image(data, None)
    singular.header.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=1)  # one axis maps to nothing
    nib.save(singular, tmp_path / "singular.nii.gz")
    with pytest.raises(UserInputError, match="its affine gives the axes no orientation"):
        read_volume(tmp_path / "singular.nii.gz")
    nib.save(nib.Nifti1Image(data.astype(np.complex64), np.eye(4)), tmp_path / "complex.nii.gz")
    with pytest.raises(UserInputError, match="complex-valued voxels"):
        read_volume(tmp_path / "complex.nii.gz")
