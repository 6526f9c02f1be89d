"""Does each GAN super-resolve? Validation PSNR/SSIM per epoch beside the LR input's, on the same
slices, for the paper's losses and for the recipe, in a fixed wall-clock budget per run.

Trains without Ray (`mrisr_ray.train.session.train_session`) on the synthetic cohort, fold 0,
with the demo-sized architectures of `configs/demo_<model>.yaml` (which carry the recipe: L1
warm-up, then the GAN losses beside a supervised L1 with a small adversarial weight) and random
VGG-19 features (no ImageNet weights can be downloaded here). The paper variant is the same
config with the paper's losses (no warm-up, λ_adv 1, λ_l1 0). The budget fixes the patches per
epoch, and adds epochs where the training subjects' patch grid is too small to fill the budget
in `--epochs` (a fast device): a short calibration times a warm-up step, a GAN iteration and a
validation pass first.
Targets: on 2 CPU cores in 10 minutes per model, the recipe beats the LR input by >= +1.5 dB PSNR
and >= +0.02 SSIM after its adversarial phase; on a GPU in 4 minutes per model, by >= +2.5 dB.
Writes reports/benchmarks/convergence.json and convergence.png (`--device cuda`:
convergence_cuda.json and convergence_cuda.png, in `--out`).

    python benchmarks/convergence.py [--minutes 10] [--paper-minutes 5] [--models cpce circle]
                                     [--variants recipe paper]

On a GPU machine, which has torch, numpy, scikit-image, matplotlib and PyYAML but neither
nibabel nor nilearn (this imports no Ray or MLflow): write the cohort's scans here (10 MB; its
cache, about 90 MB, is over what travels), fetch nibabel's wheel beside them into `.gpu/` (listed
in `.git/info/exclude`), carry `.gpu`, and there build the cache from those scans and train:

    python benchmarks/convergence.py --cohort .gpu/cohort --prepare-only            # here
    pip download --no-deps --only-binary=:all: --python-version 3.12 -d .gpu nibabel==5.4.2
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/nibabel-*.whl  # there
    PYTHONPATH=/tmp/site:. python3 benchmarks/convergence.py --cohort .gpu/cohort --device cuda \
        --minutes 4 --variants recipe --out $OUT

Rows of earlier runs for other (model, variant) pairs are kept in the JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import RESULTS, host, write_result

from mrisr_ray.config import Config, TrainConfig, bf16_autocast, load_config, warmup_epochs
from mrisr_ray.data.cache import Cache, Protocol, prepare_cache
from mrisr_ray.data.discovery import discover_scans
from mrisr_ray.data.synthetic import prepare_synthetic_cache
from mrisr_ray.defaults import defaults_dir
from mrisr_ray.plotting import pyplot
from mrisr_ray.steps import build_steps
from mrisr_ray.train.loop import LoopContext, make_sampler, validate
from mrisr_ray.train.session import train_session

PAPER_LOSSES = ["train.warmup_fraction=0.0", "loss.lambda_adv=1.0", "loss.lambda_l1=0.0"]
VARIANTS = {"recipe": [], "paper": PAPER_LOSSES}
COHORT = {"n_subjects": 20, "n_slices": 16, "n_folds": 2, "test_fraction": 0.3}
# The recipe's gain over the LR input after its adversarial phase (PSNR dB, SSIM; None: no target)
TARGETS = {"cpu": (1.5, 0.02), "cuda": (2.5, None)}


def seconds_per_patch(config: Config, cache: Cache, val: list[str],
                      ctx: LoopContext) -> tuple[float, float, float]:
    """(warm-up s/patch, GAN s/patch, s per validation pass), timed on this machine."""
    steps = build_steps(config, ctx.device)
    b, p = config.train.batch_size, config.data.patch_size
    lq, gt = torch.rand(b, 1, p, p, device=ctx.device), torch.rand(b, 1, p, p, device=ctx.device)

    def synchronized(step) -> None:
        step()
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()

    def timed(step, repeats: int = 3) -> float:
        synchronized(step)
        started = time.perf_counter()
        for _ in range(repeats):
            synchronized(step)
        return (time.perf_counter() - started) / repeats

    warmup = timed(lambda: steps.warmup_step(lq, gt)) / b
    critic = timed(lambda: steps.critic_step(lq, gt))
    gan = (config.train.n_critic * critic + timed(lambda: steps.generator_step(lq, gt))) / b
    started = time.perf_counter()
    validate(steps, cache, val, config, ctx)
    return warmup, gan, time.perf_counter() - started


def fill_budget(train: TrainConfig, budget_s: float, grid: int, warm_s: float, gan_s: float,
                val_s: float) -> tuple[int, float]:
    """(epochs, patches per epoch) that fill `budget_s`: `train.epochs` epochs, or more where an
    epoch would need more patches than the training subjects' patch grid holds (a fast device)."""
    def per_epoch(epochs: int) -> float:
        warm = warmup_epochs(replace(train, epochs=epochs))
        return (budget_s - epochs * val_s) / (warm * warm_s + (epochs - warm) * gan_s)

    epochs = train.epochs
    while per_epoch(epochs) > grid:
        epochs += 1
    return epochs, per_epoch(epochs)


