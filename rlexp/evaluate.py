"""``rlexp-eval``: n completions per held-out problem from any checkpoint → ``samples.parquet``
(one row per sample) + ``summary.json``; the work is ``rlexp.evaluation.samples``."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rlexp.config import register_configs
from rlexp.config.schema import RolloutConfig
from rlexp.config.validate import check_known_keys
from rlexp.evaluation.samples import job_from_run, run_eval
from rlexp.runtime.errors import ConfigError
from rlexp.runtime.paths import CONF_DIR

_log = logging.getLogger(__name__)

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate_job(cfg)


def evaluate_job(cfg: DictConfig) -> None:
    """rlexp-eval's job: the run's own settings (``run_dir=``), then ``run_eval``; a missing
    checkpoint or a bad task file is one line and exit code 2."""
    try:
        check_known_keys(cfg)  # +foo=1 adds a key no schema declares
        cfg = job_from_run(cfg, RolloutConfig.max_new_tokens, _overrides())
        summary = run_eval(cfg)
    except (FileNotFoundError, ConfigError) as err:  # ConfigError: a bad task data file
        print(f"rlexp-eval: {err}", file=sys.stderr)
        sys.exit(2)
    _log.info(
        f"{summary['model']}: accuracy {summary['accuracy']:.3f}, pass@{summary['n_samples']} "
        f"{summary['pass@n']:.3f} over {summary['n_problems']} problems -> {cfg.output_dir}"
    )


def _overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
