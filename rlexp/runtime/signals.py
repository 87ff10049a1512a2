"""SIGTERM as a failure the run records (SLURM's preemption and ``kill`` send it): the handler
raises :class:`Terminated`, which ``rlexp.train.run`` records like any failure (run_info.json
``failed`` with the signal, the W&B run finished with exit code 1, the last complete checkpoint
kept for ``resume=true``) and ``main_guard`` turns into one line and exit code 128 + 15.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(BaseException):
    """The process got SIGTERM. A BaseException, like KeyboardInterrupt: a sweep stops too."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _raise(signum: int, frame) -> None:
    raise Terminated(signum)


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
