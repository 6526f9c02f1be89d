"""Everything the GPU issue measures, in one short run on a lent GPU: `train_throughput.py`'s CPCE
ladder, leave-one-out, CIRCLE final and fp32, each beside a plain
PyTorch loop of the same math where the target is read, FLOPs, MFU, peak memory and top
kernels; plus the paper-scale projection. Sized for about 8 minutes on an H100 or H200 (an
estimate from the earlier H200 rates and compile times; not yet run: no GPU was lent since).

Imports torch, numpy and PyYAML only: the GPU machine has no Ray, MLflow, nibabel, scipy or
scikit-image, so the data pipeline's share is reported as not measured there (it is measured in
the CPU run). Were PyYAML missing there: `mkdir -p .gpu_deps && cp -r
.venv/lib/python3.11/site-packages/yaml .gpu_deps/` here, carry `.gpu_deps`, prefix the command
with `PYTHONPATH=.gpu_deps`.

    python benchmarks/gpu.py --out DIR        # writes DIR/train_throughput_cuda.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import host, write_result
from train_throughput import projection, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA device (CPU figures: benchmarks/train_throughput.py)")
    started = time.perf_counter()
    result = run(torch.device("cuda"), ["cpce", "circle"], args.warmup, args.steps)
    result["paper_scale_hours"] = projection(result["rows"])
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    path = write_result("train_throughput_cuda", result, host(), args.out)
    for r in result["rows"]:
        print(r["model"], r["variant"], r["product_patches_per_s"], r.get("product_vs_plain"),
              r.get("mfu_vs_spec_bf16"), r.get("peak_memory_gib"))
    print("gains", result["gains"], "paper-scale hours", result["paper_scale_hours"],
          f"wall {result['wall_seconds']} s -> {path}")


if __name__ == "__main__":
    main()
