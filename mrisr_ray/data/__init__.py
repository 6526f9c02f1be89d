"""Data: discovery, loading, degradation, splits, cache, patches and the synthetic cohort.

Public API used by the rest of mrisr-ray:
    load_volume(path) -> (H, W, S) float32 in [0, 1], canonical orientation
    degrade(x, keep=0.5) -> k-space-truncated LR of a (..., H, W) torch tensor
"""

from mrisr_ray.data.cache import Cache, Protocol, prepare_cache
from mrisr_ray.data.degrade import degrade, truncate_kspace
from mrisr_ray.data.discovery import discover_scans
from mrisr_ray.data.splits import Splits, make_splits
from mrisr_ray.data.volume import load_volume, read_volume

__all__ = [
    "Cache",
    "Protocol",
    "Splits",
    "degrade",
    "discover_scans",
    "load_volume",
    "make_splits",
    "prepare_cache",
    "read_volume",
    "truncate_kspace",
]
