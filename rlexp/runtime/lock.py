"""One run per run directory: ``rlexp-train`` holds a lock on its ``output_dir`` while it runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from rlexp.runtime.errors import ConfigError


class OthersRunDir(ConfigError):
    """The run directory belongs to another run; nothing of that run is touched."""


class RunDirInUse(OthersRunDir):
    """Another live process holds the run directory (its lock)."""


class RunDirHoldsRun(OthersRunDir):
    """A new run (no ``resume=true``) was pointed at a directory where a run already started:
    its steps would be appended to that run's metrics.jsonl and checkpoints."""


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.rlexp.lock`` for the run (rank 0 under torchrun): a second run started in
    the same directory stops at once instead of interleaving its steps and checkpoints. The OS
    drops the lock with the process, so a killed run's directory is free for ``resume=true``."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    lock = FileLock(Path(run_dir) / ".rlexp.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunDirInUse(
            f"output_dir={run_dir} is in use by another run (it holds {lock.lock_file}); give "
            "this run its own hydra.run.dir, or wait until the other one ends"
        ) from None
    try:
        yield
    finally:
        lock.release()
