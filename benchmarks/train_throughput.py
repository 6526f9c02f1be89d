"""Training throughput (generator patches/s) and peak memory of one GPU (or CPU) worker.

Runs the training session of a Ray worker (`mrisr_ray.train.session.train_session`, no Ray
around it) at the paper's settings (64×64 patches, CPCE batch 128, CIRCLE batch 64, 4 critic
steps per generator step) for each model twice in the same run: fp32 (the baseline) and bf16
autocast + channels_last (the default on CUDA). Prints the ratio. CPCE uses random VGG-19
weights here (same compute as the ImageNet ones, which this benchmark may not have).

    python benchmarks/train_throughput.py --device cuda [--cache CACHE] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from common import write_result

from mrisr_ray.config import load_config
from mrisr_ray.data.cache import Cache
from mrisr_ray.train.loop import LoopContext
from mrisr_ray.train.session import train_session


def measure(cache: Cache, model: str, device: torch.device, amp: bool, epochs: int) -> dict:
    overrides = ["loss.perceptual=random_vgg", f"train.epochs={epochs}", f"train.amp={str(amp).lower()}",
                 f"train.channels_last={str(amp).lower()}"]
    config = load_config(model, overrides=overrides)
    ctx = LoopContext(device=device)
    epochs_seen: list[dict] = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        return module.to(memory_format=torch.channels_last) if device.type == "cuda" and amp else module

    session = train_session(config, cache, cache.splits.development, [], ctx, None,
                            lambda result: epochs_seen.append(result.metrics), wrap)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    steady = epochs_seen[1:] or epochs_seen  # epoch 1 includes warm-up (cuDNN autotuning)
    rate = sum(e["patches_per_s"] for e in steady) / len(steady)
    return {"model": model, "precision": "bf16+channels_last" if amp else "fp32",
            "batch_size": config.train.batch_size, "patches_per_epoch": session.patches_per_epoch,
            "patches_per_s": round(rate, 1), "peak_memory_gib": round(peak, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cache", type=Path, help="prepared cache (default: a synthetic one)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["cpce", "circle"])
    args = parser.parse_args()
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.cache
        if path is None:
            from mrisr_ray.data.synthetic import prepare_synthetic_cache

            path = Path(tmp) / "synthetic"
            prepare_synthetic_cache(path, n_subjects=4, n_slices=20, n_folds=2, test_fraction=0.25)
        cache = Cache.open(path)
        rows = [measure(cache, m, device, amp, args.epochs) for m in args.models for amp in (False, True)]

    for model in args.models:
        fp32, bf16 = [r for r in rows if r["model"] == model]
        bf16["speedup_vs_fp32"] = round(bf16["patches_per_s"] / fp32["patches_per_s"], 2)
    name = f"train_throughput_{device.type}"
    path = write_result(name, {"epochs": args.epochs, "torch": torch.__version__, "rows": rows})
    for r in rows:
        ratio = f"  ({r['speedup_vs_fp32']}x fp32)" if "speedup_vs_fp32" in r else ""
        print(f"{r['model']:6s} {r['precision']:20s} batch {r['batch_size']:3d}: "
              f"{r['patches_per_s']:8.1f} patches/s, peak {r['peak_memory_gib']} GiB{ratio}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
