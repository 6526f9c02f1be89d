"""What `tune` prints at the end: its trials ranked (mean ± SD over folds), the best beside the
base configuration (trial t00), where the best configuration went, and the next commands."""

from __future__ import annotations

from pathlib import Path

from mrisr_ray.live import short_params
from mrisr_ray.registry import MODELS
from mrisr_ray.runs import TrialState, display_name
from mrisr_ray.tuning.outcomes import StudyResult, TrialOutcome


def cv(outcome: TrialOutcome) -> str:
    return f"PSNR {outcome.psnr_mean:.2f} ± {outcome.psnr_sd:.2f} dB, SSIM {outcome.ssim_mean:.4f} ± " \
           f"{outcome.ssim_sd:.4f}"


def versus_base(best: TrialOutcome, outcomes: list[TrialOutcome], name) -> str:
    """The base configuration's CV beside the best's (over the folds it ran, if ASHA stopped it)."""
    base = next((o for o in outcomes if o.is_default), None)
    if base is None or base is best or base.folds_done == 0:
        return ""
    partial = "" if base.state == TrialState.COMPLETE else f" over {base.folds_done} fold(s), stopped early"
    return f"; base configuration {name(base)}: {cv(base)}{partial} " \
           f"({best.psnr_mean - base.psnr_mean:+.2f} dB, {best.ssim_mean - base.ssim_mean:+.4f})"


def summary_lines(result: StudyResult, model: str, metric: str, data: Path, store: str,
                  top: int = 10) -> list[str]:
    """`store`: the options that name the work directory and tracking store (`--workdir W
    [--tracking-uri U]`), repeated in the next commands."""
    def name(o: TrialOutcome) -> str:
        return display_name(model, o.number, trial_id=o.trial_id)

    counts = {state: sum(o.state == state for o in result.outcomes) for state in TrialState}
    lines = [f"study {result.name}: {len(result.outcomes)} trials ({counts[TrialState.COMPLETE]} complete, "
             f"{counts[TrialState.PRUNED]} stopped early by ASHA, {counts[TrialState.FAILED]} failed); "
             f"top {top} by CV {metric} (★ best, = base configuration)"]
    ranked = sorted(result.outcomes, key=lambda o: (o.state != TrialState.COMPLETE, -(o.score(metric) or 0)))
    for o in ranked[:top]:
        mark = ("★" if result.best is not None and o.trial_id == result.best.trial_id else " ") + \
            ("=" if o.is_default else " ")
        lines.append(f"  {name(o):<10} {mark} {o.state:<8} {o.folds_done} folds  {cv(o)}  "
                     f"{short_params(o.params)}")
    best = result.best
    if best is None:
        return [*lines, "no trial finished all folds: no best configuration"]
    others = " and ".join(f"--{m} STUDY" for m in MODELS if m != model)
    return [*lines,
            f"best: {name(best)}, CV {cv(best)}{versus_base(best, result.outcomes, name)}",
            f"      {short_params(best.params)}",
            f"best configuration: {result.best_config_path}",
            "next:",
            f"  mrisr-ray report --data {data} --{model} {result.name} {store}   (the latest finished "
            f"study of each other model is used, or name it: {others})",
            f"  mrisr-ray predict --study {result.name} --input SCANS --output OUT {store}",
            f"  mrisr-ray ui {store}   (compare the trials in MLflow)"]
