"""Advantage estimators against hand-worked values and slow loop references (theory.md §1–3)."""

from __future__ import annotations

import math

import pytest
import torch

from rlexp.algos.advantages import (
    ADVANTAGES,
    ESTIMATOR_REQUIREMENTS,
    AdvantageInputs,
    batch_normalized,
    estimator_requirements,
    gae,
    group_relative,
    leave_one_out,
)


def padded_batch(b: int = 5, t: int = 7, seed: int = 0):
    """Random rewards/values [b, t] (float64) with random right-padding, one row empty."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[1] = 0
    mask = torch.arange(t)[None, :] < lengths[:, None]
    rewards = torch.randn(b, t, generator=g, dtype=torch.float64)
    values = torch.randn(b, t, generator=g, dtype=torch.float64)
    return rewards, values, mask, lengths.tolist()


def gae_reference(rewards, values, lengths, gamma, lam):
    """A_t = Σ_k (γλ)^k δ_{t+k}, explicit double sum per row; V after the last real token is 0."""
    adv = torch.zeros_like(rewards)
    for b, n in enumerate(lengths):
        v = [float(values[b, t]) for t in range(n)] + [0.0]
        delta = [float(rewards[b, t]) + gamma * v[t + 1] - v[t] for t in range(n)]
        for t in range(n):
            adv[b, t] = sum((gamma * lam) ** k * delta[t + k] for k in range(n - t))
    return adv


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.9, 0.8), (0.99, 1.0), (0.7, 0.0)])
def test_gae_matches_double_sum(gamma, lam):
    rewards, values, mask, lengths = padded_batch()
    adv, ret = gae(rewards=rewards, values=values, mask=mask, gamma=gamma, lam=lam)
    ref = gae_reference(rewards, values, lengths, gamma, lam)
    torch.testing.assert_close(adv, ref)
    torch.testing.assert_close(ret, torch.where(mask, ref + values, 0))
    assert (adv[~mask] == 0).all() and (ret[~mask] == 0).all()


def test_gae_lambda_zero_is_td_error_and_lambda_one_is_return_minus_value():
    rewards, values, mask, lengths = padded_batch(seed=1)
    gamma = 0.9
    adv0, _ = gae(rewards, values, mask, gamma=gamma, lam=0.0)
    adv1, _ = gae(rewards, values, mask, gamma=gamma, lam=1.0)
    for b, n in enumerate(lengths):
        for t in range(n):
            v_next = float(values[b, t + 1]) if t + 1 < n else 0.0
            delta = float(rewards[b, t]) + gamma * v_next - float(values[b, t])
            assert adv0[b, t].item() == pytest.approx(delta)
            ret = sum(gamma**k * float(rewards[b, t + k]) for k in range(n - t))
            assert adv1[b, t].item() == pytest.approx(ret - float(values[b, t]))


def test_gae_ignores_padding_even_huge_or_inf():
    rewards, values, mask, _ = padded_batch(seed=2)
    clean = gae(rewards, values, mask.double(), gamma=0.95, lam=0.9)  # float mask too
    dirty_r = torch.where(mask, rewards, 1e30)
    dirty_v = torch.where(mask, values, float("inf"))
    dirty = gae(dirty_r, dirty_v, mask, gamma=0.95, lam=0.9)
    for a, b in zip(clean, dirty, strict=True):
        assert torch.equal(a, b)


def test_gae_hand_worked_1x3():
    # δ = [0.9·0.6 − 0.5, 0.9·0.7 − 0.6, 1 − 0.7] = [0.04, 0.03, 0.3]; γλ = 0.72
    # A_2 = 0.3, A_1 = 0.03 + 0.72·0.3 = 0.246, A_0 = 0.04 + 0.72·0.246 = 0.21712
    rewards = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.6, 0.7]], dtype=torch.float64, requires_grad=True)
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, torch.tensor([[0.21712, 0.246, 0.3]], dtype=torch.float64))
    torch.testing.assert_close(ret, torch.tensor([[0.71712, 0.846, 1.0]], dtype=torch.float64))
    assert not adv.requires_grad and not ret.requires_grad


def group_reference(scores, ids, normalize_std=True, eps=1e-6):
    """Loop reference: (r − mean) / (unbiased std + eps) over samples sharing an id."""
    out = []
    for i in range(len(scores)):
        g = [float(scores[j]) for j in range(len(scores)) if ids[j] == ids[i]]
        mean = sum(g) / len(g)
        std = math.sqrt(sum((x - mean) ** 2 for x in g) / (len(g) - 1))
        c = float(scores[i]) - mean
        out.append(c / (std + eps) if normalize_std else c)
    return torch.tensor(out, dtype=scores.dtype)


def test_group_relative_hand_worked_unbiased_std():
    # group [1, 0, 0, 0]: mean 0.25, unbiased var (0.5625 + 3·0.0625)/3 = 0.25 -> std 0.5
    # group [2, 4]: mean 3, unbiased var 2 -> std √2
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 4.0], dtype=torch.float64)
    ids = torch.tensor([0, 0, 0, 0, 1, 1])
    adv = group_relative(scores, None, group_ids=ids, eps=0.0)
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(
        adv, torch.tensor([1.5, -0.5, -0.5, -0.5, -s, s], dtype=torch.float64)
    )
    drgrpo = group_relative(scores, None, normalize_std=False, group_ids=ids)
    torch.testing.assert_close(drgrpo, torch.tensor([0.75, -0.25, -0.25, -0.25, -1, 1.0]).double())


def test_group_relative_matches_reference_and_is_centred():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(12, generator=g, dtype=torch.float64)
    adv = group_relative(scores, 4)
    ids = torch.arange(12) // 4
    torch.testing.assert_close(adv, group_reference(scores, ids))
    torch.testing.assert_close(adv.view(3, 4).sum(1), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(
        group_relative(scores, 4, eps=0).view(3, 4).std(1), torch.ones(3).double()
    )
    torch.testing.assert_close(
        group_relative(scores, 4, normalize_std=False), group_reference(scores, ids, False)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [2, 3, 7, 16])
def test_group_equal_up_to_rounding_gives_exact_zero(dtype, size):
    # 0.35 as sums that round differently: in float32 0.1 + 0.25 != 0.05 + 0.3, in float64
    # 0.1 + 0.2 + 0.05 != 0.35
    parts = [(0.1, 0.25), (0.05, 0.3), (0.1, 0.2, 0.05), (0.35,), (0.15, 0.2), (0.01, 0.34)]
    sums = [
        sum((torch.tensor(x, dtype=dtype) for x in p), torch.tensor(0, dtype=dtype)) for p in parts
    ]
    scores = torch.stack([sums[i % len(sums)] for i in range(size)])
    if size >= 3:  # the sums really do differ in the last bit
        assert scores.unique().numel() > 1
    other = torch.tensor([0.0, 1.0] * size, dtype=dtype)[:size]
    both = torch.cat([scores, other])
    for fn in (group_relative, leave_one_out):
        adv = fn(both, size)
        assert torch.equal(adv[:size], torch.zeros(size, dtype=dtype))
        assert adv[size:].abs().sum() > 0
    assert torch.equal(
        group_relative(both, size, normalize_std=False)[:size], torch.zeros(size, dtype=dtype)
    )


def test_constant_group_is_zero():
    scores = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 2.5, 2.5])
    ids = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    assert torch.equal(group_relative(scores, None, group_ids=ids), torch.zeros(8))


def test_group_ids_any_order_and_shuffle_invariance():
    g = torch.Generator().manual_seed(4)
    ids = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3])  # unequal sizes allowed with ids
    scores = torch.randn(12, generator=g, dtype=torch.float64)
    for fn in (group_relative, leave_one_out):
        adv = fn(scores, None, group_ids=ids)
        perm = torch.randperm(12, generator=g)
        adv_perm = fn(scores[perm], None, group_ids=ids[perm])
        torch.testing.assert_close(adv_perm, adv[perm])
    torch.testing.assert_close(
        group_relative(scores, None, group_ids=ids), group_reference(scores, ids)
    )
    # relabelled ids (arbitrary values) give the same result
    torch.testing.assert_close(
        group_relative(scores, None, group_ids=ids * 7 + 100),
        group_relative(scores, None, group_ids=ids),
    )


def test_group_errors():
    with pytest.raises(ValueError, match="group_size"):
        group_relative(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="split"):
        group_relative(torch.zeros(5), 2)
    with pytest.raises(ValueError, match=r"\[7\]"):
        leave_one_out(torch.zeros(3), None, group_ids=torch.tensor([3, 3, 7]))


def test_leave_one_out_hand_and_reference():
    # [1, 0, 0, 0]: 1 − 0 = 1, 0 − 1/3 = −1/3
    adv = leave_one_out(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4)
    torch.testing.assert_close(adv, torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3]))
    g = torch.Generator().manual_seed(5)
    scores = torch.randn(9, generator=g, dtype=torch.float64)
    ids = torch.tensor([2, 0, 1, 0, 2, 1, 0, 2, 1])
    ref = [
        float(scores[i])
        - sum(float(scores[j]) for j in range(9) if ids[j] == ids[i] and j != i) / 2
        for i in range(9)
    ]
    torch.testing.assert_close(
        leave_one_out(scores, None, group_ids=ids), torch.tensor(ref).double()
    )


def batch_norm_reference(rewards, lengths, gamma):
    rets, flat = torch.zeros_like(rewards), []
    for b, n in enumerate(lengths):
        for t in range(n):
            rets[b, t] = sum(gamma**k * float(rewards[b, t + k]) for k in range(n - t))
            flat.append(float(rets[b, t]))
    mean = sum(flat) / len(flat)
    std = math.sqrt(sum((x - mean) ** 2 for x in flat) / (len(flat) - 1))
    adv = torch.zeros_like(rewards)
    for b, n in enumerate(lengths):
        for t in range(n):
            adv[b, t] = (rets[b, t] - mean) / (std + 1e-8)
    return adv, rets


def test_batch_normalized_hand_worked():
    # γ = 0.5: returns [[0.25, 0.5, 1], [1, 2, pad]]; mean 0.95, unbiased var 1.8/4 = 0.45
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 99.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
    adv, ret = batch_normalized(rewards, mask, gamma=0.5)
    torch.testing.assert_close(ret, torch.tensor([[0.25, 0.5, 1.0], [1.0, 2.0, 0.0]]).double())
    dev = torch.tensor([[-0.7, -0.45, 0.05], [0.05, 1.05, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(adv, dev / (math.sqrt(0.45) + 1e-8))


def test_batch_normalized_reference_and_whole_batch_whitening():
    rewards, _, mask, lengths = padded_batch(seed=6)
    adv, ret = batch_normalized(rewards, mask, gamma=0.9)
    ref_adv, ref_ret = batch_norm_reference(rewards, lengths, 0.9)
    torch.testing.assert_close(adv, ref_adv)
    torch.testing.assert_close(ret, ref_ret)
    # whitened over all real tokens of the batch, not per sequence or group
    assert adv[mask].mean().item() == pytest.approx(0, abs=1e-12)
    assert adv[mask].std().item() == pytest.approx(1, abs=1e-6)
    per_row = [adv[b, :n].mean().abs().item() for b, n in enumerate(lengths) if n > 1]
    assert max(per_row) > 0.1


def test_batch_normalized_no_spread_is_zero():
    rewards = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    adv, _ = batch_normalized(rewards, torch.ones(2, 2), gamma=1.0)
    assert torch.equal(adv, torch.zeros(2, 2))


def make_inputs(with_values=True):
    rewards, values, mask, _ = padded_batch(b=6, t=5, seed=7)
    mask[1, 0] = True  # every sequence non-empty here
    scores = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.0, 1.0], dtype=torch.float64)
    ids = torch.tensor([0, 1, 0, 1, 2, 2])
    return AdvantageInputs(rewards, scores, mask, ids, values if with_values else None)


def test_registry_and_requirements():
    assert ADVANTAGES.names() == sorted(ESTIMATOR_REQUIREMENTS)
    assert ADVANTAGES.names() == [
        "batch_normalized",
        "gae",
        "group_relative",
        "leave_one_out",
        "outcome",
    ]
    assert estimator_requirements("gae").critic and not estimator_requirements("gae").groups
    assert estimator_requirements("group_relative").groups
    assert estimator_requirements("leave_one_out").groups
    req = estimator_requirements("batch_normalized")
    assert not req.critic and not req.groups
    # a KL-in-reward penalty only reaches estimators that read token rewards
    assert [n for n in ADVANTAGES if estimator_requirements(n).token_rewards] == [
        "batch_normalized",
        "gae",
    ]
    with pytest.raises(KeyError, match="choose one of: batch_normalized, gae"):
        estimator_requirements("vtrace")


def test_every_estimator_shares_one_signature():
    inputs = make_inputs()
    params = {"gae": {"gamma": 1.0, "lam": 0.95}, "batch_normalized": {"gamma": 1.0}}
    for name in ADVANTAGES:
        adv, ret = ADVANTAGES.get(name)(inputs, **params.get(name, {}))
        assert adv.shape == inputs.mask.shape
        assert (adv[~inputs.mask] == 0).all()
        assert (ret is None) == (name in ("group_relative", "leave_one_out", "outcome"))


def test_estimators_match_the_functions():
    inputs = make_inputs()
    adv, _ = ADVANTAGES.get("group_relative")(inputs, normalize_std=True)
    seq = group_relative(inputs.scores, None, group_ids=inputs.group_ids)
    torch.testing.assert_close(adv, torch.where(inputs.mask, seq[:, None], 0))
    adv, ret = ADVANTAGES.get("gae")(inputs, gamma=0.9, lam=0.5)
    ref = gae(inputs.token_rewards, inputs.values, inputs.mask, gamma=0.9, lam=0.5)
    torch.testing.assert_close((adv, ret), ref)


def test_estimator_errors():
    with pytest.raises(ValueError, match="needs critic values"):
        ADVANTAGES.get("gae")(make_inputs(with_values=False))
    inputs = make_inputs()
    inputs.group_ids = torch.tensor([0, 0, 1, 1, 1, 5])
    with pytest.raises(ValueError, match=r"group ids \[5\]"):
        ADVANTAGES.get("group_relative")(inputs)


def test_outcome_estimator_is_the_raw_score_on_real_tokens():
    inputs = make_inputs(with_values=False)
    adv, returns = ADVANTAGES.get("outcome")(inputs)
    assert returns is None
    want = torch.where(inputs.mask, inputs.scores[:, None].float(), 0.0)
    torch.testing.assert_close(adv, want)
    assert not estimator_requirements("outcome").groups


def test_batch_level_std_scope_hand_worked():
    """ScaleRL's batch-level normalisation: centred per group, divided by the batch's std.
    Groups [1, 0, 0, 1] and [1, 1, 1, 0]: centred [.5, -.5, -.5, .5, .25, .25, .25, -.75],
    whose unbiased std is sqrt(1.75 / 7) = 0.5."""
    scores = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 0])
    ids = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    mask = torch.ones(8, 3)
    inputs = AdvantageInputs(
        token_rewards=torch.zeros(8, 3), scores=scores, mask=mask, group_ids=ids
    )
    adv, _ = ADVANTAGES.get("group_relative")(inputs, std_scope="batch", eps=0.0)
    expected = torch.tensor([1.0, -1, -1, 1, 0.5, 0.5, 0.5, -1.5])
    torch.testing.assert_close(adv[:, 0], expected)
    group_scope, _ = ADVANTAGES.get("group_relative")(inputs, eps=0.0)
    assert not torch.allclose(group_scope[:, 0], expected)  # GRPO's: each group's own std
    with pytest.raises(ValueError, match="std_scope"):
        ADVANTAGES.get("group_relative")(inputs, std_scope="prompt")
