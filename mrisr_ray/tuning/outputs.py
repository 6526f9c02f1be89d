"""What a finished study leaves besides the best configuration: Optuna plots and resource use."""

from __future__ import annotations

import warnings
from pathlib import Path

from mrisr_ray.tracking import Tracking


def study_figures(study_name: str, storage: str, folder: Path) -> list[Path]:
    """Optimisation history (always) and parameter importances (two or more complete trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.load_study(study_name=study_name, storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    made = []
    plots = [("history", optuna_plots.plot_optimization_history)]
    if len(complete) >= 2:
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


def usage(tracking: Tracking, experiment: str, study: str, plan) -> dict[str, float]:
    """CPU and GPU hours of the study's fold trainings (run time × resources per fold)."""
    client = tracking.client()
    runs = client.search_runs([tracking.experiment_id(experiment)],
                              f"tags.kind = 'fold' and tags.study = '{study}'")
    seconds = sum(((r.info.end_time or r.info.start_time) - r.info.start_time) / 1000 for r in runs)
    return {"cpu_hours": seconds / 3600 * plan.workers_per_trial * plan.cpus_per_worker,
            "gpu_hours": seconds / 3600 * plan.workers_per_trial * plan.gpus_per_worker}
