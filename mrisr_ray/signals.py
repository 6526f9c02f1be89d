"""How a command's process takes SIGTERM (`kill PID`, a scheduler's stop): as Ctrl-C.

Without this, Python's default ends the process at once, and once Ray is up its own handler
raises SystemExit wherever the process is: either way the trainings' runs stay RUNNING and no one
says how to continue. `console.session` installs `stop_as_on_ctrl_c` for the command;
`ray_runtime.ensure_ray` puts it back after `ray.init` replaces it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def stop_as_on_ctrl_c(signum: int, frame) -> None:
    """Call the SIGINT handler in force, as Ctrl-C would (Tune's stops a study gracefully, the
    default raises KeyboardInterrupt: runs marked KILLED, the resume command said); where SIGINT
    is ignored (a script's background job) raise KeyboardInterrupt directly. Further SIGTERMs are
    ignored, so that a second one cannot cut the clean-up short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    on_ctrl_c = signal.getsignal(signal.SIGINT)
    if not callable(on_ctrl_c):
        raise KeyboardInterrupt
    on_ctrl_c(signal.SIGINT, frame)


@contextmanager
def handler_while(signum: int, handler=None) -> Iterator[None]:
    """`handler` for `signum` while the block runs (None: leave it), and the handler from before
    put back after it, whatever the block installed meanwhile (Tune's fit installs one for SIGINT
    and leaves it after a study that ends normally, where it would swallow the next Ctrl-C).
    Signal handlers belong to the main thread: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signum)
    if handler is not None:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        if before is not None:  # None: installed outside Python, cannot be put back
            signal.signal(signum, before)


def keep_sigterm_as_ctrl_c(before) -> None:
    """After `ray.init`, which installs a SIGTERM handler that exits wherever the process is: put
    back `before` if it was `stop_as_on_ctrl_c` (a command's session)."""
    if before is stop_as_on_ctrl_c and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, before)
