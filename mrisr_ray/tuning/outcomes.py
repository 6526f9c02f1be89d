"""What a study ends with: each trial's outcome, the best configuration (among trials that
finished all K folds only), the trials table, Optuna plots and resource use, all logged to the
study run."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mrisr_ray import runs, tracking
from mrisr_ray.config import save_config, with_overrides
from mrisr_ray.plotting import pyplot
from mrisr_ray.runs import TrialState
from mrisr_ray.tuning.plan import Plan, StudyRequest
from mrisr_ray.tuning.space import SearchSpace


@dataclass
class TrialOutcome:
    trial_id: str
    params: dict
    state: TrialState  # complete | pruned | failed
    folds_done: int
    psnr_mean: float = float("nan")
    psnr_sd: float = float("nan")
    ssim_mean: float = float("nan")
    ssim_sd: float = float("nan")
    is_default: bool = False
    number: int | None = None  # Optuna's trial number (display names)

    def score(self, metric: str) -> float:
        return self.psnr_mean if metric == "psnr" else self.ssim_mean


@dataclass
class StudyResult:
    name: str
    run_id: str
    outcomes: list[TrialOutcome]
    best: TrialOutcome | None
    best_config_path: Path | None
    artifacts: list[Path] = field(default_factory=list)


def select_best(outcomes: list[TrialOutcome], folds: int, metric: str) -> TrialOutcome | None:
    """The best trial among those that finished all `folds` folds (partial CV never wins)."""
    complete = [o for o in outcomes if o.state == TrialState.COMPLETE and o.folds_done == folds]
    return max(complete, key=lambda o: o.score(metric), default=None)


def outcomes_of(grid, space: SearchSpace, defaults: dict, folds: int) -> list[TrialOutcome]:
    """The outcome of every trial in Tune's result grid."""
    outcomes = []
    for result in grid:
        metrics = result.metrics or {}
        params = {d.name: result.config.get(d.name) for d in space.dimensions}
        done = int(metrics.get("folds_done", 0))
        state = TrialState.FAILED if result.error else (
            TrialState.COMPLETE if done == folds else TrialState.PRUNED)
        outcomes.append(TrialOutcome(
            trial_id=metrics.get("trial_id", ""), params=params,
            state=state, folds_done=done, psnr_mean=metrics.get("psnr_mean", float("nan")),
            psnr_sd=metrics.get("psnr_sd", float("nan")), ssim_mean=metrics.get("ssim_mean", float("nan")),
            ssim_sd=metrics.get("ssim_sd", float("nan")), is_default=params == defaults,
            number=result.config.get(runs.TRIAL_NUMBER)))
    return outcomes


MIN_TRIALS_FOR_IMPORTANCE = 10  # fANOVA importances from fewer complete trials are noise


def study_figures(study_name: str, storage: str, folder: Path) -> list[Path]:
    """Optimisation history (once a trial completed) and parameter importances (from
    MIN_TRIALS_FOR_IMPORTANCE complete trials)."""
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.load_study(study_name=study_name, storage=storage)
    plt = pyplot()
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    made = []
    plots = [("history", optuna_plots.plot_optimization_history)]
    if len(complete) >= MIN_TRIALS_FOR_IMPORTANCE:
        plots.append(("importance", optuna_plots.plot_param_importances))
    for label, plot in plots:
        if label == "history" and not complete:
            continue
        plot(study)
        path = folder / f"{study_name}_{label}.png"
        plt.gcf().set_size_inches(8, 5)
        plt.tight_layout()
        plt.savefig(path, dpi=90)
        plt.close("all")
        made.append(path)
    return made


def usage(request: StudyRequest, plan: Plan) -> dict[str, float]:
    """CPU and GPU hours of the study's fold trainings (run time × resources per fold)."""
    folds = runs.fold_runs(request.tracking, request.experiment, plan.name)
    hours = sum(((r.info.end_time or r.info.start_time) - r.info.start_time) / 1000 for r in folds) / 3600
    return {"cpu_hours": hours * plan.resources.cpus, "gpu_hours": hours * plan.resources.gpus}


def finish_study(request: StudyRequest, plan: Plan, run_id: str, outcomes: list[TrialOutcome],
                 optuna_db: Path, started: float) -> StudyResult:
    """Best configuration, plots, trials table and usage, all logged to the study run."""
    t = request.tracking
    best = select_best(outcomes, plan.folds, request.metric)
    for outcome in outcomes:
        if outcome.is_default:  # the report prints its CV score beside the best one
            runs.mark_default_trial(t, request.experiment, plan.name, outcome.trial_id)
    reports = request.workdir.reports
    reports.mkdir(parents=True, exist_ok=True)
    artifacts: list[Path] = []
    best_path = None
    if best is not None:
        best_path = reports / f"best_{plan.model}.yaml"
        save_config(with_overrides(request.config, best.params), best_path)
        artifacts.append(best_path)
        runs.set_best_trial(t, run_id, best.trial_id)
        tracking.log_metrics(t, run_id, {runs.PSNR: best.psnr_mean, runs.PSNR_SD: best.psnr_sd,
                                         runs.SSIM: best.ssim_mean, runs.SSIM_SD: best.ssim_sd}, step=0)
        tracking.log_params(t, run_id, {f"best.{k}": v for k, v in best.params.items()})
    table = reports / f"trials_{plan.name}.json"
    table.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2, default=str))
    artifacts.append(table)
    artifacts += study_figures(plan.name, f"sqlite:///{optuna_db}", reports)
    counts = {f"trials_{state}": sum(o.state == state for o in outcomes)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)}
    tracking.log_metrics(t, run_id, {**usage(request, plan), **counts,
                                     "study_wall_hours": (time.time() - started) / 3600}, step=0)
    for path in artifacts:
        tracking.log_file(t, run_id, path)
    tracking.end_run(t, run_id, "FINISHED")
    return StudyResult(name=plan.name, run_id=run_id, outcomes=outcomes, best=best,
                       best_config_path=best_path, artifacts=artifacts)
