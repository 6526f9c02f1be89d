import numpy as np
import torch

from mrisr_ray.data import Cache, degrade
from mrisr_ray.data.patches import PatchSampler, SliceStore, grid_positions


def test_lr_is_made_on_the_whole_slice_then_cropped_with_hr(tiny_synthetic_cache):
    cache = Cache.open(tiny_synthetic_cache)
    store = SliceStore(cache, cache.splits.folds[0].train)
    sampler = PatchSampler(store, size=64, mode="grid", keep=cache.keep, seed=1)
    positions = sampler.epoch_positions(0)[:12]
    batch = sampler.make_batch(positions)
    assert batch.lq.shape == batch.gt.shape == (12, 1, 64, 64)
    for (index, row, col), lr, hr in zip(positions, batch.lq, batch.gt, strict=True):
        whole = torch.from_numpy(store.slices(np.array([index]))[0])
        torch.testing.assert_close(hr[0], whole[row : row + 64, col : col + 64])
        torch.testing.assert_close(lr[0], degrade(whole)[row : row + 64, col : col + 64])
        # Degrading the patch alone would differ: truncation is global.
        assert not torch.allclose(lr[0], degrade(hr[0]), atol=1e-3)


def test_grid_drops_background_and_covers_foreground(tiny_synthetic_cache):
    cache = Cache.open(tiny_synthetic_cache)
    store = SliceStore(cache, cache.splits.development)
    grid = grid_positions(store, 64)
    assert 0 < len(grid) < 16 * len(store)  # background corners dropped
    for index, row, col in grid[:40]:
        assert store.slices(np.array([index]))[0, row : row + 64, col : col + 64].max() > 0.05


def test_epochs_are_seeded_and_ranks_disjoint(tiny_synthetic_cache):
    cache = Cache.open(tiny_synthetic_cache)
    store = SliceStore(cache, cache.splits.folds[1].train)
    ranks = [PatchSampler(store, mode="grid", seed=5, rank=r, world_size=2) for r in range(2)]
    a, b = ranks[0].epoch_positions(3), ranks[1].epoch_positions(3)
    assert not set(map(tuple, a)) & set(map(tuple, b))
    assert len(a) + len(b) == ranks[0].patches_per_epoch
    np.testing.assert_array_equal(a, ranks[0].epoch_positions(3))
    assert not np.array_equal(a, ranks[0].epoch_positions(4))


def test_random_mode_is_foreground_biased(tiny_synthetic_cache):
    cache = Cache.open(tiny_synthetic_cache)
    store = SliceStore(cache, cache.splits.development)
    sampler = PatchSampler(store, size=32, mode="random", seed=0, foreground_bias=1.0)
    batches = list(sampler.batches(0, batch_size=16))
    assert len(batches) == sampler.patches_per_epoch // 16
    hr = torch.cat([b.gt for b in batches])
    # Every patch is centred on a foreground pixel.
    assert (hr[:, 0, 16, 16] > 0.05).float().mean() == 1.0
