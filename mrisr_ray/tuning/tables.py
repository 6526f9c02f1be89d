"""What `tune` prints at the end: its trials ranked (mean ± SD over folds), the best beside the
base configuration (trial t00), where the best configuration went, and the next commands."""

from __future__ import annotations

from pathlib import Path

from mrisr_ray.runs import TrialState, display_name
from mrisr_ray.tuning.outcomes import StudyResult, TrialOutcome


def searched(outcome: TrialOutcome) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in outcome.params.items())


def cv(outcome: TrialOutcome) -> str:
    return f"PSNR {outcome.psnr_mean:.2f} ± {outcome.psnr_sd:.2f} dB, SSIM {outcome.ssim_mean:.4f} ± " \
           f"{outcome.ssim_sd:.4f}"


def summary_lines(result: StudyResult, model: str, metric: str, data: Path, workdir: Path,
                  top: int = 10) -> list[str]:
    counts = {state: sum(o.state == state for o in result.outcomes) for state in TrialState}
    lines = [f"study {result.name}: {len(result.outcomes)} trials ({counts[TrialState.COMPLETE]} complete, "
             f"{counts[TrialState.PRUNED]} stopped early by ASHA, {counts[TrialState.FAILED]} failed); "
             f"top {top} by CV {metric} (★ best, = base configuration)"]
    ranked = sorted(result.outcomes, key=lambda o: (o.state != TrialState.COMPLETE, -(o.score(metric) or 0)))
    for o in ranked[:top]:
        mark = ("★" if result.best is not None and o.trial_id == result.best.trial_id else " ") + \
            ("=" if o.is_default else " ")
        lines.append(f"  {display_name(model, o.number):<10} {mark} {o.state:<8} {o.folds_done} folds  "
                     f"{cv(o)}  {searched(o)}")
    best = result.best
    if best is None:
        return [*lines, "no trial finished all folds: no best configuration"]
    default = next((o for o in result.outcomes if o.is_default and o.state == TrialState.COMPLETE), None)
    versus = "" if default is None or default is best else \
        f"; base configuration {display_name(model, default.number)}: {cv(default)} " \
        f"({best.psnr_mean - default.psnr_mean:+.2f} dB, {best.ssim_mean - default.ssim_mean:+.4f})"
    return [*lines,
            f"best: {display_name(model, best.number)}, CV {cv(best)}{versus}",
            f"      {searched(best)}",
            f"best configuration: {result.best_config_path}",
            "next:",
            f"  mrisr-ray report --data {data} --{model} {result.name} --workdir {workdir}",
            f"  mrisr-ray predict --study {result.name} --input SCANS --output OUT --workdir {workdir}",
            f"  mrisr-ray ui --workdir {workdir}   (compare the trials in MLflow)"]
