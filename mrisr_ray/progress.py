"""Progress reporting, without a dependency on any console library.

Library code takes a `Track` and wraps its loops in it, and a `Watch` around the trainings it
launches; the CLI passes its console's (`console.py`: rich on a terminal, plain lines otherwise),
everything else (tests, Ray workers, benchmarks) the silent defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mrisr_ray.tracking import Tracking

Track = Callable[[Iterable, str], Iterable]  # (items, description) -> the same items


def no_progress(items: Iterable, description: str) -> Iterable:
    return items


def clock(seconds: float) -> str:
    """`4:05`, or `1:02:03` from an hour."""
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


@dataclass(frozen=True)
class Target:
    """What a live view follows while trainings run: the runs they log to the tracking store (the
    one channel that every node of a cluster writes and that leaves Tune's results alone)."""

    tracking: Tracking
    experiment: str
    model: str
    epochs: int
    study: str | None = None  # a study: its trial and fold runs
    run_id: str | None = None  # one training run
    trials: int = 1
    folds: int = 1
    concurrent: int = 1


Watch = Callable[[Target], AbstractContextManager]  # entered while the trainings run


def no_watch(target: Target) -> AbstractContextManager:
    return nullcontext()
