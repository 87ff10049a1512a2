"""``rlexp-eval``: n completions per held-out problem from any checkpoint → ``samples.parquet``
(one row per sample) + ``summary.json``; the work is ``rlexp.evaluation.samples``."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from rlexp.config import register_configs
from rlexp.evaluation.samples import run_eval
from rlexp.runtime.errors import ConfigError
from rlexp.runtime.paths import CONF_DIR

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        summary = run_eval(cfg)
    except (FileNotFoundError, ConfigError) as err:  # ConfigError: a bad task data file
        print(f"rlexp-eval: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"{summary['model']}: accuracy {summary['accuracy']:.3f}, pass@{summary['n_samples']} "
        f"{summary['pass@n']:.3f} over {summary['n_problems']} problems -> {cfg.output_dir}"
    )
