"""Shared fixtures: compose configs through Hydra's compose API, tiny run sizes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from rlexp.config import SMOKE_OVERRIDES, register_configs

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Small enough for seconds on 2 cores: a short SFT on a small split, a few tiny RL steps.
TINY = SMOKE_OVERRIDES


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
