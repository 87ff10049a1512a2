"""SIGTERM and SIGINT as failures the run records (SLURM's preemption and ``kill`` send SIGTERM,
Ctrl-C SIGINT): the handler raises :class:`Terminated`, which ``rlexp.train.run`` records like
any failure (run_info.json ``failed`` with the signal, the W&B run finished with exit code 1, the
last complete checkpoint kept for ``resume=true``) and ``main_guard`` turns into one line and the
shell's exit code 128 + signal number (143, 130).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Terminated(BaseException):
    """The process got a stop signal. A BaseException, like KeyboardInterrupt: a sweep stops too."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _raise(signum: int, frame) -> None:
    raise Terminated(signum)


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block SIGTERM and SIGINT raise :class:`Terminated` (main thread only;
    elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
