"""The state of trainings in progress, read from the tracking store (`progress.Target`): a study's
trials and fold trainings, or one training run, each fold's validation PSNR/SSIM beside the LR
input's on the same slices, elapsed time and an ETA. `console.py` draws a `Snapshot` (rich, on a
terminal) or prints the `events` between two of them as plain lines.

Polling the store (every run already logs there, from any node) keeps the view out of Tune's
results, which ASHA and Optuna act on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from mlflow.entities import Run

from mrisr_ray import runs
from mrisr_ray.progress import Target, clock

RUNNING = "RUNNING"
RESUMED_FROM = runs.RESUMED_FROM_EPOCH


def _metric(run: Run, key: str) -> float:
    return run.data.metrics.get(key, math.nan)


@dataclass(frozen=True)
class FoldRow:
    """One training run (a fold of a trial, or a `train` run)."""

    run_id: str
    name: str
    trial_id: str
    status: str  # MLflow's: RUNNING, FINISHED, KILLED, FAILED
    epoch: int  # the last epoch logged (0: none yet)
    epochs: int
    val: tuple[float, float]  # the last epoch's PSNR, SSIM (nan: none yet)
    lr_input: tuple[float, float]  # the LR input's, same slices
    best: tuple[float, float] | None  # the best epoch's, once finished
    seconds: float  # since the run started, or since the view did for a run resumed under it
    resumed_from: int | None = None  # the epoch whose checkpoint it continued from

    @classmethod
    def of(cls, run: Run, epochs: int, now: float, view_started: float) -> FoldRow:
        info, best, tags = run.info, runs.best_scores(run), run.data.tags
        end = info.end_time / 1000 if info.end_time and info.status != RUNNING else now
        # A run resumed days later: its own start would count the time it was stopped.
        start = info.start_time / 1000
        if RESUMED_FROM in tags:
            start = max(start, view_started)
        return cls(run_id=info.run_id, name=info.run_name, trial_id=tags.get(runs.TRIAL_ID, ""),
                   status=info.status, epoch=int(_metric(run, "epoch")) if "epoch" in run.data.metrics else 0,
                   epochs=epochs, val=(_metric(run, "val_psnr"), _metric(run, "val_ssim")),
                   lr_input=(_metric(run, "val_input_psnr"), _metric(run, "val_input_ssim")),
                   best=best if None not in best else None, seconds=max(0.0, end - start),
                   resumed_from=int(tags[RESUMED_FROM]) if RESUMED_FROM in tags else None)

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def done(self) -> float:
        """Share of this training done (1 once it ended)."""
        return self.epoch / self.epochs if self.running else 1.0

    def scores(self) -> str:
        """`36.41 dB / 0.9412 (LR 35.80 / 0.9301, +0.61 dB / +0.0111)`; the best epoch's once finished."""
        psnr, ssim = self.best or self.val
        if math.isnan(psnr):
            return "not validated yet"
        lr_psnr, lr_ssim = self.lr_input
        text = f"{psnr:.2f} dB / {ssim:.4f}"
        if not math.isnan(lr_psnr):
            text += f" (LR {lr_psnr:.2f} / {lr_ssim:.4f}, {psnr - lr_psnr:+.2f} dB / {ssim - lr_ssim:+.4f})"
        return text


@dataclass(frozen=True)
class TrialRow:
    name: str
    trial_id: str
    state: str  # runs.TrialState's value
    cv: tuple[float, float, float, float] | None  # PSNR mean, SD, SSIM mean, SD over its folds
    folds_done: int
    params: str  # the searched values, short

    @classmethod
    def of(cls, run: Run) -> TrialRow:
        cv = tuple(runs.headline(run, k) for k in (runs.PSNR, runs.PSNR_SD, runs.SSIM, runs.SSIM_SD))
        params = short_params({k: v for k, v in sorted(run.data.params.items()) if k.startswith("search.")})
        return cls(name=run.info.run_name, trial_id=run.data.tags.get(runs.TRIAL_ID, ""),
                   state=run.data.tags.get(runs.STATE, ""), cv=None if None in cv else cv,
                   folds_done=int(run.data.metrics.get("folds_done", 0)), params=params)

    def scores(self) -> str:
        if self.cv is None:
            return "no fold finished yet"
        psnr, psnr_sd, ssim, ssim_sd = self.cv
        return f"CV {psnr:.2f} ± {psnr_sd:.2f} dB / {ssim:.4f} ± {ssim_sd:.4f} over {self.folds_done} fold(s)"


