"""ScaleRL's zero-variance filter (``algorithm.zero_variance_filter``): groups whose scores all
agree leave the policy loss, tokens and denominators alike, without resampling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlexp.algos.losses import ppo_policy_loss
from rlexp.rollout.filters import varied_score_rows, without_zero_variance_groups
from rlexp.runtime.errors import ConfigError
from rlexp.train import run
from tests.conftest import TINY, compose_cfg, read_jsonl
from tests.trainers.test_zoo import _batch

MB = ["algorithm.minibatch_size=16"]


def test_varied_rows_hand_worked() -> None:
    groups = torch.tensor([0, 0, 1, 1, 2, 3, 3])
    scores = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5, 0.1, 0.1000001])
    got = varied_score_rows(groups, scores)
    assert got.tolist() == [True, True, False, False, False, True, True]


def test_the_filtered_loss_is_the_loss_of_the_varied_groups_alone() -> None:
    batch = _batch([True, False, True, True], [3, 2, 4, 1], group_size=2)
    filtered, frac = without_zero_variance_groups(batch)
    assert frac == 0.5
    assert filtered.completion_mask[2:].sum() == 0 and torch.equal(
        filtered.completion_mask[:2], batch.completion_mask[:2]
    )
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(4, 4, generator=g)
    adv = torch.randn(4, 4, generator=g)
    old = logp + 0.1 * torch.randn(4, 4, generator=g)
    whole, _ = ppo_policy_loss(logp, old, adv, filtered.completion_mask)
    alone, _ = ppo_policy_loss(logp[:2], old[:2], adv[:2], batch.completion_mask[:2])
    torch.testing.assert_close(whole, alone)  # token-mean over the kept tokens only


def test_a_run_logs_the_filtered_share(tmp_path: Path, shared_cache: Path) -> None:
    out = tmp_path / "run"
    overrides = [*TINY, "steps=2", "eval_every=2", "algorithm.zero_variance_filter=true"]
    overrides += ["algorithm.prompts_per_step=4", "algorithm.minibatch_size=16", "threads=1"]
    run(compose_cfg([*overrides, f"output_dir={out}", f"cache_dir={shared_cache}"]))
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if "train/zero_variance_frac" in r]
    assert len(rows) == 2 and all(0 <= r["train/zero_variance_frac"] <= 1 for r in rows)


def test_it_needs_groups(tmp_path: Path) -> None:
    cfg = compose_cfg([*TINY, "algorithm=online_rft", "algorithm.group_size=1"] + MB)
    cfg.algorithm.zero_variance_filter = True
    cfg.output_dir = str(tmp_path / "run")
    with pytest.raises(ConfigError, match="zero_variance_filter=true drops groups"):
        run(cfg)
