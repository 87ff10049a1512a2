"""The Python API: compose a run config as the CLI does, and run it, with your own objects.

    import rlexp
    cfg = rlexp.compose(["algorithm=grpo", "steps=20"], output_dir="runs/mine")
    final = rlexp.run(cfg, rewards={"brevity": my_brevity_fn})   # {"eval/sampled_accuracy": ...}

``rewards`` maps names to reward functions (``fn(completions, problems, task, **params)``) that
``reward.components`` may then name, for this run only; no registration, no import path.
``datasets`` maps names to ``datasets.DatasetDict`` objects (or single splits) that
``task.dataset_name`` may name, the same way:

    cfg = rlexp.compose(["task=gsm8k", "task.dataset_name=mine"])
    rlexp.run(cfg, datasets={"mine": DatasetDict(train=train_ds, test=test_ds)})
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from rlexp.config import register_configs
from rlexp.data.tasks.sources import DATASETS
from rlexp.rollout.rewards import REWARDS, RewardFn
from rlexp.runtime.io import read_run_record
from rlexp.runtime.paths import CONF_DIR
from rlexp.train import run as run_config


def compose(
    overrides: Sequence[str] = (), output_dir: str | Path | None = None, config: str = "config"
) -> DictConfig:
    """The config ``rlexp-train <overrides>`` would run (``config="eval"``: rlexp-eval's), with
    ``output_dir`` as its run directory (default ``runs/api/<date>/<time>``)."""
    register_configs()
    GlobalHydra.instance().clear()
    if output_dir is None:
        output_dir = Path("runs", "api", time.strftime("%Y-%m-%d"), time.strftime("%H-%M-%S"))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config, overrides=[*overrides, f"output_dir={output_dir}"])


def run(
    cfg: DictConfig,
    rewards: Mapping[str, RewardFn] | None = None,
    datasets: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Train ``cfg`` (from ``compose``) and return its final metrics (``run_info.json: final``);
    ``rewards`` (reward functions) and ``datasets`` (``datasets.DatasetDict`` objects) by name,
    known to this run only."""
    with REWARDS.scoped(dict(rewards or {})), DATASETS.scoped(dict(datasets or {})):
        run_config(cfg)
    return read_run_record(Path(cfg.output_dir) / "run_info.json")["final"]
