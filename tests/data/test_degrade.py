import numpy as np
import pytest
import torch

from mrisr_ray.data import degrade, load_volume, truncate_kspace
from mrisr_ray.data.degrade import kept_block


def numpy_reference(image: np.ndarray, keep: float) -> np.ndarray:
    """Straightforward numpy version of the paper's central-k-space truncation."""
    h, w = image.shape
    spectrum = np.fft.fftshift(np.fft.fft2(image))
    kh, kw = round(h * keep), round(w * keep)
    mask = np.zeros((h, w), bool)
    mask[h // 2 - kh // 2 : h // 2 - kh // 2 + kh, w // 2 - kw // 2 : w // 2 - kw // 2 + kw] = True
    return np.abs(np.fft.ifft2(np.fft.ifftshift(spectrum * mask)))


@pytest.mark.parametrize("shape,keep", [((256, 256), 0.5), ((64, 48), 0.5), ((33, 31), 0.25)])
def test_degrade_equals_numpy_reference(shape, keep):
    image = np.random.default_rng(0).random(shape)
    ours = degrade(torch.from_numpy(image), keep).numpy()
    np.testing.assert_allclose(ours, numpy_reference(image, keep), atol=1e-5)


def test_degrade_on_real_slice_matches_reference(real_t2):
    volume = load_volume(real_t2)
    hr = volume[:, :, 65]
    np.testing.assert_allclose(degrade(torch.from_numpy(hr)).numpy(), numpy_reference(hr, 0.5),
                               atol=1e-5)


def test_kspace_is_zero_outside_block_and_unchanged_inside():
    image = torch.rand(3, 2, 64, 64, dtype=torch.float64)
    truncated = truncate_kspace(image, 0.5)
    full = torch.fft.fftshift(torch.fft.fft2(image.float()), dim=(-2, -1))
    rows, cols = kept_block(64, 0.5), kept_block(64, 0.5)
    assert (rows.start, rows.stop) == (16, 48)
    inside = torch.zeros(64, 64, dtype=torch.bool)
    inside[rows, cols] = True
    assert torch.equal(truncated[..., inside], full[..., inside])
    assert torch.count_nonzero(truncated[..., ~inside]) == 0
    assert inside.sum() == 64 * 64 // 4  # the central 25% of k-space


def test_degrade_is_batched_same_size_float32():
    batch = torch.rand(4, 1, 32, 32)
    out = degrade(batch)
    assert out.shape == batch.shape and out.dtype == torch.float32
    for i in range(4):
        torch.testing.assert_close(out[i, 0], degrade(batch[i, 0]))


def test_keep_one_is_identity_and_bad_keep_rejected():
    image = torch.rand(16, 16)
    torch.testing.assert_close(degrade(image, 1.0), image, atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        degrade(image, 0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_degrade_runs_on_gpu():
    image = torch.rand(8, 256, 256)
    torch.testing.assert_close(degrade(image.cuda()).cpu(), degrade(image), atol=1e-5, rtol=1e-5)


def test_degrade_equals_inverse_of_truncated_kspace():
    image = torch.rand(2, 40, 36)
    via_kspace = torch.fft.ifft2(torch.fft.ifftshift(truncate_kspace(image), dim=(-2, -1))).abs()
    torch.testing.assert_close(degrade(image), via_kspace)
