"""Training batches of 64×64 patches per second: the cache vs a naive loader, in one run.

The naive loader is what a first script does: for every patch, read the subject's NIfTI with
nibabel, normalise, degrade the slice, crop. The cached pipeline reads memory-mapped slices and
degrades each needed slice once per batch (`mrisr_ray.data.patches.PatchSampler`).
Target: cached ≥ 20× naive on 2 cores.

    python benchmarks/data_pipeline.py [--subjects 6] [--batch 128] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import write_result

from mrisr_ray.data import Cache, degrade, load_volume
from mrisr_ray.data.patches import PatchSampler, SliceStore
from mrisr_ray.data.synthetic import prepare_synthetic_cache


def naive_batch(cache: Cache, store: SliceStore, positions: np.ndarray, size: int) -> torch.Tensor:
    lr, hr = [], []
    for index, row, col in positions:
        subject, local = store.locate(int(index))
        entry = cache.entry(store.subjects[subject])
        volume = load_volume(cache.path / entry.source)
        hr_slice = torch.from_numpy(volume[:, :, entry.kept_slices[local]].copy())
        lr.append(degrade(hr_slice, cache.keep)[row : row + size, col : col + size])
        hr.append(hr_slice[row : row + size, col : col + size])
    return torch.stack(lr), torch.stack(hr)


def rate(make_batch, batches: int) -> float:
    start = time.perf_counter()
    for i in range(batches):
        make_batch(i)
    return batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cached-batches", type=int, default=40)
    parser.add_argument("--naive-batches", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "synthetic"
        prepare_synthetic_cache(out, n_subjects=args.subjects, n_folds=2, test_fraction=0.2)
        cache = Cache.open(out)
        store = SliceStore(cache, cache.splits.development)
        sampler = PatchSampler(store, size=64, mode="grid", keep=cache.keep, device=args.device)
        positions = sampler.epoch_positions(0)
        chunk = lambda i: positions[(i * args.batch) % len(positions):][: args.batch]  # noqa: E731
        cached = rate(lambda i: sampler.make_batch(chunk(i)), args.cached_batches)
        naive = rate(lambda i: naive_batch(cache, store, chunk(i), 64), args.naive_batches)

    result = {
        "batch_size": args.batch, "patch": 64, "subjects": args.subjects, "device": args.device,
        "cached_batches_per_s": round(cached, 3), "naive_batches_per_s": round(naive, 4),
        "cached_patches_per_s": round(cached * args.batch, 1),
        "naive_patches_per_s": round(naive * args.batch, 2),
        "speedup": round(cached / naive, 1), "target_speedup": 20,
    }
    path = write_result("data_pipeline", result)
    print(f"cached {result['cached_patches_per_s']} patches/s, naive {result['naive_patches_per_s']} "
          f"patches/s: ratio {result['speedup']}x (target >= 20x) -> {path}")


if __name__ == "__main__":
    main()
