"""The console table of a study's trials (mean ± SD over folds)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_trials(result, metric: str, top: int = 10) -> None:
    table = Table(title=f"study {result.name}: top trials by {metric} (mean ± SD over folds)")
    for column in ("trial", "state", "folds", "PSNR (dB)", "SSIM", "parameters"):
        table.add_column(column)
    ranked = sorted(result.outcomes, key=lambda o: (o.state != "complete", -(o.score(metric) or 0)))
    for o in ranked[:top]:
        mark = " (default)" if o.is_default else ""
        best = " ★" if result.best is not None and o.trial_id == result.best.trial_id else ""
        params = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else
                           f"{k.split('.')[-1]}={v}" for k, v in o.params.items())
        table.add_row(f"{o.trial_id}{mark}{best}", o.state, str(o.folds_done),
                      f"{o.psnr_mean:.2f} ± {o.psnr_sd:.2f}", f"{o.ssim_mean:.4f} ± {o.ssim_sd:.4f}",
                      params)
    Console().print(table)
