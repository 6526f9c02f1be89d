"""Steady-state training throughput of one device: the product's steps against a plain loop.

For each model at the paper configuration (64×64 patches, the config's batch size and n_critic,
CPCE with VGG-19 to conv5_4, random weights: same compute as ImageNet's), one iteration is
n_critic critic steps and one generator step. After `--warmup` iterations (cuDNN autotuning,
torch.compile), `--steps` iterations are timed between device synchronisations. Recorded per
variant: generator patches/s, FLOPs per patch (torch's FLOP formulas over every op one iteration
dispatches: convolutions and matmuls, the gradient penalty's double backward included, since its
ops dispatch like any other; elementwise ops, FFTs and norms are not counted), achieved TFLOP/s,
MFU against the device's spec-sheet bf16 peak and against a large bf16 (CPU: fp32) matmul
measured in the same run, peak
memory, the warm-up's extra time (compilation), and the top kernels from torch.profiler.

Beside the product (`mrisr_ray.steps`: `critic_step`, `generator_step`, losses summed on the
device as `train/loop.py` does), the same math written as a textbook PyTorch loop over the same
networks and batches; the ratio product/plain is the product's overhead (target ≥ 0.95). Both
read the same device-resident batches; the data pipeline (`PatchSampler`: slices → k-space
degradation on the device → crops) is timed on its own and reported as a share of a step.

Variants (CUDA): a cumulative ladder on CPCE (fp32 → +channels_last → +bf16 autocast → +fused
Adam → +torch.compile = final) and leave-one-out of compile (the "+fused Adam" rung) and bf16;
CIRCLE in the final configuration and fp32. The plain loop runs beside the final configuration.
On CPU: fp32 eager only, 2 threads by default, fewer iterations.

    python benchmarks/train_throughput.py [--device cuda] [--steps 200] [--warmup 20] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from common import RESULTS, host, write_result

from mrisr_ray.config import Config, load_config
from mrisr_ray.steps import GanSteps, build_steps

# Dense bf16 tensor-core peaks from NVIDIA's data sheets (SXM parts), FLOP/s.
SPEC_BF16_PEAK = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "A10G": 70e12, "L4": 121e12}


@dataclass(frozen=True)
class Variant:
    name: str
    bf16: bool = False
    channels_last: bool = False
    fused_adam: bool = False
    compile: bool = False

    def overrides(self) -> list[str]:
        values = {"amp": self.bf16, "channels_last": self.channels_last, "fused_adam": self.fused_adam,
                  "compile": self.compile}
        return [f"train.{key}={str(value).lower()}" for key, value in values.items()]


FP32 = Variant("fp32")
FINAL = Variant("final", bf16=True, channels_last=True, fused_adam=True, compile=True)
CUDA_LADDER = [FP32, Variant("+channels_last", channels_last=True),
               Variant("+bf16", bf16=True, channels_last=True),
               Variant("+fused Adam", bf16=True, channels_last=True, fused_adam=True), FINAL]
WITHOUT_BF16 = Variant("final - bf16", channels_last=True, fused_adam=True, compile=True)


def paper_config(model: str, variant: Variant, overrides: tuple[str, ...] = ()) -> Config:
    """The paper configuration (`overrides`: `--set` values, for other batch sizes or tiny nets)."""
    return load_config(model, overrides=["loss.perceptual=random_vgg", *variant.overrides(), *overrides])


Batches = list[tuple[torch.Tensor, torch.Tensor]]


def device_batches(config: Config, device: torch.device, count: int = 8) -> Batches:
    """`count` (LR, HR) batches of random smooth patches, resident on the device (throughput
    does not depend on the content; the data pipeline is timed separately)."""
    from mrisr_ray.data.degrade import degrade

    size, batch = config.data.patch_size, config.train.batch_size
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        coarse = torch.rand(batch, 1, size // 8, size // 8, generator=generator)
        hr = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
        out.append((degrade(hr, 0.5).to(device), hr.to(device)))
    return out


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class ProductLoop:
    """The product's steps, as `train/loop.py: train_epoch` drives them."""

    def __init__(self, config: Config, device: torch.device):
        from mrisr_ray.train.loop import add

        self.steps: GanSteps = build_steps(config, device)  # NHWC with train.channels_last
        if config.train.compile:
            self.steps.compile()
        self.n_critic, self.add = config.train.n_critic, add
        self.totals: dict[str, torch.Tensor] = {}

    def __call__(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> None:
        for _ in range(self.n_critic):
            self.add(self.totals, self.steps.critic_step(*next(batches)), 1 / self.n_critic)
        self.add(self.totals, self.steps.generator_step(*next(batches)))


class PlainLoop:
    """The same math as a textbook loop: the networks, Adam, autocast and the loss formulas of
    docs/models.md written inline, no step classes, no bookkeeping beyond the losses."""

    def __init__(self, config: Config, device: torch.device):
        steps = build_steps(config, device)  # only for freshly initialised networks of the config
        t = config.train
        self.nets = {**steps.generators, **steps.critics}  # NHWC with train.channels_last, as built
        self.vgg = getattr(steps, "perceptual", None)
        self.scorers = {k: self.nets[k] for k in steps.critics}  # critics in the generator step
        if t.compile:
            for name in steps.generators:
                self.nets[name] = torch.compile(self.nets[name])
            self.scorers = {k: torch.compile(net) for k, net in self.scorers.items()}
            self.vgg = torch.compile(self.vgg) if self.vgg is not None else None
        fused = t.fused_adam and device.type == "cuda"
        generators = [p for k in steps.generators for p in self.nets[k].parameters()]
        critics = [p for k in steps.critics for p in self.nets[k].parameters()]
        self.opt_g = torch.optim.Adam(generators, lr=t.lr, betas=t.betas, fused=fused)
        self.opt_d = torch.optim.Adam(critics, lr=t.lr, betas=t.betas, fused=fused)
        self.model, self.n_critic, self.w = config.model, t.n_critic, config.loss
        bf16 = t.amp and device.type == "cuda"
        self.autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        self.loss_sum = torch.zeros((), device=device)

    def wgan_gp(self, d: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(d(mixed).sum(), mixed, create_graph=True)
        penalty = ((grad.flatten(1).float().norm(2, dim=1) - 1) ** 2).mean()
        return d(fake).float().mean() - d(real).float().mean() + self.w.gp_weight * penalty

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.loss_sum += loss.detach()

    def __call__(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> None:
        n = self.nets
        for _ in range(self.n_critic):
            lq, gt = next(batches)
            with torch.no_grad(), self.autocast():
                fakes = [n["G"](lq)] if self.model == "cpce" else [n["G"](lq), n["F"](gt)]
            with self.autocast():
                if self.model == "cpce":
                    loss = self.wgan_gp(n["D"], gt, fakes[0].float())
                else:
                    loss = (self.wgan_gp(n["D_Y"], gt, fakes[0].float())
                            + self.wgan_gp(n["D_X"], lq, fakes[1].float()))
            self.step(self.opt_d, loss)
        lq, gt = next(batches)
        critics = [p for k in ("D", "D_Y", "D_X") if k in n for p in n[k].parameters()]
        for p in critics:
            p.requires_grad_(False)
        with self.autocast():
            total = self.cpce_loss(lq, gt) if self.model == "cpce" else self.circle_loss(lq, gt)
        self.step(self.opt_g, total)
        for p in critics:
            p.requires_grad_(True)

    def cpce_loss(self, lq: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        sr = self.nets["G"](lq)
        total = -self.w.lambda_adv * self.scorers["D"](sr).float().mean()
        if self.vgg is not None:
            with torch.no_grad():
                target = self.vgg(gt).float()
            total = total + self.w.lambda_p * F.mse_loss(self.vgg(sr).float(), target)
        return total

    def circle_loss(self, lq: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        g, f, w = self.nets["G"], self.nets["F"], self.w

        def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a.float() - b.float()).abs().mean()

        def tv(x: torch.Tensor) -> torch.Tensor:
            dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
            return dy + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()

        sr, lq_hat = g(lq), f(gt)
        adversarial = -self.scorers["D_Y"](sr).float().mean() - self.scorers["D_X"](lq_hat).float().mean()
        cycle = l1(f(sr), lq) + l1(g(lq_hat), gt)
        identity = l1(g(gt), gt) + l1(f(lq), lq)
        srf = sr.float()
        jst = w.tau * tv(srf) + (1 - w.tau) * tv(gt - srf)
        return (w.lambda_adv * adversarial + w.lambda_cycle * cycle + w.lambda_identity * identity
                + w.lambda_jst * jst)


def cycle_batches(batches: Batches, channels_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    prepared = [(to_memory_format(lq, channels_last), to_memory_format(gt, channels_last))
                for lq, gt in batches]
    while True:
        yield from prepared


def timed(loop: Callable, batches: Iterator, device: torch.device, warmup: int,
          steps: int) -> tuple[float, float]:
    """(seconds of the warm-up iterations, seconds per steady iteration)."""
    synchronize(device)
    started = time.perf_counter()
    for _ in range(warmup):
        loop(batches)
    synchronize(device)
    warm = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        loop(batches)
    synchronize(device)
    return warm, (time.perf_counter() - started) / steps


def flops_per_iteration(loop: Callable, batches: Iterator) -> int:
    """FLOPs of one iteration by torch's FLOP formulas (`flop_registry`: convolutions, matmuls,
    attention) over every op dispatched. FlopCounterMode itself cannot be used: its module
    tracker's hooks refuse the gradient penalty's `autograd.grad` on a leaf input."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                Count.total += formula(*args, **kwargs, out_val=out)
            return out

    with Count():
        loop(batches)
    return Count.total


def matmul_peak(device: torch.device) -> float:
    """FLOP/s of a large matrix product on this device (bf16 on CUDA, fp32 on CPU), the best of
    three timings: what the device's dense math reaches in practice."""
    n, dtype, reps = (8192, torch.bfloat16, 20) if device.type == "cuda" else (2048, torch.float32, 3)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(3):
        synchronize(device)
        started = time.perf_counter()
        for _ in range(reps):
            a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 * reps / best


def spec_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in SPEC_BF16_PEAK.items() if key in name), None)


def top_kernels(loop: Callable, batches: Iterator, device: torch.device, rows: int = 10) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    iterations = 3 if device.type == "cuda" else 1

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(iterations):
            loop(batches)
        synchronize(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, attr), reverse=True)
    total = sum(getattr(e, attr) for e in events) or 1
    return [{"name": e.key[:80], "self_ms_per_iteration": round(getattr(e, attr) / iterations / 1000, 3),
             "share": round(getattr(e, attr) / total, 3)} for e in events[:rows]]


def data_seconds_per_iteration(config: Config, device: torch.device, iterations: int) -> float | str:
    """The product's data pipeline alone for `iterations` iterations' batches (n_critic + 1 each),
    on a synthetic cache; why not, where the cache cannot be built here (nibabel, scipy and
    scikit-image are not on the GPU machine)."""
    try:
        from mrisr_ray.data.cache import Cache
        from mrisr_ray.data.synthetic import prepare_synthetic_cache
        from mrisr_ray.train.loop import LoopContext, make_sampler
    except ImportError as exc:
        return f"not measured: {exc}"
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        prepare_synthetic_cache(Path(tmp) / "c", n_subjects=4, n_slices=20, n_folds=2,
                                test_fraction=0.25)
        cache = Cache.open(Path(tmp) / "c")
        sampler = make_sampler(cache, cache.splits.development, config, LoopContext(device=device))
        rng, batch = np.random.default_rng(0), config.train.batch_size
        sampler.random_batch(rng, batch)
        synchronize(device)
        started = time.perf_counter()
        for _ in range(iterations * (config.train.n_critic + 1)):
            sampler.random_batch(rng, batch)
        synchronize(device)
        return (time.perf_counter() - started) / iterations


def measure(model: str, variant: Variant, device: torch.device, warmup: int, steps: int, plain: bool,
            profile_kernels: bool, overrides: tuple[str, ...] = ()) -> dict:
    config = paper_config(model, variant, overrides)
    batches = device_batches(config, device)
    row: dict = {"model": model, **asdict(variant), "variant": variant.name,
                 "batch_size": config.train.batch_size, "n_critic": config.train.n_critic}
    loops = {"product": ProductLoop}
    if plain:
        loops["plain"] = PlainLoop
    for name, make in loops.items():
        torch.manual_seed(0)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        loop = make(config, device)
        stream = cycle_batches(batches, variant.channels_last)
        warm, per_iteration = timed(loop, stream, device, warmup, steps)
        row[f"{name}_patches_per_s"] = round(config.train.batch_size / per_iteration, 1)
        row[f"{name}_warmup_extra_s"] = round(warm - warmup * per_iteration, 2)  # compilation, autotuning
        if name == "product":
            row["peak_memory_gib"] = (round(torch.cuda.max_memory_allocated() / 2**30, 2)
                                      if device.type == "cuda" else None)
            if not variant.compile:  # counted eagerly; the count does not depend on the variant
                row["flops_per_patch"] = flops_per_iteration(loop, stream) / config.train.batch_size
            if profile_kernels:
                row["top_kernels"] = top_kernels(loop, stream, device)
    if plain:
        row["product_vs_plain"] = round(row["product_patches_per_s"] / row["plain_patches_per_s"], 3)
    data = data_seconds_per_iteration(config, device, max(2, steps // 10))
    step_seconds = config.train.batch_size / row["product_patches_per_s"]
    row["data_share_of_step"] = data if isinstance(data, str) else round(data / (data + step_seconds), 3)
    return row


def add_mfu(rows: list[dict], peaks: dict[str, float | None]) -> None:
    flops = {r["model"]: r["flops_per_patch"] for r in rows if "flops_per_patch" in r}
    for r in rows:
        per_patch = flops.get(r["model"])
        if per_patch is None:
            continue
        r["flops_per_patch"] = per_patch
        achieved = per_patch * r["product_patches_per_s"]
        r["achieved_tflops"] = round(achieved / 1e12, 3)
        for key, peak in peaks.items():
            r[f"mfu_vs_{key}"] = None if not peak else round(achieved / peak, 4)


def run(device: torch.device, models: list[str], warmup: int, steps: int, ladder: bool | None = None,
        overrides: tuple[str, ...] = ()) -> dict:
    """Every row of this device's measurement, with the ladder's step gains and leave-one-out
    (`ladder`: the CUDA variants, by default on CUDA only)."""
    peaks = {"spec_bf16": spec_peak(device), "measured_matmul": matmul_peak(device)}
    if device.type == "cuda" if ladder is None else ladder:
        # The plain loop runs beside the final configuration: that is the ratio the target is on.
        rows = [measure("cpce", v, device, warmup, steps, plain=v == FINAL,
                        profile_kernels=v in (FINAL, FP32), overrides=overrides)
                for v in [*CUDA_LADDER, WITHOUT_BF16] if "cpce" in models]
        for model in (m for m in models if m != "cpce"):
            rows.append(measure(model, FINAL, device, warmup, steps, True, True, overrides))
            rows.append(measure(model, FP32, device, warmup, max(20, steps // 10), False, False, overrides))
    else:
        rows = [measure(m, FP32, device, warmup, steps, True, True, overrides) for m in models]
    add_mfu(rows, peaks)
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch_threads": torch.get_num_threads(), "warmup_iterations": warmup,
            "timed_iterations": steps, "peaks_flops": peaks, "rows": rows, "gains": gains(rows)}


def gains(rows: list[dict]) -> dict:
    """CPCE's ladder as speed-ups over the rung before, and what leaving compile or bf16 out of
    the final configuration costs ("final - compile" is the "+fused Adam" rung)."""
    rate = {r["variant"]: r["product_patches_per_s"] for r in rows if r["model"] == "cpce"}
    if FINAL.name not in rate:
        return {}
    ladder = [v.name for v in CUDA_LADDER]
    return {"ladder": {later: round(rate[later] / rate[earlier], 3)
                       for earlier, later in itertools.pairwise(ladder)},
            "final_over_without": {"compile": round(rate[FINAL.name] / rate["+fused Adam"], 3),
                                   "bf16": round(rate[FINAL.name] / rate[WITHOUT_BF16.name], 3)},
            "final_over_fp32": round(rate[FINAL.name] / rate[FP32.name], 3)}


def projection(rows: list[dict]) -> dict:
    """Hours of a paper-scale run (100 epochs × 8,000 slices × 16 patches) at each model's best rate."""
    patches = 100 * 8000 * 16
    best = {}
    for r in rows:
        best[r["model"]] = max(best.get(r["model"], 0), r["product_patches_per_s"])
    return {model: round(patches / rate / 3600, 2) for model, rate in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, help="timed iterations (default 200 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed iterations first (default 20 on CUDA, 1 on CPU)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on CPU")
    parser.add_argument("--models", nargs="+", default=["cpce", "circle"])
    parser.add_argument("--out", type=Path, help="write the JSON here instead of reports/benchmarks/")
    parser.add_argument("--ladder", action="store_true", help="the CUDA variants on any device")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override (another batch size, tiny networks for a smoke run)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(args.threads)
    # On 2 CPU cores one paper-configuration iteration takes about half a minute (CPCE).
    steps = args.steps or (200 if cuda else 3)
    warmup = args.warmup or (20 if cuda else 1)
    result = run(device, args.models, warmup, steps, args.ladder or None, tuple(args.overrides))
    result["overrides"] = args.overrides
    result["paper_scale_hours"] = projection(result["rows"])
    name = f"train_throughput_{device.type}"
    path = write_result(name, result, host(), args.out or RESULTS)
    for r in result["rows"]:
        plain = (f"  plain {r['plain_patches_per_s']:8.1f} (ratio {r['product_vs_plain']})"
                 if "plain_patches_per_s" in r else "")
        mfu = f"  MFU {r.get('mfu_vs_spec_bf16') or r.get('mfu_vs_measured_matmul')}"
        print(f"{r['model']:6s} {r['variant']:16s} {r['product_patches_per_s']:8.1f} patches/s{plain}{mfu}"
              f"  data {r['data_share_of_step']}")
    print(f"paper scale (h): {result['paper_scale_hours']}\n-> {path}")


if __name__ == "__main__":
    main()
