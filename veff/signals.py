"""Stop a long run cleanly on SIGTERM or SIGINT.

Batch schedulers stop jobs with SIGTERM (SLURM at the time limit or on preemption, with
SIGKILL ``KillWait`` seconds later; Kubernetes likewise). Under :func:`stop_requests` the
first SIGTERM or SIGINT only sets an event: the pipeline finishes writing the chunk it is
scoring, marks it done, releases the store and raises :class:`Interrupted`, so the job
exits in seconds with nothing half-written and ``--resume`` picks up from there. A second
signal stops at once (KeyboardInterrupt); the done markers still make ``--resume`` exact,
as after a kill -9.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    """The run stopped on a signal after writing every chunk it had started."""

    def __init__(self, signum: int, chunks_done: int, chunks_todo: int,
                 rerun: str = "run the same command with --resume to finish"):
        super().__init__(signum, chunks_done, chunks_todo)
        self.signum, self.chunks_done, self.chunks_todo = signum, chunks_done, chunks_todo
        self.rerun = rerun  # what finishes the job; callers may reword it

    def __str__(self) -> str:
        return (f"stopped by {signal.Signals(self.signum).name} after {self.chunks_done} of "
                f"{self.chunks_todo} chunk(s); every finished chunk is saved: {self.rerun}")


class StopRequest:
    """Set by the first handled signal; ``signum`` says which. ``note`` is what the handler
    prints on that signal; a phase that stops at once, with its own one-line message (as
    ``--cluster`` does while waiting for workers), sets it to "" meanwhile."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum = 0
        self.note = "stopping after the chunk in flight (send it again to stop at once)"

    def set(self, signum: int) -> None:
        self.signum = signum
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Handle SIGTERM/SIGINT as stop requests inside the block (main thread only; elsewhere
    the request is never set and signals keep their handlers)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, _frame):
        if stop.is_set():  # a second signal: stop now
            raise KeyboardInterrupt
        stop.set(signum)
        if stop.note:
            sys.stderr.write(f"\nveff: {signal.Signals(signum).name} received: {stop.note}\n")
            sys.stderr.flush()

    previous = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
