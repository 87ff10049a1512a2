"""The Python API (rlexp.compose, rlexp.run): a run composed and trained from Python with a reward
function passed in directly, its final metrics returned (issue 16, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

import rlexp
from rlexp.rollout.rewards import REWARDS
from rlexp.runtime.errors import ConfigError
from tests.conftest import TINY, read_jsonl


def short_answers(completions, problems, task, **params):
    return [1.0 if len(c) < 30 else 0.0 for c in completions]


def test_compose_and_run_with_a_reward_object(tmp_path: Path, shared_cache: Path) -> None:
    overrides = [*TINY, "steps=2", "eval_every=2", "logger=none", f"cache_dir={shared_cache}"]
    overrides += ["algorithm.prompts_per_step=4", "algorithm.minibatch_size=16", "threads=1"]
    cfg = rlexp.compose(overrides, output_dir=tmp_path / "run")
    cfg.reward.components = {"exact_match": 1.0, "short": 0.5}
    final = rlexp.run(cfg, rewards={"short": short_answers})
    assert 0 <= final["eval/sampled_accuracy"] <= 1
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert any("train/reward_short" in r for r in rows)
    assert "short" not in REWARDS  # known to that run only


def test_an_unknown_reward_is_the_cli_s_config_error(tmp_path: Path) -> None:
    cfg = rlexp.compose(TINY, output_dir=tmp_path / "run")
    cfg.reward.components = {"short": 1.0}
    with pytest.raises(ConfigError, match="unknown reward 'short'"):
        rlexp.run(cfg)
