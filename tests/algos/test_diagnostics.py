"""Advantage diagnostics (bias / variance against Monte-Carlo) and the critic's own λ."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlexp.algos.advantages import gae
from rlexp.algos.diagnostics import advantage_diagnostics, masked_var, mc_advantages
from rlexp.rollout.batch import RolloutBatch
from rlexp.rollout.collect import compute_advantages, rollout_stats

INF = float("inf")


# ------------------------------------------------------------------------------------ math
def test_mc_advantages_hand_worked() -> None:
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.1, 0.0, INF]])  # padding never read
    values = torch.tensor([[0.2, 0.4, 0.6], [0.5, 0.1, 9.0]])
    expected = torch.tensor([[0.8, 0.6, 0.4], [-0.4, -0.1, 0.0]])  # G_t − V_t, γ = 1
    torch.testing.assert_close(mc_advantages(rewards, values, mask, 1.0), expected)
    # γ = 0.5: G = [0.25, 0.5, 1] and [0.1, 0]
    expected = torch.tensor([[0.05, 0.1, 0.4], [-0.4, -0.1, 0.0]])
    torch.testing.assert_close(mc_advantages(rewards, values, mask.bool(), 0.5), expected)


def test_mc_advantages_equal_gae_with_lambda_one() -> None:
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    mask = (torch.arange(7)[None] < torch.tensor([7, 1, 4, 0, 6])[:, None]).float()
    for gamma in (1.0, 0.9):
        adv, _ = gae(rewards, values, mask, gamma, 1.0)
        torch.testing.assert_close(mc_advantages(rewards, values, mask, gamma), adv)


def test_advantage_diagnostics_hand_worked() -> None:
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    a = torch.tensor([[1.0, 0.0, -1.0, 0.0, 100.0]])
    m = torch.tensor([[1.0, 1.0, -1.0, -1.0, -100.0]])
    out = advantage_diagnostics(a, m, mask)
    assert float(out["var"]) == pytest.approx(2 / 3)  # Σ(a − 0)² / (4 − 1)
    assert float(out["mc_var"]) == pytest.approx(4 / 3)
    assert float(out["mc_corr"]) == pytest.approx(2 / math.sqrt(2 * 4))  # Σ da·dm / √(Σda² Σdm²)
    assert float(out["mc_mse"]) == pytest.approx(0.5)  # (0 + 1 + 0 + 1) / 4
    lin = torch.tensor([[1.0, 2.0, 3.0, 4.0, 0.0]])
    out = advantage_diagnostics(lin, 2 * lin, mask)
    assert float(out["mc_corr"]) == pytest.approx(1.0)
    assert float(out["mc_mse"]) == pytest.approx(7.5)  # (1 + 4 + 9 + 16) / 4
    out = advantage_diagnostics(lin, 5 - lin, mask)
    assert float(out["mc_corr"]) == pytest.approx(-1.0)


def test_advantage_diagnostics_undefined_cases() -> None:
    mask = torch.tensor([[1, 1, 1, 0]])
    flat = advantage_diagnostics(torch.zeros(1, 4), torch.tensor([[1.0, 2.0, 3.0, 4.0]]), mask)
    assert float(flat["var"]) == 0.0 and math.isnan(float(flat["mc_corr"]))
    assert float(flat["mc_mse"]) == pytest.approx(14 / 3)
    one = advantage_diagnostics(torch.ones(1, 4), torch.zeros(1, 4), torch.tensor([[1, 0, 0, 0]]))
    assert math.isnan(float(one["var"])) and math.isnan(float(one["mc_corr"]))
    assert float(one["mc_mse"]) == 1.0
    assert math.isnan(float(masked_var(torch.ones(1, 2), torch.zeros(1, 2))))


def _slow_reference(a: np.ndarray, m: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    xs, ys = [], []
    for b in range(a.shape[0]):
        for t in range(a.shape[1]):
            if mask[b, t]:
                xs.append(float(a[b, t]))
                ys.append(float(m[b, t]))
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return {
        "var": sxx / (n - 1),
        "mc_var": syy / (n - 1),
        "mc_corr": sxy / math.sqrt(sxx * syy),
        "mc_mse": sum((x - y) ** 2 for x, y in zip(xs, ys, strict=True)) / n,
    }


@pytest.mark.parametrize("seed", range(4))
def test_advantage_diagnostics_match_a_slow_reference(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(6, 9, generator=g)
    m = 0.5 * a + torch.randn(6, 9, generator=g)
    mask = torch.rand(6, 9, generator=g) > 0.3
    a[~mask] = 1e6  # padding must not leak into any statistic
    out = advantage_diagnostics(a, m, mask)
    ref = _slow_reference(a.numpy(), m.numpy(), mask.numpy())
    for key, value in ref.items():
        assert float(out[key]) == pytest.approx(value, rel=1e-6), key


# ------------------------------------------------------------------------------------ wiring
def _ppo_batch(seed: int = 0) -> RolloutBatch:
    g = torch.Generator().manual_seed(seed)
    b, t = 6, 5
    mask = (torch.arange(t)[None] < torch.tensor([5, 3, 1, 4, 5, 2])[:, None]).float()
    scores = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    rewards = -0.05 * torch.rand(b, t, generator=g) * mask  # a KL penalty in the reward
    rewards[torch.arange(b), mask.sum(1).long() - 1] += scores
    return RolloutBatch(
        prompt_ids=torch.ones(b, 2, dtype=torch.long),
        prompt_mask=torch.ones(b, 2),
        completion_ids=torch.ones(b, t, dtype=torch.long),
        completion_mask=mask,
        old_logp=torch.zeros(b, t),
        group_ids=torch.arange(b) // 2,
        scores=scores,
        correct=scores.bool(),
        truncated=torch.zeros(b, dtype=torch.bool),
        token_rewards=rewards,
        values=torch.rand(b, t, generator=g) * mask,
    )


def _gae_run(adv_lam: float, critic_lam: float | None) -> RolloutBatch:
    batch = _ppo_batch()
    compute_advantages(batch, {"name": "gae", "gamma": 1.0, "lam": adv_lam}, critic_lam)
    return batch


def test_critic_lambda_sets_the_value_targets_and_nothing_else() -> None:
    ref = _ppo_batch()
    base = _gae_run(0.5, 0.9)
    # the value targets follow critic.lam ...
    _, returns = gae(ref.token_rewards, ref.values, ref.completion_mask, 1.0, 0.9)
    torch.testing.assert_close(base.returns, returns)
    # ... varying it leaves the advantages alone, and varying the advantage's λ the targets
    other_critic = _gae_run(0.5, 0.0)
    torch.testing.assert_close(other_critic.advantages, base.advantages)
    assert not torch.allclose(other_critic.returns, base.returns)
    other_actor = _gae_run(0.95, 0.9)
    torch.testing.assert_close(other_actor.returns, base.returns)
    assert not torch.allclose(other_actor.advantages, base.advantages)
    # null: the targets use the advantage's λ
    same = _gae_run(0.5, None)
    _, returns = gae(ref.token_rewards, ref.values, ref.completion_mask, 1.0, 0.5)
    torch.testing.assert_close(same.returns, returns)


def test_rollout_stats_log_mc_agreement_with_a_critic_only() -> None:
    keys = {"adv/var", "adv/mc_var", "adv/mc_corr", "adv/mc_mse"}
    exact = rollout_stats(_gae_run(1.0, None))  # λ = 1 *is* the Monte-Carlo advantage
    assert keys <= set(exact)
    assert exact["adv/mc_corr"] == pytest.approx(1.0) and exact["adv/mc_mse"] < 1e-12
    assert exact["adv/var"] == pytest.approx(exact["adv/std"] ** 2, rel=1e-5)
    td = rollout_stats(_gae_run(0.0, None))
    assert td["adv/mc_mse"] > 0 and td["adv/mc_corr"] < 1
    assert td["adv/mc_var"] == pytest.approx(exact["adv/mc_var"])  # same rollouts, same MC
    grpo = _ppo_batch()
    grpo.values = None
    compute_advantages(grpo, {"name": "group_relative", "normalize_std": False}, None)
    assert not keys & set(rollout_stats(grpo))
