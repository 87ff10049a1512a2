"""Shared fixtures: compose configs through Hydra's compose API, tiny run sizes."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from rlexp.config import register_configs
from rlexp.runtime.paths import CONF_DIR as _CONF_PATH

CONF_DIR = str(_CONF_PATH)
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Small enough for seconds on 2 cores: a short SFT on a small split, a few tiny RL steps
# (also the benchmarks' --tiny sizes).
TINY = [
    "task.n_train=400",
    "task.n_test=40",
    "sft.steps=40",
    "sft.batch_size=32",
    "sft.eval_every=20",
    "eval.n_problems=8",
    "eval.n_samples=2",
    "rollout.max_new_tokens=24",
    "model.hidden_size=32",
    "model.num_layers=1",
    "model.num_heads=2",
]


def pytest_collection_modifyitems(config, items) -> None:
    """``-m vllm`` tests need the vllm extra (``make install-vllm``); without it they skip.
    With it they run last: an engine started in the test process pins torch's thread count
    (vLLM's CPU backend binds threads), which tests of the thread settings would then see."""
    if importlib.util.find_spec("vllm") is not None:
        items[:] = [i for i in items if "vllm" not in i.keywords] + [
            i for i in items if "vllm" in i.keywords
        ]
        return
    skip = pytest.mark.skip(reason="vllm is not installed (make install-vllm)")
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)


def compose_cfg(overrides: list[str]):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture
def tiny_overrides(tmp_path: Path) -> list[str]:
    return [*TINY, f"output_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}"]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One SFT base cache for every end-to-end test of the session (same TINY settings)."""
    return tmp_path_factory.mktemp("shared_sft_cache")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl file (what the analysis package reads)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def sweep_grid(params: Mapping[str, str], overrides: Sequence[str] = ()) -> list[list[str]]:
    """The members' overrides that ``rlexp-train -m`` launches for ``hydra.sweeper.params`` plus
    command-line ``overrides`` (the basic sweeper's cartesian product, in its order)."""
    parser = OverridesParser.create()
    parsed = parser.parse_overrides([*(f"{k}={v}" for k, v in params.items()), *overrides])
    return BasicSweeper.split_arguments(parsed, None)[0]