def run(model: str, variant: str, cache: Cache, epochs: int, budget_s: float, extra: list[str],
        ctx: LoopContext) -> dict:
    overrides = [*VARIANTS[variant], *extra]
    config = load_config(model, defaults_dir("configs") / f"demo_{model}.yaml",
                         ["loss.perceptual=random_vgg", f"train.epochs={epochs}", "train.sample_slices=0",
                          "train.val_max_slices=4", "train.validate_warmup=true",  # every epoch's point
                          *overrides])
    fold = cache.splits.fold(0)
    seconds = seconds_per_patch(config, cache, fold.val, ctx)
    config.train.max_patches_per_epoch = None
    grid = make_sampler(cache, fold.train, config, ctx).patches_per_epoch
    epochs, per_epoch = fill_budget(config.train, budget_s, grid, *seconds)
    batch = config.train.batch_size
    if per_epoch < batch:
        sys.exit(f"{model} {variant}: {budget_s / 60:g} minutes leave less than one batch per epoch "
                 f"after {epochs} validation passes of {seconds[2]:.0f} s; give more --minutes")
    config.train.epochs = epochs
    config.train.max_patches_per_epoch = max(batch, int(per_epoch) // batch * batch)
    curve: list[dict] = []
    started = time.perf_counter()

    def sink(result) -> None:
        m = result.metrics
        lr_psnr, lr_ssim = m["val_input_psnr"], m["val_input_ssim"]
        curve.append({"epoch": result.epoch, "warmup": result.warmup,
                      "seconds": time.perf_counter() - started,
                      "val_psnr": m["val_psnr"], "val_ssim": m["val_ssim"],
                      "lr_input_psnr": lr_psnr, "lr_input_ssim": lr_ssim,
                      "psnr_gain": m["val_psnr"] - lr_psnr, "ssim_gain": m["val_ssim"] - lr_ssim})
        print(f"  {model} {variant} epoch {result.epoch}/{epochs}{' warm-up' if result.warmup else ''}: "
              f"{m['val_psnr']:.2f} dB ({m['val_psnr'] - lr_psnr:+.2f}), SSIM {m['val_ssim']:.4f} "
              f"({m['val_ssim'] - lr_ssim:+.4f}), {time.perf_counter() - started:.0f} s", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        train_session(config, cache, fold.train, fold.val, ctx, Path(folder), sink)
    last = curve[-1]
    return {"model": model, "variant": variant, "overrides": overrides, "epochs": epochs,
            "budget_minutes": budget_s / 60,
            "warmup_epochs": warmup_epochs(config.train),
            "bf16_autocast": bf16_autocast(config.train, ctx.device.type),
            "patches_per_epoch": config.train.max_patches_per_epoch,
            "seconds": round(last["seconds"], 1),
            "lr_input": {"psnr": last["lr_input_psnr"], "ssim": last["lr_input_ssim"]},
            "final": {"psnr_gain": last["psnr_gain"], "ssim_gain": last["ssim_gain"]},
            "val_slices": len(fold.val) * config.train.val_max_slices, "curve": curve}


def plot(rows: list[dict], path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(2, len({r["model"] for r in rows}), figsize=(11, 7), squeeze=False)
    for col, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        for row in (r for r in rows if r["model"] == model):
            epochs = [c["epoch"] for c in row["curve"]]
            for ax, key in zip(axes[:, col], ("psnr_gain", "ssim_gain"), strict=True):
                ax.plot(epochs, [c[key] for c in row["curve"]], marker="o", label=row["variant"])
                if row["warmup_epochs"]:
                    ax.axvspan(0.5, row["warmup_epochs"] + 0.5, color="0.9")
        for ax, name in zip(axes[:, col], ("PSNR gain over LR input (dB)", "SSIM gain over LR input"),
                            strict=True):
            ax.axhline(0, color="k", lw=0.8)
            ax.set(title=f"{model}: {name}", xlabel="epoch (grey: the recipe's L1 warm-up)")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget per run")
    parser.add_argument("--paper-minutes", type=float, help="budget of the paper variant (default --minutes)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--models", nargs="+", default=["cpce", "circle"])
    parser.add_argument("--variants", nargs="+", default=["recipe", "paper"], choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON and PNG")
    parser.add_argument("--cohort", type=Path, help="the synthetic cohort's scans: read from this "
                        "folder, or written there first if it does not exist (a GPU machine has no "
                        "nilearn to write them)")
    parser.add_argument("--prepare-only", action="store_true", help="write --cohort, then stop")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra config override for every run, e.g. train.lr=2e-4")
    args = parser.parse_args()
    if args.prepare_only and args.cohort is None:
        parser.error("--prepare-only needs --cohort DIR")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here")
    torch.set_num_threads(args.threads)
    ctx = LoopContext(device=torch.device(args.device))
    name = "convergence" if args.device == "cpu" else "convergence_cuda"
    minutes = {"recipe": args.minutes, "paper": args.paper_minutes or args.minutes}
    psnr_target, ssim_target = TARGETS[args.device]
    rows = earlier_rows(args.out / f"{name}.json")
    with tempfile.TemporaryDirectory() as tmp:
        cache = cohort_cache(Path(tmp) / "cache", args.cohort)
        if args.prepare_only:
            return
        for model in args.models:
            for variant in args.variants:
                row = run(model, variant, cache, args.epochs, minutes[variant] * 60, args.overrides, ctx)
                rows = [r for r in rows if (r["model"], r["variant"]) != (model, variant)] + [row]
                # Written after every run: an interrupted benchmark keeps what it measured.
                result = write_result(name, {"threads": args.threads, "cohort": COHORT, "recipe_target": {
                    "psnr_gain_db": psnr_target, "ssim_gain": ssim_target}, "rows": rows},
                    host(), args.out)
                print(f"{model:6s} {variant:6s}: {row['final']['psnr_gain']:+.2f} dB, SSIM "
                      f"{row['final']['ssim_gain']:+.4f} over the LR input after {row['seconds']:.0f} s "
                      f"(recipe target: >= +{psnr_target} dB"
                      f"{f', >= +{ssim_target} SSIM' if ssim_target else ''}) -> {result}", flush=True)
    print(f"-> {plot(rows, args.out / f'{name}.png')}")


def cohort_cache(folder: Path, cohort: Path | None) -> Cache:
    """The benchmark cohort's cache, built in `folder` from `cohort`'s scans where that folder
    exists, else from scans generated now (and kept in `cohort` if given)."""
    if cohort is not None and cohort.is_dir():
        scans = discover_scans(cohort)
        if sorted(s.subject for s in scans) != [f"synth{i:03d}" for i in range(COHORT["n_subjects"])]:
            sys.exit(f"--cohort {cohort}: expected the scans synth000 to synth"
                     f"{COHORT['n_subjects'] - 1:03d} that --prepare-only writes")
        prepare_cache(scans, folder, Protocol(), n_folds=COHORT["n_folds"],
                      test_fraction=COHORT["test_fraction"])
    else:
        prepare_synthetic_cache(folder, **COHORT)
        if cohort is not None:
            shutil.copytree(folder / "nifti", cohort)
    return Cache.open(folder)


def earlier_rows(path: Path) -> list[dict]:
    """Rows of earlier runs (other models or variants), kept beside this run's."""
    return json.loads(path.read_text())["rows"] if path.is_file() else []


if __name__ == "__main__":
    main()
