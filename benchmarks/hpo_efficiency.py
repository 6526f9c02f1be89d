"""Optuna TPE + ASHA vs random search without pruning, same budget, on a search that learns.

Each seed runs both methods for `--trials` trials × up to `--folds` folds of GAN-CPCE with the
demo's networks, cohort and 32×32 patches (configs/demo_cpce.yaml), searched from the paper's
losses over a space that holds the demo's recipe (search_spaces/hpo_benchmark_cpce.yaml). As the
demo without ImageNet weights, it trains without the perceptual term (`loss.perceptual=none`) and
does not search λp: with random VGG features that term's gradient is 3.5e-5 of the L1 term's
(docs/models.md), so λp was an inert dimension, and the term took 40% of a one-thread demo fold.
Each fold trains 1.5× the demo's patches per epoch (384): at the demo's own 256 every configuration
gained +0.25 to +0.31 dB over its input and the ranking was noise; at 384 the paper's losses fall
about 1.5 dB below the input and the best configurations gain about +0.5 dB. A trial's score is its
gain over the LR input: per fold, the best epoch's validation PSNR minus the zero-filled input's on
the same slices, averaged over folds. Both searches start from the same trial 0; TPE is seeded with
the seed and models after the space's `tpe.startup_trials` (3, as the product's spaces), the random
search is seeded with seed + 1000 (RANDOM_SEED_OFFSET). Measured: how many fold trainings TPE +
ASHA needed before its best complete trial reached the random search's final best gain, as a share
of the random search's fold trainings (target: at most 40% at the median over seeds). Results
accumulate across runs, one row per seed, in reports/benchmarks/hpo_efficiency.json; a run with
other settings starts its own rows and keeps the earlier settings' under `earlier`.
Run by hand (23–25 minutes per seed on a fast 2-core machine):

    python benchmarks/hpo_efficiency.py --seeds 0 1 2 [--trials 14] [--folds 2]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

from common import RESULTS, host, write_result

from mrisr_ray import runs
from mrisr_ray.config import Config, load_config
from mrisr_ray.data.synthetic import prepare_synthetic_cache
from mrisr_ray.defaults import defaults_dir
from mrisr_ray.ray_runtime import ensure_ray
from mrisr_ray.resources import Resources
from mrisr_ray.tracking import DEFAULT_EXPERIMENT, Tracking
from mrisr_ray.tuning.space import load_space
from mrisr_ray.tuning.study import StudyRequest, run_study
from mrisr_ray.workdir import Workdir

SPACE = defaults_dir("search_spaces") / "hpo_benchmark_cpce.yaml"
BASE = ["loss.perceptual=none", "train.warmup_fraction=0.0", "loss.lambda_adv=1.0",
        "loss.lambda_l1=0.0", "train.lr=1.0e-4", "train.sample_slices=0",
        "train.max_patches_per_epoch=384"]
COHORT = {"n_subjects": 20, "n_slices": 16, "test_fraction": 0.3}  # the demo's cohort
# Optuna's TPESampler(seed=s) draws every trial asked while fewer than the space's
# `tpe.startup_trials` trials are complete or pruned from an internal RandomSampler(seed=s): with
# one seed, its first trials after the enqueued trial 0 would be the random search's, and a random
# best among them would be "reached" by replaying it. The random search draws from its own seed.
RANDOM_SEED_OFFSET = 1000
NONE_YET = float("-inf")  # best gain before any trial has completed
TARGET_SHARE = 0.4  # of random search's fold trainings, at the median over seeds


def gain_history(tracking: Tracking, study: str, folds: int) -> tuple[list[float], list[float]]:
    """Best complete trial's mean gain over the LR input (dB) after each fold training, in
    completion order (-inf until a trial completes), and every complete trial's gain."""
    fold_runs = sorted(runs.fold_runs(tracking, DEFAULT_EXPERIMENT, study),
                       key=lambda r: r.info.end_time or 0)
    gains: dict[str, list[float]] = {}
    best, history, complete = NONE_YET, [], []
    for run in fold_runs:
        psnr = runs.headline(run, runs.PSNR)
        if psnr is not None:
            trial = gains.setdefault(run.data.tags[runs.TRIAL_ID], [])
            trial.append(psnr - run.data.metrics[runs.INPUT_PSNR])
            if len(trial) == folds:
                complete.append(sum(trial) / folds)
                best = max(best, complete[-1])
        history.append(best)
    return history, complete


def base_config() -> Config:
    return load_config("cpce", defaults_dir("configs") / "demo_cpce.yaml", BASE)


def run(method: str, seed: int, args, cache: Path, root: Path) -> tuple[list[float], list[float]]:
    workdir = Workdir(root / f"{method}-{seed}")
    request = StudyRequest(
        config=base_config(), space_path=SPACE,
        cache=cache, workdir=workdir, tracking=Tracking.for_workdir(workdir), trials=args.trials,
        folds=args.folds, name=f"{method}-{seed}", concurrent=2,
        seed=seed if method == "tpe_asha" else seed + RANDOM_SEED_OFFSET,
        resources=Resources(cpus_per_worker=0.9),
        sampler="tpe" if method == "tpe_asha" else "random", pruning=method == "tpe_asha")
    run_study(request)
    return gain_history(request.tracking, request.name, args.folds)


