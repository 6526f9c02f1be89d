"""What a resumed run makes good when an interruption came between Ray's registration of a
checkpoint and its MLflow logging (a window no end-to-end kill can aim at): the worker's sink
hands the restored epoch's grid to its next report (train/worker.py), and the controller-side
logger (train/logger.py), called as Ray Train's controller calls it, logs what a real MLflow
store lacks."""

from pathlib import Path

import ray.train

from mrisr_ray import runs, tracking
from mrisr_ray.config import load_config
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.checkpoint import Best, Restored
from mrisr_ray.train.logger import MlflowLogger, log_resumed
from mrisr_ray.train.loop import EpochResult
from mrisr_ray.train.worker import (
    EPOCH,
    RESUMED,
    RESUMED_SAMPLES_FILE,
    SAMPLES_FILE,
    SCORE,
    RaySink,
    WorkerSpec,
)
from mrisr_ray.workdir import Workdir


def report(epoch: int, **extra) -> list[dict]:
    """Rank 0's report as `worker.RaySink` makes it (one rank)."""
    return [{"g_loss": 0.1 * epoch, EPOCH: epoch, SCORE: 30.0 + epoch, **extra}]


def checkpoint_with(folder: Path, **grids: bytes) -> ray.train.Checkpoint:
    folder.mkdir(parents=True, exist_ok=True)
    for name in (SAMPLES_FILE, RESUMED_SAMPLES_FILE):
        (folder / name).unlink(missing_ok=True)
    for name, data in grids.items():
        (folder / name).write_bytes(data)
    return ray.train.Checkpoint.from_directory(folder)


def logged(t: Tracking, run_id: str) -> tuple[list[int], dict[str, bytes]]:
    steps = sorted(m.step for m in t.client().get_metric_history(run_id, "g_loss"))
    folder = Path(t.client().download_artifacts(run_id, "samples"))
    return steps, {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_a_resume_logs_the_epoch_and_grid_that_never_reached_mlflow(tmp_path):
    t = Tracking.for_workdir(Workdir(tmp_path / "work"))
    run_id = tracking.start_run(t, "logger", "run", {})
    logger = MlflowLogger(t, run_id)
    logger.after_report(None, report(1), checkpoint_with(tmp_path / "c1", **{SAMPLES_FILE: b"grid 1"}))
    # Epoch 2's checkpoint was registered, then the controller died before it logged the epoch.
    # The resumed run's first report carries the restored epoch and, beside its own, that grid.
    restored = {"epoch": 2, "metrics": {"g_loss": 0.2}, "generator_sha256": "0" * 64}
    logger.after_report(None, report(3, **{RESUMED: restored}), checkpoint_with(
        tmp_path / "c3", **{SAMPLES_FILE: b"grid 3", RESUMED_SAMPLES_FILE: b"grid 2"}))
    assert logged(t, run_id) == ([1, 2, 3], {"epoch_001.png": b"grid 1", "epoch_002.png": b"grid 2",
                                             "epoch_003.png": b"grid 3"})
    assert t.client().get_run(run_id).data.tags[runs.RESUMED_FROM_EPOCH] == "2"

    # Resumed once more from epoch 2: what MLflow already holds is not logged again.
    (tmp_path / "again.png").write_bytes(b"other")
    log_resumed(t, run_id, restored, tmp_path / "again.png")
    assert logged(t, run_id) == ([1, 2, 3], {"epoch_001.png": b"grid 1", "epoch_002.png": b"grid 2",
                                             "epoch_003.png": b"grid 3"})


def test_the_worker_hands_the_restored_grid_to_the_next_report_only(tmp_path, monkeypatch):
    reports = []

    def report(metrics, checkpoint=None):  # what Ray Train would receive from rank 0
        files = {p.name: p.read_bytes() for p in Path(checkpoint.path).iterdir()} if checkpoint else {}
        reports.append((metrics, files))

    monkeypatch.setattr(ray.train, "report", report)
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / SAMPLES_FILE).write_bytes(b"grid 2")  # as restored from epoch 2's checkpoint
    (folder / RESUMED_SAMPLES_FILE).write_bytes(b"grid 1")  # left by an earlier resume
    sink = RaySink(WorkerSpec(load_config("cpce"), "cache", [], []), rank=0, checkpoint_dir=folder)
    sink.resumed(Restored(epoch=2, metrics={"g_loss": 0.2}, generator_sha256="0" * 64))
    for epoch in (3, 4):  # warm-up epochs without a sample grid of their own
        sink(EpochResult(epoch=epoch, metrics={"g_loss": 0.1, "lr": 1e-4, "patches_per_s": 9.0},
                         best=Best(), warmup=True))
    (first, first_files), (second, second_files) = reports
    assert first[RESUMED]["epoch"] == 2 and first_files == {RESUMED_SAMPLES_FILE: b"grid 2"}
    assert RESUMED not in second and second_files == {}
