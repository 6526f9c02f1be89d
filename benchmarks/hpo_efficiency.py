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
the same slices, averaged over folds. Each trial trains 3 folds (10 trials per method, so that a
seed's two searches fit in 30 minutes on 2 cores; 14 took 34): `prepare` makes 5 by default, and
with 2 a trial that ASHA stops after its first fold saves one fold training and its score averages
two trainings; with 3 it saves up to two, and the score's training-seed noise would shrink to
about √(2/3) of it if the folds' noise were independent (every fold trains with `train.seed` 0;
other protocols' measures, 14 trials × 2 folds among them, are under `earlier`). Both searches
start from the same trial 0; TPE is seeded with the seed and models after the space's
`tpe.startup_trials` (3, as the product's spaces), the random search is seeded with seed + 1000
(RANDOM_SEED_OFFSET). Each search runs two trials at a time; `--tpe-concurrent 1` runs TPE + ASHA's
one at a time, as `tune` does by default, and `--space` searches another space, such as
search_spaces/hpo_benchmark_cpce_wide.yaml (two more dimensions) or hpo_benchmark_cpce_rf3.yaml
(ASHA's reduction factor 3) (all measured: docs/tuning.md).
Measured: how many fold trainings TPE + ASHA needed before its best complete trial reached the
random search's final best gain, as a share of the random search's fold trainings (target: at most
40% at the median over seeds). Results accumulate across runs, one row per seed, in
reports/benchmarks/hpo_efficiency.json; a run with other settings starts its own rows and keeps the
earlier settings' under `earlier`.

A search's best score is one training of its configuration, picked as the maximum of noisy scores,
so it can misstate how good that configuration is. After both searches, each one's best
configuration (its incumbent) is therefore trained again, without Ray, on the same folds with
fresh training seeds (RESCORE_TRAIN_SEEDS: initialisation, patch order and critic batches), and
scored the same way on the same validation slices: the rows then tell how much of each best gain
was the luck of its training seed. This re-scoring is not part of the measure above; its time is
reported apart (`rescore_minutes`).

Run by hand (18–22 minutes of search per seed on a fast 2-core machine, then 2.7–3.5 of
re-scoring):

    python benchmarks/hpo_efficiency.py --seeds 0 1 2 [--trials 10] [--folds 3] [--tpe-concurrent 1]
        [--space search_spaces/hpo_benchmark_cpce_rf3.yaml]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, host, write_result

from mrisr_ray import runs
from mrisr_ray.config import Config, flatten, load_config, with_overrides
from mrisr_ray.data.cache import Cache
from mrisr_ray.data.synthetic import prepare_synthetic_cache
from mrisr_ray.defaults import defaults_dir
from mrisr_ray.metrics import sample_sd
from mrisr_ray.ray_runtime import ensure_ray
from mrisr_ray.resources import Resources
from mrisr_ray.tracking import DEFAULT_EXPERIMENT, Tracking
from mrisr_ray.train.loop import EpochResult, LoopContext
from mrisr_ray.train.session import train_session
from mrisr_ray.tuning.space import ASHA_REDUCTION_FACTOR, SearchSpace, load_space
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
# The random search's trials are independent of each other, so how many run at a time changes
# its wall time only; TPE + ASHA's proposals see only the trials already complete or pruned.
RANDOM_CONCURRENT = 2
NONE_YET = float("-inf")  # best gain before any trial has completed
TARGET_SHARE = 0.4  # of random search's fold trainings, at the median over seeds
# Training seeds of the re-scoring: none is a study's own `train.seed` (0, TrainConfig's default in
# mrisr_ray/config.py, which configs/demo_cpce.yaml keeps).
RESCORE_TRAIN_SEEDS = (101, 102, 103)


@dataclass(frozen=True)
class Search:
    """One method's study, read back from MLflow."""

    history: list[float]  # best complete trial's gain after each fold training (-inf: none yet)
    complete: list[float]  # every complete trial's gain, in completion order
    incumbent: Config | None  # the best complete trial's configuration (None: no trial completed)


def read_search(tracking: Tracking, study: str, folds: int) -> Search:
    """Best complete trial's mean gain over the LR input (dB) after each fold training, in
    completion order, every complete trial's gain, and the best complete trial's configuration."""
    fold_runs = sorted(runs.fold_runs(tracking, DEFAULT_EXPERIMENT, study),
                       key=lambda r: r.info.end_time or 0)
    gains: dict[str, list[float]] = {}
    best, best_trial, history, complete = NONE_YET, None, [], []
    for run in fold_runs:
        psnr = runs.headline(run, runs.PSNR)
        if psnr is not None:
            trial_id = run.data.tags[runs.TRIAL_ID]
            trial = gains.setdefault(trial_id, [])
            trial.append(psnr - run.data.metrics[runs.INPUT_PSNR])
            if len(trial) == folds:
                complete.append(sum(trial) / folds)
                if complete[-1] > best:
                    best, best_trial = complete[-1], trial_id
        history.append(best)
    incumbent = None
    if best_trial is not None:
        (trial_run,) = runs.trial_runs(tracking, DEFAULT_EXPERIMENT, study, best_trial)
        incumbent = runs.load_run_config(tracking, trial_run.info.run_id)
    return Search(history=history, complete=complete, incumbent=incumbent)


def fold_gain(config: Config, cache: Cache, k: int) -> float:
    """Fold k's score, as a study scores it: the best epoch's validation PSNR minus the LR
    input's on the same slices, trained as the fold's Ray worker trains it, without Ray (no
    checkpoint folder: saving one reads the RNG states, it never advances them)."""
    fold, input_psnr = cache.splits.fold(k), []

    def sink(result: EpochResult) -> None:
        if "val_input_psnr" in result.metrics:  # an epoch that validated
            input_psnr.append(result.metrics["val_input_psnr"])

    best = train_session(config, cache, fold.train, fold.val, LoopContext(), None, sink).best
    # The study logs the last report's input PSNR (train/run.py); it is the same every epoch.
    return best.psnr - input_psnr[-1]


def rescored_gain(config: Config, cache: Path, folds: int, train_seed: int) -> float | None:
    """The mean over folds of `fold_gain`, `config` trained with `train_seed`; None when the
    training diverged (non-finite losses), which in a study would fail the trial."""
    config, prepared = with_overrides(config, {"train.seed": train_seed}), Cache.open(cache)
    try:
        return sum(fold_gain(config, prepared, k) for k in range(folds)) / folds
    except FloatingPointError:
        return None


def rescore(searches: dict[str, Search], cache: Path, folds: int, space: Path) -> dict[str, dict | None]:
    """Per method, its incumbent's searched values and its gains retrained with each of
    RESCORE_TRAIN_SEEDS (None: diverged), with their mean and SD over the seeds that did not
    diverge: one-thread trainings, two at a time, as the studies ran them."""
    jobs = {(method, seed): (search.incumbent, cache, folds, seed)
            for method, search in searches.items() if search.incumbent is not None
            for seed in RESCORE_TRAIN_SEEDS}
    # As the studies' workers: 0.9 CPUs give a worker 1 torch thread (train/run.py).
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = {job: pool.submit(rescored_gain, *args) for job, args in jobs.items()}
        gains = {job: future.result() for job, future in futures.items()}
    names = [d.name for d in searched_space(space).dimensions]
    rescored: dict[str, dict | None] = {}
    for method, search in searches.items():
        if search.incumbent is None:
            rescored[method] = None
            continue
        mine = [gains[method, s] for s in RESCORE_TRAIN_SEEDS]
        finite = [g for g in mine if g is not None]
        values = flatten(search.incumbent)
        rescored[method] = {"params": {name: values[name] for name in names},
                            "rescored_gains_db": [rounded(g) if g is not None else None for g in mine],
                            "rescored_mean_db": rounded(sum(finite) / len(finite)) if finite else None,
                            "rescored_sd_db": rounded(sample_sd(np.array(finite))) if finite else None}
    return rescored


def base_config() -> Config:
    return load_config("cpce", defaults_dir("configs") / "demo_cpce.yaml", BASE)


def searched_space(space: Path) -> SearchSpace:
    return load_space(space, base_config())


def run(method: str, seed: int, args, cache: Path, root: Path) -> Search:
    workdir = Workdir(root / f"{method}-{seed}")
    request = StudyRequest(
        config=base_config(), space_path=args.space,
        cache=cache, workdir=workdir, tracking=Tracking.for_workdir(workdir), trials=args.trials,
        folds=args.folds, name=f"{method}-{seed}",
        concurrent=args.tpe_concurrent if method == "tpe_asha" else RANDOM_CONCURRENT,
        seed=seed if method == "tpe_asha" else seed + RANDOM_SEED_OFFSET,
        resources=Resources(cpus_per_worker=0.9),
        sampler="tpe" if method == "tpe_asha" else "random", pruning=method == "tpe_asha")
    run_study(request)
    return read_search(request.tracking, request.name, args.folds)


def rounded(gain: float) -> float | None:
    return round(gain, 4) if gain > NONE_YET else None  # None: no trial complete yet


def compare(seed: int, args, cache: Path, root: Path) -> tuple[dict, dict[str, Search]]:
    """The seed's row (both searches, the measure) and the searches themselves."""
    started = time.perf_counter()
    searches = {"tpe_asha": run("tpe_asha", seed, args, cache, root),
                "random": run("random", seed, args, cache, root)}
    tpe, tpe_trials = searches["tpe_asha"].history, searches["tpe_asha"].complete
    rand, rand_trials = searches["random"].history, searches["random"].complete
    target, tpe_best = rand[-1] if rand else NONE_YET, tpe[-1] if tpe else NONE_YET
    reached = None
    if target > NONE_YET:  # a random trial completed: there is something to reach
        reached = next((i + 1 for i, v in enumerate(tpe) if v >= target), None)
    row = {"seed": seed, "random_best_gain_db": rounded(target), "tpe_asha_best_gain_db": rounded(tpe_best),
           "random_fold_trainings": len(rand), "tpe_asha_fold_trainings": len(tpe),
           "tpe_asha_fold_trainings_to_reach_random_best": reached,
           "share_of_random_budget": round(reached / len(rand), 3) if reached else None,
           "random_history_db": [rounded(v) for v in rand], "tpe_asha_history_db": [rounded(v) for v in tpe],
           # the landscape: every complete trial's gain, in completion order
           "random_trial_gains_db": [rounded(v) for v in rand_trials],
           "tpe_asha_trial_gains_db": [rounded(v) for v in tpe_trials],
           "minutes": round((time.perf_counter() - started) / 60, 1)}
    return row, searches


def with_rescoring(row: dict, searches: dict[str, Search], cache: Path, args) -> dict:
    """`row` with each method's incumbent retrained with fresh training seeds (`rescore`)."""
    started = time.perf_counter()
    rescored = rescore(searches, cache, args.folds, args.space)
    return {**row, "rescored_train_seeds": list(RESCORE_TRAIN_SEEDS),
            "random_incumbent": rescored["random"], "tpe_asha_incumbent": rescored["tpe_asha"],
            "rescore_minutes": round((time.perf_counter() - started) / 60, 1)}


def settings(args) -> dict:
    space = searched_space(args.space)
    return {"model": "cpce", "config": "configs/demo_cpce.yaml", "overrides": BASE,
            "space": args.space.name, "searched": [d.name for d in space.dimensions],
            "tpe_startup_trials": space.startup_trials,
            # named only when it differs from ASHA_REDUCTION_FACTOR, as tpe_asha_concurrent below
            **({"asha_reduction_factor": space.reduction_factor}
               if space.reduction_factor != ASHA_REDUCTION_FACTOR else {}),
            "cohort": COHORT, "trials": args.trials, "folds": args.folds,
            "concurrent": RANDOM_CONCURRENT, "random_search_seed": f"seed + {RANDOM_SEED_OFFSET}",
            "score": "mean over folds of best val PSNR - LR input PSNR (dB)",
            # named only when it differs, so that the rows measured before it existed still match
            **({"tpe_asha_concurrent": args.tpe_concurrent} if args.tpe_concurrent != RANDOM_CONCURRENT
               else {})}


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
    """Each method's best gain after the target's share of random's fold trainings (12 of 30 by default):
    who is ahead at the budget the target names, beside when random's final best is reached."""
    budget = math.floor(TARGET_SHARE * row["random_fold_trainings"])
    tpe = row["tpe_asha_history_db"]  # shorter than the budget only if ASHA stopped nearly everything
    return {"seed": row["seed"], "fold_trainings": budget,
            "tpe_asha_best_gain_db": tpe[min(budget, len(tpe)) - 1],
            "random_best_gain_db": row["random_history_db"][budget - 1]}


def incumbents(row: dict) -> dict:
    """Each method's best configuration: its gain in the search beside its mean gain retrained."""
    return {"seed": row["seed"], **{
        f"{method}_search_then_rescored_db": [row[f"{method}_best_gain_db"],
                                              (row[f"{method}_incumbent"] or {}).get("rescored_mean_db")]
        for method in ("random", "tpe_asha")}}


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
               "best_gain_at_target_budget": [at_target_budget(r) for r in rows],
               # seeds run since the re-scoring was added (rows without it stay as they were)
               "incumbents_rescored": [incumbents(r) for r in rows if "random_incumbent" in r]}
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
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--space", type=Path, default=SPACE,
                        help=f"search space YAML (default {SPACE.relative_to(SPACE.parents[1])})")
    parser.add_argument("--tpe-concurrent", type=int, default=RANDOM_CONCURRENT,
                        help="TPE + ASHA's trials at a time (`tune`'s default is 1)")
    args = parser.parse_args()
    ensure_ray()
    rows = {r["seed"]: r for r in earlier_rows(args)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = root / "cache"
        prepare_synthetic_cache(cache, n_folds=args.folds, **COHORT)
        for seed in args.seeds:
            rows[seed], searches = compare(seed, args, cache, root)
            print({k: v for k, v in rows[seed].items() if not isinstance(v, list)}, flush=True)
            path = summarize(sorted(rows.values(), key=lambda r: r["seed"]), args)  # kept after every seed
            rows[seed] = with_rescoring(rows[seed], searches, cache, args)
            print({k: rows[seed][k] for k in ("random_incumbent", "tpe_asha_incumbent", "rescore_minutes")},
                  flush=True)
            path = summarize(sorted(rows.values(), key=lambda r: r["seed"]), args)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