def rounded(gain: float) -> float | None:
    return round(gain, 4) if gain > NONE_YET else None  # None: no trial complete yet


def compare(seed: int, args, cache: Path, root: Path) -> dict:
    started = time.perf_counter()
    tpe, tpe_trials = run("tpe_asha", seed, args, cache, root)
    rand, rand_trials = run("random", seed, args, cache, root)
    target, tpe_best = rand[-1] if rand else NONE_YET, tpe[-1] if tpe else NONE_YET
    reached = None
    if target > NONE_YET:  # a random trial completed: there is something to reach
        reached = next((i + 1 for i, v in enumerate(tpe) if v >= target), None)
    return {"seed": seed, "random_best_gain_db": rounded(target), "tpe_asha_best_gain_db": rounded(tpe_best),
            "random_fold_trainings": len(rand), "tpe_asha_fold_trainings": len(tpe),
            "tpe_asha_fold_trainings_to_reach_random_best": reached,
            "share_of_random_budget": round(reached / len(rand), 3) if reached else None,
            "random_history_db": [rounded(v) for v in rand], "tpe_asha_history_db": [rounded(v) for v in tpe],
            # the landscape: every complete trial's gain, in completion order
            "random_trial_gains_db": [rounded(v) for v in rand_trials],
            "tpe_asha_trial_gains_db": [rounded(v) for v in tpe_trials],
            "minutes": round((time.perf_counter() - started) / 60, 1)}


def settings(args) -> dict:
    space = load_space(SPACE, base_config())
    return {"model": "cpce", "config": "configs/demo_cpce.yaml", "overrides": BASE,
            "space": SPACE.name, "searched": [d.name for d in space.dimensions],
            "tpe_startup_trials": space.startup_trials,
            "cohort": COHORT, "trials": args.trials, "folds": args.folds,
            "concurrent": 2, "random_search_seed": f"seed + {RANDOM_SEED_OFFSET}",
            "score": "mean over folds of best val PSNR - LR input PSNR (dB)"}


def stored_configurations() -> list[dict]:
    """Every configuration measured so far (settings, summary, rows), the newest first: the file's
    own, then its `earlier` ones."""
    path = RESULTS / "hpo_efficiency.json"
    if not path.is_file():
        return []
    stored = json.loads(path.read_text())
    earlier = stored.pop("earlier", [])
    stored.pop("benchmark", None)
    return [stored, *earlier]


def earlier_rows(args) -> list[dict]:
    """Rows of earlier runs with the same settings (a changed setting starts afresh, and the
    configurations measured before are kept under `earlier`)."""
    same = [c for c in stored_configurations() if c.get("settings") == settings(args)]
    return same[0].get("rows", []) if same else []


def at_target_budget(row: dict) -> dict:
    """Each method's best gain after the target's share of random's fold trainings (11 of 28 by default):
    who is ahead at the budget the target names, beside when random's final best is reached."""
    budget = math.floor(TARGET_SHARE * row["random_fold_trainings"])
    tpe = row["tpe_asha_history_db"]  # shorter than the budget only if ASHA stopped nearly everything
    return {"seed": row["seed"], "fold_trainings": budget,
            "tpe_asha_best_gain_db": tpe[min(budget, len(tpe)) - 1],
            "random_best_gain_db": row["random_history_db"][budget - 1]}


def summarize(rows: list[dict], args) -> Path:
    shares = [r["share_of_random_budget"] for r in rows]
    reached = [s for s in shares if s is not None]
    # A seed that never reached random's best counts as needing more than all of it (the median
    # is then None, not Infinity, which is no JSON).
    median = statistics.median([s if s is not None else float("inf") for s in shares])
    summary = {"seeds_done": len(rows), "seeds_never_reached": len(shares) - len(reached),
               "median_share": round(median, 3) if median < float("inf") else None,
               "range_share": [min(reached), max(reached)] if reached else None,
               "target_median_share": TARGET_SHARE,
               "best_gain_at_target_budget": [at_target_budget(r) for r in rows]}
    print(f"TPE+ASHA reached the random search's best gain after a median {summary['median_share']} "
          f"(range {summary['range_share']}) of its fold trainings, {len(rows)} seed(s); "
          f"target <= {TARGET_SHARE}",
          flush=True)
    earlier = [c for c in stored_configurations() if c.get("settings") != settings(args)]
    return write_result("hpo_efficiency", {"settings": settings(args), **summary, "rows": rows,
                                           "earlier": earlier}, host())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=14)
    parser.add_argument("--folds", type=int, default=2)
    args = parser.parse_args()
    ensure_ray()
    rows = {r["seed"]: r for r in earlier_rows(args)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = root / "cache"
        prepare_synthetic_cache(cache, n_folds=args.folds, **COHORT)
        for seed in args.seeds:
            rows[seed] = compare(seed, args, cache, root)
            print({k: v for k, v in rows[seed].items() if not isinstance(v, list)}, flush=True)
            path = summarize(sorted(rows.values(), key=lambda r: r["seed"]), args)  # kept after every seed
    print(f"-> {path}")


if __name__ == "__main__":
    main()
