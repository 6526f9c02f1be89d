"""MLflow logging of a training run from Ray Train's controller, never from its workers.

Ray Train V2 starts a run's controller beside the process that called `fit()`: the `train`
driver, or a study's trial driver, which `tuning/study.py` pins to the head node. So only the
head talks to MLflow, and a tracking server bound to the head's 127.0.0.1 serves every run of a
cluster. Workers report their metrics (rank 0's are logged) and put the epoch's sample grid in
the checkpoint folder; the controller calls `after_report` once Ray has registered the checkpoint,
so an epoch is in MLflow only when a resume would continue after it. Workers get
`NO_TRACKING_ENV`, which makes any MLflow call there fail loudly (`tracking.Tracking.client`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray.train

from mrisr_ray import runs, tracking
from mrisr_ray.errors import describe
from mrisr_ray.ray_runtime import NO_TRACKING_ENV
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.worker import EPOCH, RESUMED, RESUMED_SAMPLES_FILE, SAMPLES_FILE, SCORE

RETRIES = 4
WORKER_RUNTIME_ENV = {"env_vars": {NO_TRACKING_ENV: "Ray Train workers report to the controller"}}


class MlflowLogger(ray.train.UserCallback):
    """Logs rank 0's report of every epoch (metrics at step = epoch, the sample grid as
    `samples/epoch_EEE.png`) and, once, which checkpoint a resumed run continued from."""

    def __init__(self, tracking_store: Tracking, run_id: str):
        self.tracking, self.run_id = tracking_store, run_id

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: ray.train.Checkpoint | None) -> None:
        """Log the epoch's metrics and sample grid, and what a resumed run restored."""
        assert checkpoint is not None, "rank 0 reports a checkpoint with every epoch (worker.py)"
        t, run_id = self.tracking, self.run_id
        report = dict(metrics[0])
        epoch = int(report.pop(EPOCH))
        report.pop(SCORE, None)
        resumed = report.pop(RESUMED, None)
        with checkpoint.as_directory() as folder:
            if resumed is not None:
                retried(log_resumed, t, run_id, resumed, Path(folder) / RESUMED_SAMPLES_FILE)
            retried(tracking.log_metrics, t, run_id, {**report, EPOCH: epoch}, step=epoch)
            grid = Path(folder) / SAMPLES_FILE
            if grid.is_file():
                retried(tracking.log_bytes, t, run_id, grid.read_bytes(), samples_artifact(epoch))


def retried(call: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """`call`, tried again after 1, 2 and 4 s if it raises: an exception in a Train callback ends
    the run outright (Ray Train does not retry controller errors), and a store can be briefly
    busy (SQLite locked while another fold's controller writes)."""
    for attempt in range(RETRIES):
        try:
            return call(*args, **kwargs)
        except Exception as exc:  # MLflow raises its own and the database driver's types
            if attempt == RETRIES - 1:
                raise
            print(f"[mrisr-ray] MLflow logging failed ({describe(exc)}); retrying", flush=True)
            time.sleep(2**attempt)


def samples_artifact(epoch: int) -> str:
    return f"samples/epoch_{epoch:03d}.png"


def log_resumed(t: Tracking, run_id: str, restored: dict[str, Any], samples: Path | None) -> None:
    """Tag the checkpoint a run continued from (`checkpoint.Restored` as a dict) and log that
    epoch's metrics and sample grid (`samples`, if the checkpoint holds one) if an interruption
    came between its checkpoint and its logging."""
    epoch = int(restored["epoch"])
    runs.mark_resumed(t, run_id, epoch, restored["generator_sha256"])
    logged = {m.step for m in t.client().get_metric_history(run_id, "g_loss")}
    if restored["metrics"] and epoch not in logged:
        tracking.log_metrics(t, run_id, {**restored["metrics"], EPOCH: epoch}, step=epoch)
    grids = {f.path for f in t.client().list_artifacts(run_id, "samples")}
    if samples is not None and samples.is_file() and samples_artifact(epoch) not in grids:
        tracking.log_bytes(t, run_id, samples.read_bytes(), samples_artifact(epoch))
