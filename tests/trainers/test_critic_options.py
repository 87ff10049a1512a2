"""The critic's own knobs: ``algorithm.critic.epochs`` (passes over each batch, apart from the
policy's) and ``algorithm.critic.train_backbone=false`` (only the value head learns)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rlexp.trainers.update
from rlexp.runtime.errors import ConfigError
from rlexp.train import run
from tests.conftest import TINY, compose_cfg
from tests.trainers.test_critic_warmup import PPO


def test_critic_epochs_are_separate_from_the_policy_epochs(
    tmp_path: Path, shared_cache: Path, monkeypatch
) -> None:
    steps: list[str] = []
    real_step = rlexp.trainers.update._step

    def counting_step(module, optimizer, max_grad_norm, name):
        steps.append(name)
        return real_step(module, optimizer, max_grad_norm, name)

    monkeypatch.setattr(rlexp.trainers.update, "_step", counting_step)
    overrides = [*TINY, *PPO, "steps=2", "algorithm.epochs=1", "algorithm.critic.epochs=3"]
    run(compose_cfg([*overrides, f"output_dir={tmp_path / 'run'}", f"cache_dir={shared_cache}"]))
    # 4 samples per step, minibatch 4: one optimizer step per epoch
    assert steps.count("policy") == 2 and steps.count("critic") == 6


def test_frozen_backbone_trains_only_the_value_head(tmp_path: Path, shared_cache: Path) -> None:
    out = tmp_path / "run"
    overrides = [*TINY, *PPO, "steps=2", "save_every=2", "algorithm.critic.train_backbone=false"]
    run(compose_cfg([*overrides, f"output_dir={out}", f"cache_dir={shared_cache}"]))
    (ckpt,) = out.glob("checkpoints/step_*/critic")
    backbone = load_file(str(ckpt / "model.safetensors"))
    base = Path(json.loads((out / "run_info.json").read_text())["base_checkpoint"])
    start = {
        k.removeprefix("model."): v for k, v in load_file(str(base / "model.safetensors")).items()
    }
    assert backbone and all(torch.equal(v, start[k]) for k, v in backbone.items())
    head = load_file(str(ckpt / "value_head.safetensors"))
    assert head["weight"].abs().sum() > 0  # zero-initialised, then fitted


def test_critic_epochs_below_one_are_a_config_error(tmp_path: Path) -> None:
    cfg = compose_cfg([*TINY, *PPO, "algorithm.critic.epochs=0", f"output_dir={tmp_path}/run"])
    with pytest.raises(ConfigError, match="critic.epochs=0 must be >= 1"):
        run(cfg)
