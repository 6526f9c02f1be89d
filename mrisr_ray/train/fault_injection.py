"""Failure injection for recovery tests: the driver reads `FAIL_ONCE_ENV` and hands the plan to
rank 0 of a training run (`worker.WorkerSpec.failure`), which acts on it after an epoch's report.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mrisr_ray.errors import UserInputError

# "EPOCH:MARKER[:MODE[:FOLD]]" makes rank 0, once Ray Train has registered epoch EPOCH's
# checkpoint, raise (MODE raise, the default), SIGKILL its own process a moment later, in the next
# epoch (kill: a lost process), or sleep until something kills it (pause: the test then takes the
# node down). FOLD limits it to that fold's training. The MARKER file records that it happened,
# so a restarted run goes on.
FAIL_ONCE_ENV = "MRISR_RAY_FAIL_ONCE"
FAILURE_MODES = ("raise", "kill", "pause")
KILL_DELAY_S = 0.3


@dataclass(frozen=True)
class InjectedFailure:
    epoch: int
    marker: Path
    mode: str = "raise"
    fold: int | None = None

    @classmethod
    def from_env(cls, fold: int | None) -> InjectedFailure | None:
        """The plan in FAIL_ONCE_ENV where it applies to a training of `fold`."""
        plan = os.environ.get(FAIL_ONCE_ENV)
        if not plan:
            return None
        at, marker, *rest = plan.split(":")
        failure = cls(int(at), Path(marker), *(rest[:1] or ["raise"]),
                      fold=int(rest[1]) if len(rest) > 1 else None)
        if failure.mode not in FAILURE_MODES:
            raise UserInputError(f"{FAIL_ONCE_ENV}: mode must be one of {', '.join(FAILURE_MODES)}")
        return failure if failure.fold is None or failure.fold == fold else None

    def maybe_happen(self, epoch: int) -> None:
        """Called by rank 0 right after epoch `epoch`'s report."""
        if epoch != self.epoch or self.marker.exists():
            return
        import ray.train

        # Wait until Ray Train has registered the report's checkpoint, so a restart continues
        # from this epoch however busy the machine (the controller polls its workers).
        ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
        self.marker.write_text(f"{self.mode} after epoch {epoch} (pid {os.getpid()})\n")
        if self.mode == "kill":
            threading.Timer(KILL_DELAY_S, os.kill, (os.getpid(), signal.SIGKILL)).start()
        elif self.mode == "pause":
            while True:
                time.sleep(1)
        else:
            raise RuntimeError(f"injected failure after epoch {epoch} ({FAIL_ONCE_ENV})")
