"""What a command shows, and where everything else goes.

`session(command, workdir, verbose)` wraps a command: the process's stdout and stderr (file
descriptors 1 and 2, so Ray, Tune, Optuna, MLflow and the processes Ray starts all write there)
go to `<workdir>/logs/<command>-<time>-<pid>.log`, while the product's own lines and its live
progress go to the terminal through the `Console` it yields. On a terminal (and without NO_COLOR)
progress is a live rich display; otherwise it is plain lines without colour codes. `--verbose` shows the
log itself as it grows, Ray's output included. The log's path is printed at the end, except
after bad input, whose one error line says everything.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mrisr_ray.errors import Interrupted, RunFailed, UserInputError, describe
from mrisr_ray.progress import Target, clock
from mrisr_ray.signals import handler_while, stop_as_on_ctrl_c
from mrisr_ray.workdir import Workdir, ensure_folder

POLL_S = 1.0  # how often a live view reads the tracking store
PLAIN_TRACK_EVERY_S = 10.0  # how often a plain progress line repeats during a long loop
PLAIN_STATUS_EVERY_S = 60.0  # a plain view's status line when nothing else was printed
SHOWN_TRIALS = 8  # trials a live study view lists besides those running


@dataclass
class Console:
    """The terminal the user watches (stdout and stderr as they were before the session), and
    the session's log file, which also receives every line shown."""

    out: TextIO
    err: TextIO
    log: TextIO | None = None
    live: bool = False  # draw live displays (a terminal, NO_COLOR unset, not --verbose)
    echo_log: bool = False  # --verbose: the terminal shows the log, so lines go to the log only

    def __post_init__(self) -> None:
        from rich.console import Console as RichConsole

        self.rich = RichConsole(file=self.out, highlight=False, markup=False, soft_wrap=True) \
            if self.live else None

    def say(self, text: str = "", err: bool = False) -> None:
        if self.log is not None:
            self.log.write(text + "\n")
            self.log.flush()
        if self.echo_log:
            return
        if self.rich is not None and not err:
            self.rich.print(text)
        else:
            stream = self.err if err else self.out
            stream.write(text + "\n")
            stream.flush()

    def track(self, items: Iterable, description: str) -> Iterator:
        """A progress bar on a live terminal; otherwise a line at the start, one every
        PLAIN_TRACK_EVERY_S and one at the end."""
        if self.rich is not None:
            from rich.progress import track

            yield from track(items, description=description, console=self.rich, transient=True)
            return
        total = len(items) if hasattr(items, "__len__") else None
        of = f"/{total}" if total is not None else ""
        started = last = time.monotonic()
        self.say(f"{description} …")
        done = 0
        for done, item in enumerate(items, start=1):
            yield item
            if time.monotonic() - last >= PLAIN_TRACK_EVERY_S:
                last = time.monotonic()
                self.say(f"  {description}: {done}{of} in {clock(last - started)}")
        self.say(f"  {description}: {done}{of} done in {clock(time.monotonic() - started)}")

    @contextmanager
    def watch(self, target: Target) -> Iterator[None]:
        """Follow `target`'s runs while the block runs (progress.Watch)."""
        from mrisr_ray import live

        stop, started = threading.Event(), time.time()

        view = None
        if self.rich is not None:
            from rich.live import Live

            # Not redirecting sys.stdout/stderr: they belong to the log.
            view = Live(console=self.rich, refresh_per_second=2, redirect_stdout=False, redirect_stderr=False)
        before: live.Snapshot | None = None
        said = time.monotonic()  # when a plain line was last printed

        def show() -> None:
            nonlocal before, said
            now = live.snapshot(target, started)
            if view is not None:
                view.update(study_table(now))
            else:
                lines = live.events(before, now)
                if not lines and time.monotonic() - said >= PLAIN_STATUS_EVERY_S:
                    lines = [f"  {now.header()}", *live.running(now)]
                for line in lines:
                    self.say(line)
                if lines:
                    said = time.monotonic()
            before = now

        def follow() -> None:
            while True:
                stopping = stop.wait(POLL_S)  # after the block: one last poll shows how it ended
                try:
                    show()
                except Exception as exc:  # the store may be mid-write: the next poll reads it again
                    print(f"progress view: {type(exc).__name__}: {exc}", file=sys.stderr)  # the log
                if stopping:
                    return

        with view or nullcontext():
            thread = threading.Thread(target=follow, daemon=True)
            thread.start()
            try:
                yield
            finally:
                stop.set()
                thread.join()


