"""The console scripts ``rlexp-train``, ``rlexp-eval`` and ``rlexp-study``: Hydra parses the
command line (``--help``, ``--cfg``, tab completion, ``-m``) with only the torch-free config layer
imported; the job's own module (``rlexp.train``, ``rlexp.evaluate``, ``rlexp.study``), and with it
torch and transformers, is imported when a job starts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rlexp.config import register_configs
from rlexp.config.help import app_help
from rlexp.runtime.paths import CONF_DIR

register_configs()
HELP_FLAGS = ("--help", "-h")


def _with_help(config_name: str, *extra: str) -> Callable:
    """``--help`` (with any overrides, and ``extra`` ones: the help text to use) answered from
    ``app_help``, every other command line by the Hydra app below."""

    def wrap(app: Callable) -> Callable:
        def entry(*args, **kwargs):
            argv = sys.argv[1:]
            if any(a in HELP_FLAGS for a in argv) and not args:
                try:
                    overrides = [a for a in argv if a not in HELP_FLAGS]
                    print(app_help(config_name, [*extra, *overrides]))
                except Exception as err:  # a bad override: Hydra's one-line message
                    print(f"{Path(sys.argv[0]).name}: {err}", file=sys.stderr)
                    sys.exit(2)
                sys.exit(0)
            return app(*args, **kwargs)

        entry.__doc__, entry.__name__ = app.__doc__, app.__name__
        return entry

    return wrap


@_with_help("config")
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def train(cfg: DictConfig) -> float:
    from rlexp.train import main_guard, run_command

    return main_guard(run_command, cfg)


@_with_help("eval")
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def evaluate(cfg: DictConfig) -> None:
    from rlexp.evaluate import evaluate_job

    evaluate_job(cfg)


@_with_help("config", "hydra/help=rlexp_study")
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def study(cfg: DictConfig) -> None:
    from rlexp.study import run_study
    from rlexp.train import main_guard

    main_guard(run_study, cfg)
