"""Optuna TPE + ASHA vs random search without pruning, same budget, on the synthetic cohort.

For each seed both methods run `--trials` trials × `--folds` folds of a small CIRCLE config
(default search space). Measured: how many fold trainings TPE + ASHA needed before its best
complete trial reached the random search's final best score, as a share of the random search's
fold trainings (target: at most 40%). Run by hand (about an hour on 2 cores):

    python benchmarks/hpo_efficiency.py [--seeds 0 1] [--trials 16] [--folds 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import write_result

from mrisr_ray import runs
from mrisr_ray.config import load_config
from mrisr_ray.data.synthetic import prepare_synthetic_cache
from mrisr_ray.ray_runtime import ensure_ray
from mrisr_ray.tracking import DEFAULT_EXPERIMENT, Tracking
from mrisr_ray.tuning.space import default_space_path
from mrisr_ray.tuning.study import StudyRequest, run_study
from mrisr_ray.workdir import Workdir

SMALL = ["data.patch_size=32", "circle.first_width=16", "circle.min_width=8", "circle.blocks=4",
         "circle.critic_widths=[8, 16, 16, 16]", "circle.critic_fc=32", "train.epochs=2",
         "train.batch_size=16", "train.max_patches_per_epoch=96", "train.val_max_slices=3"]


def fold_history(tracking: Tracking, study: str, folds: int) -> list[float]:
    """Best complete-trial mean PSNR after each fold training, in completion order."""
    fold_runs = sorted(runs.fold_runs(tracking, DEFAULT_EXPERIMENT, study),
                       key=lambda r: r.info.end_time or 0)
    scores: dict[str, list[float]] = {}
    best, history = float("-inf"), []
    for run in fold_runs:
        if "best_val_psnr" in run.data.metrics:
            trial = scores.setdefault(run.data.tags[runs.TRIAL_ID], [])
            trial.append(run.data.metrics["best_val_psnr"])
            if len(trial) == folds:
                best = max(best, sum(trial) / folds)
        history.append(best)
    return history


def run(method: str, seed: int, args, cache: Path, root: Path) -> tuple[list[float], int]:
    workdir = Workdir(root / f"{method}-{seed}")
    request = StudyRequest(
        config=load_config("circle", overrides=SMALL), space_path=default_space_path("circle"),
        cache=cache, workdir=workdir, tracking=Tracking.for_workdir(workdir), trials=args.trials,
        folds=args.folds, name=f"{method}-{seed}", seed=seed,
        sampler="tpe" if method == "tpe_asha" else "random", pruning=method == "tpe_asha")
    run_study(request)
    history = fold_history(request.tracking, request.name, args.folds)
    return history, len(history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--folds", type=int, default=2)
    args = parser.parse_args()
    ensure_ray()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = root / "cache"
        prepare_synthetic_cache(cache, n_subjects=10, n_slices=12, n_folds=args.folds, test_fraction=0.2)
        for seed in args.seeds:
            tpe, tpe_fits = run("tpe_asha", seed, args, cache, root)
            rand, rand_fits = run("random", seed, args, cache, root)
            target = rand[-1]
            reached = next((i + 1 for i, v in enumerate(tpe) if v >= target), None)
            rows.append({"seed": seed, "random_best_psnr": round(target, 4),
                         "tpe_asha_best_psnr": round(tpe[-1], 4), "random_fold_trainings": rand_fits,
                         "tpe_asha_fold_trainings": tpe_fits,
                         "tpe_asha_fold_trainings_to_reach_random_best": reached,
                         "share_of_random_budget": round(reached / rand_fits, 3) if reached else None})
            print(rows[-1], flush=True)
            path = summarize(rows, args)  # written after every seed: a long run keeps what it has
    print(f"-> {path}")


def summarize(rows: list[dict], args) -> Path:
    shares = [r["share_of_random_budget"] for r in rows]
    mean = sum(shares) / len(shares) if None not in shares else None
    print(f"TPE+ASHA reached the random search's best after {mean} of its fold trainings "
          f"(target <= 0.4), {len(rows)} seed(s)", flush=True)
    return write_result("hpo_efficiency", {"trials": args.trials, "folds": args.folds, "config": SMALL,
                                           "seeds_done": len(rows), "rows": rows, "mean_share": mean,
                                           "target_share": 0.4})


if __name__ == "__main__":
    main()
