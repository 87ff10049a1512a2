"""What a run says (issue 16 item 4): the logging module, one plain line per held-out evaluation,
no transformers progress bars, every line also in <run_dir>/train.log, a console that can be
quietened as in any Hydra app."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import transformers

from rlexp.runtime.console import eval_line, run_log
from tests.conftest import TINY


def test_eval_line_hand_worked() -> None:
    metrics = {"eval/greedy_accuracy": 0.9, "eval/sampled_accuracy": 0.8125, "eval/pass@8": 1.0}
    assert eval_line(25, metrics | {"time/eval": 3.0}) == (
        "step 25: eval/sampled_accuracy 0.812, eval/greedy_accuracy 0.900, eval/pass@8 1.000"
    )


def test_run_log_writes_train_log_appends_and_lets_go(tmp_path: Path) -> None:
    log = logging.getLogger("rlexp.test")
    root_handlers = list(logging.getLogger().handlers)
    with run_log(tmp_path):
        log.info("first run")
        assert not transformers.utils.logging.is_progress_bar_enabled()
    with run_log(tmp_path):  # a resume continues the file
        log.warning("second run")
    log.info("after the run")  # not in the run's file any more
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert [line.split(" - ", 1)[1] for line in lines] == ["first run", "second run"]
    assert "[rlexp.test][INFO]" in lines[0] and "[rlexp.test][WARNING]" in lines[1]
    assert logging.getLogger().handlers == root_handlers


@pytest.mark.slow  # a subprocess
def test_the_console_has_one_line_per_evaluation_and_no_library_bars(tmp_path: Path) -> None:
    def train(out: Path, *extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-c", "from rlexp.train import main; main()", *TINY]
        cmd += ["steps=4", "eval_every=2", "save_every=4", "logger=none", "threads=1"]
        cmd += [f"output_dir={out}", f"cache_dir={tmp_path / 'cache'}", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)

    out = train(tmp_path / "run").stdout.replace("\r", "\n").splitlines()
    evals = [line for line in out if line.startswith("step ")]
    assert [line.split(":")[0] for line in evals] == ["step 0", "step 2", "step 4"]
    assert "eval/sampled_accuracy: base 0.000 -> final 0.000" in out  # plain, as before
    both = (
        "\n".join(out)
        + train(tmp_path / "quiet", "hydra.job_logging.handlers.console.level=WARNING").stderr
    )
    assert "Writing model shards" not in both and "Loading weights" not in both
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("][INFO] - step ") == 3 and "sft step 40: held-out loss" in log
    quiet = train(tmp_path / "quiet2", "hydra.job_logging.handlers.console.level=WARNING")
    assert "step 0:" not in quiet.stdout and "base 0.000 -> final" not in quiet.stdout
    assert "][INFO] - step 0:" in (tmp_path / "quiet2" / "train.log").read_text()


def test_a_log_line_is_flushed_at_once_to_a_piped_console(tmp_path: Path) -> None:
    """A pipe is block-buffered: without a flush, SLURM's output file got the lines at exit,
    after the stop signal's line on stderr."""
    code = (
        "import logging, sys, time\n"
        "from pathlib import Path\n"
        "from rlexp.runtime.console import run_log\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s')\n"
        f"with run_log(Path({str(tmp_path)!r})):\n"
        "    logging.getLogger('rlexp.x').info('first')\n"
        "    print('then stderr', file=sys.stderr, flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a plain pipe
    out = subprocess.run(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert out.stdout.splitlines()[-2:] == ["first", "then stderr"]
