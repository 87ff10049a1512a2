"""Trainer kinds (``algorithm.trainer``): ``rl | sft | dpo | rft``, each registered once with its
checks and its entry point, so no part of the run dispatches on the kind's name.

A kind's module registers it at import (``rlexp.trainers`` imports them all); its ``algorithm:``
schema lives in the torch-free ``rlexp.config.algorithms`` (stored as ``schema/algorithm/<kind>``),
validation calls ``validate`` after the checks every run shares, and ``rlexp.train`` calls ``run``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from rlexp.data.tasks.base import Task
from rlexp.runtime.registry import Registry

_log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What a trainer kind's entry point receives from ``rlexp.train.run``."""

    cfg: DictConfig
    task: Task
    device: torch.device
    dtype: torch.dtype
    logger: Any  # RunLogger (rank 0) or NullLogger
    run_dir: Path
    resume_from: Path | None  # the checkpoint to continue from (resume=true), else None
    info: dict[str, Any]  # run_info.json's record; a kind may add keys (base_checkpoint)


@dataclass(frozen=True)
class TrainerKind:
    validate: Callable[[DictConfig], None]  # raises ConfigError; after the shared checks
    run: Callable[[RunContext], dict[str, float]]  # trains; returns the final metrics
    data_parallel: bool = False  # may run under torchrun with several processes
    resumable: bool = False  # resume=true continues from its last checkpoint
    lora: bool = False  # trains a LoRA policy (model.lora.r > 0)
    kl_reference: bool = False  # may hold a KL reference (model.ref_path)
    rollout_engine: bool = False  # samples its training data with rollout.engine


TRAINERS: Registry[TrainerKind] = Registry("trainer kind (algorithm.trainer)")


def print_base_to_final(run_dir: Path, final: dict) -> None:
    """One line per held-out accuracy: the run's first evaluation (its start model) → its last."""
    first = _first_eval(run_dir)
    for key in ("eval/sampled_accuracy", "eval/greedy_accuracy"):
        if key in final:
            _log.info("%s: base %.3f -> final %.3f", key, first.get(key, float("nan")), final[key])


def _first_eval(run_dir: Path) -> dict:
    with open(run_dir / "metrics.jsonl") as f:
        for line in f:
            row = json.loads(line)
            if "eval/sampled_accuracy" in row:
                return row
    return {}