def study_table(snapshot):
    """The live view: the header, then each trial (latest first, those running and the last
    SHOWN_TRIALS others) with its folds beneath it; a single training is one row."""
    from rich.table import Table

    from mrisr_ray import live

    table = Table(title=snapshot.header(), title_justify="left", box=None, pad_edge=False)
    for column, wraps in (("run", False), ("state", False), ("epoch", False),
                          ("PSNR / SSIM (LR input, gain)", True), ("searched", True)):
        table.add_column(column, no_wrap=not wraps, ratio=1 if wraps else None)
    folds_of: dict[str, list[live.FoldRow]] = {}
    for fold in snapshot.folds:
        folds_of.setdefault(fold.trial_id, []).append(fold)
    trials = sorted(snapshot.trials, key=lambda tr: tr.name, reverse=True)
    running = {f.trial_id for f in snapshot.folds if f.running}
    shown = [tr for tr in trials if tr.trial_id in running] + \
        [tr for tr in trials if tr.trial_id not in running][:SHOWN_TRIALS]
    for trial in shown:
        table.add_row(trial.name, trial.state, "", trial.scores(), trial.params)
        for fold in folds_of.get(trial.trial_id, []):
            fold_row(table, fold, indent="  ")
    if not snapshot.target.study:
        for fold in snapshot.folds:
            fold_row(table, fold)
    return table


def fold_row(table, fold, indent: str = "") -> None:
    epoch = f"{fold.epoch}/{fold.epochs}"
    table.add_row(f"{indent}{fold.name}", fold.status.lower(), epoch, fold.scores(), "")


class LogFollower:
    """--verbose: copies what is appended to the log file onto the terminal, as `tail -f` would
    (a file, unlike a pipe, never blocks the processes that write to it)."""

    def __init__(self, path: Path, out: TextIO):
        self.path, self.out, self.stop = path, out, threading.Event()
        self.thread = threading.Thread(target=self.follow, daemon=True)
        self.thread.start()

    def follow(self) -> None:
        with open(self.path, encoding="utf-8", errors="replace") as log:
            while True:
                stopping = self.stop.wait(0.2)
                chunk = log.read()
                if chunk:
                    self.out.write(chunk)
                    self.out.flush()
                if stopping:
                    return

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def shows_live(out: TextIO, verbose: bool) -> bool:
    return not verbose and out.isatty() and not os.environ.get("NO_COLOR")


@contextmanager
def session(command: str, workdir: Workdir, verbose: bool = False) -> Iterator[Console]:
    """Run a command with its output split as the module docstring says. Bad input and failed
    runs pass through (the CLI prints them); a command's Interrupted says its message here and
    passes through (exit code 130); anything unexpected becomes a RunFailed naming the log, which
    holds its traceback."""
    folder = ensure_folder(workdir.root / "logs", "--workdir")
    path = folder / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    err = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    log, follower = None, None
    names_log = True
    try:
        log = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (closed below, after the fds)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        follower = LogFollower(path, out) if verbose else None
        console = Console(out=out, err=err, log=log, live=shows_live(out, verbose), echo_log=verbose)
        with handler_while(signal.SIGTERM, stop_as_on_ctrl_c):
            yield console
    except (UserInputError, RunFailed) as exc:
        names_log = not isinstance(exc, UserInputError)  # bad input: its one line says it all
        if log is not None:
            log.write(f"error: {exc}\n")  # the CLI prints it on the terminal
        raise
    except Interrupted as exc:  # raised by the command, so `console` exists
        console.say(str(exc), err=True)
        raise
    except Exception as exc:
        traceback.print_exc()  # into the log
        raise RunFailed(f"{describe(exc)} (traceback in {path})") from exc
    finally:
        try:
            if "ray" in sys.modules:  # Ray's processes and threads print into the log to the end
                import ray

                ray.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            if follower is not None:
                follower.close()
        finally:  # the terminal comes back whatever happened above (a second Ctrl-C included)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if names_log:
                out.write(f"log: {path}\n")
            for stream in (out, err, log):
                if stream is not None:
                    stream.close()
