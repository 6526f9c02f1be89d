"""Training batches of aligned LR/HR patches from the cache (docs/data.md).

LR is made on the whole slice (k-space truncation is global), on the target device, and only
then are LR and HR cropped at the same place. Two samplers:
- grid (paper): a non-overlapping grid of size×size patches per slice, all-background patches
  dropped; an epoch visits every grid patch once in a shuffled order.
- random: as many patches per epoch as the grid has, each from a random slice, centred on a
  foreground pixel with probability `foreground_bias`, anywhere otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mrisr_ray.data.cache import Cache
from mrisr_ray.data.degrade import degrade
from mrisr_ray.data.volume import FOREGROUND_THRESHOLD


class SliceStore:
    """The kept HR slices of some subjects, addressed by one global slice index."""

    def __init__(self, cache: Cache, subjects: list[str]):
        self.subjects = list(subjects)
        self.arrays = [cache.slices(s) for s in self.subjects]
        counts = [len(a) for a in self.arrays]
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.shape = self.arrays[0].shape[1:] if self.arrays else (0, 0)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(subject position, slice position inside that subject) of a global slice index."""
        subject = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return subject, int(index - self.offsets[subject])

    def slices(self, indices: np.ndarray) -> np.ndarray:
        """(len(indices), H, W) float32 copy of the requested slices."""
        out = np.empty((len(indices), *self.shape), dtype=np.float32)
        for i, index in enumerate(indices):
            subject, local = self.locate(int(index))
            out[i] = self.arrays[subject][local]
        return out


def grid_positions(store: SliceStore, size: int) -> np.ndarray:
    """(N, 3) int array of (slice, row, col) top-left corners of the foreground grid patches."""
    h, w = store.shape
    rows, cols = h // size, w // size
    found = []
    for index in range(len(store)):
        subject, local = store.locate(index)
        hr = np.asarray(store.arrays[subject][local][: rows * size, : cols * size])
        blocks = hr.reshape(rows, size, cols, size).max(axis=(1, 3)) > FOREGROUND_THRESHOLD
        r, c = np.nonzero(blocks)
        found.append(np.stack([np.full_like(r, index), r * size, c * size], axis=1))
    return np.concatenate(found).astype(np.int64) if found else np.zeros((0, 3), np.int64)


def random_positions(store: SliceStore, size: int, count: int, rng: np.random.Generator,
                     foreground_bias: float = 0.9) -> np.ndarray:
    """(count, 3) random (slice, row, col) corners, biased towards foreground centres."""
    h, w = store.shape
    slice_ids = rng.integers(0, len(store), size=count)
    positions = np.empty((count, 3), dtype=np.int64)
    for i, index in enumerate(slice_ids):
        row, col = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        if rng.random() < foreground_bias:
            subject, local = store.locate(int(index))
            fg = np.flatnonzero(np.asarray(store.arrays[subject][local]) > FOREGROUND_THRESHOLD)
            if fg.size:
                centre = fg[rng.integers(fg.size)]
                row = min(max(centre // w - size // 2, 0), h - size)
                col = min(max(centre % w - size // 2, 0), w - size)
        positions[i] = (index, row, col)
    return positions


@dataclass
class PatchBatch:
    lq: torch.Tensor  # (B, 1, size, size) zero-filled LR patches (BasicSR's "low quality")
    gt: torch.Tensor  # (B, 1, size, size) HR patches (ground truth)


class PatchSampler:
    """Epochs of aligned (LR, HR) patch batches for one set of subjects.

    Args:
        store: slices to sample from.
        size: patch side (64 in the paper).
        mode: "grid" or "random".
        keep: k-space fraction for `degrade` (from the cache manifest).
        device: where LR is computed and batches are returned.
        seed: seeds the epoch order / random positions.
        rank, world_size: each DDP rank takes a disjoint, equally long share of every epoch
            (equal lengths keep the ranks' DDP steps in lockstep).
        max_patches: cap on the patches of an epoch (smoke runs); None visits all.
    """

    def __init__(self, store: SliceStore, size: int = 64, mode: str = "grid", keep: float = 0.5,
                 device: torch.device | str = "cpu", seed: int = 0, foreground_bias: float = 0.9,
                 rank: int = 0, world_size: int = 1, max_patches: int | None = None):
        if mode not in ("grid", "random"):
            raise ValueError(f"patch mode must be 'grid' or 'random', got {mode!r}")
        self.store, self.size, self.mode, self.keep = store, size, mode, keep
        self.device = torch.device(device)
        self.seed, self.foreground_bias = seed, foreground_bias
        self.rank, self.world_size = rank, world_size
        self.grid = grid_positions(store, size)
        self.max_patches = max_patches

    @property
    def patches_per_epoch(self) -> int:
        n = len(self.grid) if self.max_patches is None else min(len(self.grid), self.max_patches)
        return n - n % self.world_size

    def epoch_positions(self, epoch: int) -> np.ndarray:
        """This rank's positions for `epoch` (same on every call, so resumes are exact)."""
        rng = np.random.default_rng([self.seed, epoch])
        n = self.patches_per_epoch
        if self.mode == "grid":
            positions = self.grid[rng.permutation(len(self.grid))[:n]]
        else:
            positions = random_positions(self.store, self.size, n, rng, self.foreground_bias)
        return positions[self.rank :: self.world_size]

    def make_batch(self, positions: np.ndarray) -> PatchBatch:
        """Load the slices, degrade them whole on the device, crop aligned LR and HR patches."""
        unique, inverse = np.unique(positions[:, 0], return_inverse=True)
        hr_full = torch.from_numpy(self.store.slices(unique)).to(self.device)
        lr_full = degrade(hr_full, self.keep)
        s = self.size
        hr, lr = [], []
        for k, (_, row, col) in zip(inverse, positions, strict=True):
            hr.append(hr_full[k, row : row + s, col : col + s])
            lr.append(lr_full[k, row : row + s, col : col + s])
        return PatchBatch(lq=torch.stack(lr)[:, None], gt=torch.stack(hr)[:, None])

    def batches(self, epoch: int, batch_size: int):
        """Yield this rank's batches of one epoch (the last, short batch is dropped)."""
        positions = self.epoch_positions(epoch)
        for start in range(0, len(positions) - batch_size + 1, batch_size):
            yield self.make_batch(positions[start : start + batch_size])

    def random_batch(self, rng: np.random.Generator, batch_size: int) -> PatchBatch:
        """A batch drawn independently of the epoch order (the critic's extra batches)."""
        pick = rng.integers(0, len(self.grid), size=batch_size)
        if self.mode == "grid":
            return self.make_batch(self.grid[pick])
        return self.make_batch(random_positions(self.store, self.size, batch_size, rng,
                                                self.foreground_bias))