def short(value: object) -> str:
    """A parameter in as few characters as it needs: floats to 3 significant digits (`0.0443`,
    `10`), integers and words as they are; MLflow's logged strings are read as numbers first."""
    if isinstance(value, str):
        for parse in (int, float):
            try:
                value = parse(value)
                break
            except ValueError:
                pass
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def short_params(params: dict) -> str:
    """`lambda_p=0.1, lr=0.002`: config keys by their last part, values `short`."""
    return ", ".join(f"{key.split('.')[-1]}={short(value)}" for key, value in params.items())


@dataclass(frozen=True)
class Snapshot:
    target: Target
    folds: list[FoldRow]
    trials: list[TrialRow]
    elapsed: float  # seconds since the view started
    finished_ids: frozenset[str] = field(default_factory=frozenset)  # trial ids that ended

    def eta(self) -> float | None:
        """Seconds left, from the mean fold training time so far (an upper bound in a study:
        ASHA may stop trials early); None until a training has progressed."""
        target = self.target
        # Fold durations: those of ended trainings, else those projected from running ones.
        durations = [f.seconds for f in self.folds if not f.running] or \
            [f.seconds / f.done for f in self.folds if f.running and f.epoch]
        if not durations:
            return None
        per_fold = sum(durations) / len(durations)
        planned = target.trials * target.folds if target.study else 1
        runs_of = {t.trial_id: sum(f.trial_id == t.trial_id for f in self.folds) for t in self.trials}
        stopped_early = sum(target.folds - runs_of[t.trial_id] for t in self.trials
                            if t.state in (runs.TrialState.PRUNED, runs.TrialState.FAILED))
        left = max(0.0, planned - stopped_early - sum(f.done for f in self.folds))
        return left * per_fold / max(1, target.concurrent)

    def header(self) -> str:
        target, eta = self.target, self.eta()
        trainings = f"{sum(not f.running for f in self.folds)}/{target.trials * target.folds} fold trainings"
        what = (f"tune {target.model} · study {target.study} · {len(self.finished_ids)}/{target.trials} "
                f"trials · {trainings}" if target.study
                else f"train {target.model} · {self.folds[0].name if self.folds else ''}")
        left = "…" if eta is None else clock(eta) + (" at most" if target.study else "")
        return f"{what} · elapsed {clock(self.elapsed)} · ETA {left}"


def snapshot(target: Target, started: float) -> Snapshot:
    """The state of `target`'s runs now (`started`: when the view began, time.time())."""
    t, now = target.tracking, time.time()
    if target.study:
        fold_runs = runs.fold_runs(t, target.experiment, target.study)
        trial_runs = runs.study_trials(t, target.experiment, target.study)
    else:
        fold_runs, trial_runs = [t.client().get_run(target.run_id)], []
    folds = sorted((FoldRow.of(r, target.epochs, now, started) for r in fold_runs), key=lambda f: f.name)
    trials = sorted((TrialRow.of(r) for r in trial_runs), key=lambda tr: tr.name)
    finished = frozenset(tr.trial_id for tr in trials if tr.state not in ("", runs.TrialState.RUNNING.value))
    return Snapshot(target=target, folds=folds, trials=trials, elapsed=now - started, finished_ids=finished)


def running(now: Snapshot) -> list[str]:
    """A plain line per training in progress: its epoch and scores so far."""
    return [f"  {f.name} epoch {f.epoch}/{f.epochs}: {f.scores()}" for f in now.folds if f.running]


def events(before: Snapshot | None, now: Snapshot) -> list[str]:
    """Plain lines for what happened between two snapshots: each epoch of a single training, each
    fold training that ended, each trial that ended."""
    lines = []
    ended_before = {f.run_id for f in before.folds if not f.running} if before else set()
    seen_before = {f.run_id: f for f in before.folds} if before else {}
    for fold in now.folds:
        earlier = seen_before.get(fold.run_id)
        if fold.resumed_from is not None and (earlier is None or earlier.resumed_from != fold.resumed_from):
            lines.append(f"{fold.name} resumed from the checkpoint of epoch {fold.resumed_from}")
        if not now.target.study and fold.running and fold.epoch > (earlier.epoch if earlier else 0):
            lines.append(f"{fold.name} epoch {fold.epoch}/{fold.epochs}: {fold.scores()}")
        if not fold.running and fold.run_id not in ended_before:
            how = "best epoch" if fold.status == "FINISHED" else fold.status.lower()
            lines.append(f"{fold.name} {how}: {fold.scores()} in {clock(fold.seconds)}")
    trials_before = before.finished_ids if before else frozenset()
    for trial in now.trials:
        if trial.trial_id in now.finished_ids and trial.trial_id not in trials_before:
            lines.append(f"{trial.name} {trial.state}: {trial.scores()}; {trial.params}")
    if lines:
        lines.append(f"  {now.header()}")
    return lines
