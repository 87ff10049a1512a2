"""What a run says: Python's ``logging``, configured by Hydra for each job
(``conf/hydra/job_logging/rlexp.yaml``: plain lines on the console), and for the run's duration
also written, with time, logger and level, to ``<run_dir>/train.log``. Library progress bars
(transformers' weight loading and saving, the hub's) are off; rlexp's own tqdm bar stays, and
log lines are written above it instead of breaking it.

A quieter console: ``hydra.job_logging.handlers.console.level=WARNING`` (``train.log`` still gets
every INFO line); any other handler or format: the ``hydra.job_logging`` section, as in any Hydra
app.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

FULL_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
EVAL_KEYS = ("eval/sampled_accuracy", "eval/greedy_accuracy")


def quiet_libraries() -> None:
    """transformers' and huggingface_hub's progress bars off (they broke the training bar)."""
    import huggingface_hub.utils
    import transformers

    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


@contextmanager
def run_log(run_dir: Path) -> Iterator[None]:
    """Within the block: every INFO line of rlexp (and every warning) also in
    ``run_dir/train.log`` (appended, so a resumed run continues it), the console's lines written
    above the progress bar, the libraries' bars off."""
    quiet_libraries()
    rlexp_logger = logging.getLogger("rlexp")
    if rlexp_logger.level == logging.NOTSET:  # no Hydra config (the Python API, tests)
        rlexp_logger.setLevel(logging.INFO)
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter(FULL_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with _above_progress_bars():
            yield
    finally:
        root.removeHandler(handler)
        handler.close()


class _TqdmHandler(logging.StreamHandler):
    """A console handler that writes through ``tqdm.write``: the line goes above the bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()  # as StreamHandler does: a piped stdout (SLURM's log) gets it now
        except Exception:  # logging's own convention: report, never raise
            self.handleError(record)


@contextmanager
def _above_progress_bars() -> Iterator[None]:
    """Swap the root's console handlers for ``_TqdmHandler``s with the same stream, level,
    format and filters (tqdm's ``logging_redirect_tqdm`` drops the level)."""
    root = logging.getLogger()
    swapped = []
    for old in list(root.handlers):
        if type(old) is logging.StreamHandler and old.stream in (sys.stdout, sys.stderr):
            new = _TqdmHandler(old.stream)
            new.setFormatter(old.formatter)
            new.setLevel(old.level)
            new.filters = list(old.filters)
            root.removeHandler(old)
            root.addHandler(new)
            swapped.append((old, new))
    try:
        yield
    finally:
        for old, new in swapped:
            root.removeHandler(new)
            root.addHandler(old)


def eval_line(step: int, metrics: Mapping[str, float]) -> str:
    """One line per held-out evaluation: ``step 25: eval/sampled_accuracy 0.812, ...``."""
    keys = [k for k in EVAL_KEYS if k in metrics]
    keys += sorted(k for k in metrics if k.startswith("eval/pass@"))
    return f"step {step}: " + ", ".join(f"{k} {metrics[k]:.3f}" for k in keys)
