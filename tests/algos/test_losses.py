"""Loss aggregation, PPO/GSPO policy losses and the value loss (theory.md §1–3)."""

from __future__ import annotations

import math

import pytest
import torch

from rlexp.algos.diagnostics import explained_variance
from rlexp.algos.losses import (
    AGG_MODES,
    PER_ROW_MODES,
    POLICY_LOSSES,
    RATIO_CLIP_LOSSES,
    aggregate,
    aggregation_denominator,
    cispo_policy_loss,
    gmpo_policy_loss,
    gspo_policy_loss,
    ppo_policy_loss,
    prompt_denominators,
    value_loss,
)

NAN = float("nan")


def two_sequences():
    """Lengths 1 and 3, plus an empty row whose garbage must not count: ℓ = [[4], [1, 2, 3]]."""
    loss = torch.tensor([[4.0, NAN, 7.0], [1.0, 2.0, 3.0], [float("inf"), 5.0, 5.0]])
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 1], [0, 0, 0]])
    return loss, mask


@pytest.mark.parametrize(
    ("mode", "norm_len", "expected"),
    [
        ("token-mean", None, 10 / 4),  # (4 + 1 + 2 + 3) / 4 tokens
        ("seq-mean-token-mean", None, 3.0),  # (4/1 + 6/3) / 2
        ("seq-mean-token-sum", None, 5.0),  # (4 + 6) / 2
        ("seq-mean-token-sum-norm", None, 10 / 6),  # (4/3 + 6/3) / 2, T = 3
        ("seq-mean-token-sum-norm", 5, 1.0),  # (4/5 + 6/5) / 2
    ],
)
def test_aggregate_hand_worked(mode, norm_len, expected):
    loss, mask = two_sequences()
    assert aggregate(loss, mask, mode, norm_len).item() == pytest.approx(expected)
    # the empty row changes nothing, whether present or not, with a bool mask too
    assert aggregate(loss[:2], mask[:2].bool(), mode, norm_len).item() == pytest.approx(expected)


def denominator(mask, mode: str, groups=None):
    """What the trainer passes every micro-batch: one number, or per-row prompt denominators
    (``groups``: the prompt of each row; default, every row its own prompt)."""
    if mode not in PER_ROW_MODES:
        return aggregation_denominator(mask, mode)
    return prompt_denominators(mask, torch.arange(len(mask)) if groups is None else groups)


def test_prompt_mean_hand_worked():
    """Prompt a: rows 0, 1 (ℓ 1, 3 and 5): 9 / 3 tokens = 3; prompt b: row 2 (2, 2, 2): 2."""
    loss = torch.tensor([[1.0, 3.0, NAN], [5.0, 9.0, 9.0], [2.0, 2.0, 2.0], [7.0, 7.0, 7.0]])
    mask = torch.tensor([[1.0, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]])
    groups = torch.tensor([10, 10, 11, 12])  # prompt 12's only sample is empty: not a prompt
    den = prompt_denominators(mask, groups)
    assert den.tolist() == [6.0, 6.0, 6.0, 2.0]  # 2 prompts × (3, 3, 3 tokens; empty: 1)
    assert aggregate(loss, mask, "prompt-mean-token-mean", global_denominator=den).item() == 2.5
    # seq-mean would weigh row 1's single token as much as row 0's two: (2 + 5 + 2) / 3 = 3
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == 3.0
    with pytest.raises(ValueError, match="per-row denominators"):
        aggregate(loss, mask, "prompt-mean-token-mean")
    with pytest.raises(ValueError, match="prompt_denominators"):
        aggregation_denominator(mask, "prompt-mean-token-mean")
    # with one sample per prompt it is seq-mean-token-mean
    single = prompt_denominators(mask[:3], torch.arange(3))
    assert aggregate(
        loss[:3], mask[:3], "prompt-mean-token-mean", global_denominator=single
    ).item() == (pytest.approx(aggregate(loss[:3], mask[:3], "seq-mean-token-mean").item()))


def test_aggregate_errors_and_empty():
    loss, mask = two_sequences()
    with pytest.raises(ValueError, match="choose one of: token-mean"):
        aggregate(loss, mask, "sum")
    x = torch.ones(2, 3, requires_grad=True)
    for mode in AGG_MODES:
        den = denominator(torch.zeros(2, 3), mode) if mode in PER_ROW_MODES else None
        out = aggregate(x, torch.zeros(2, 3), mode, global_denominator=den)
        assert out.item() == 0.0
        out.backward()
    assert aggregation_denominator(mask, "token-mean") == 4.0
    assert aggregation_denominator(mask, "seq-mean-token-sum") == 2.0


@pytest.mark.parametrize("mode", AGG_MODES)
def test_micro_batches_give_the_full_batch_gradient(mode):
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(6, 5, generator=g, dtype=torch.float64)
    lengths = torch.tensor([5, 1, 0, 3, 2, 4])
    mask = torch.arange(5)[None, :] < lengths[:, None]

    def per_token(rows):
        th = theta[rows]
        return th.square() * weights[rows] + th.sin()

    groups = torch.tensor([0, 1, 1, 0, 2, 2])  # a prompt's samples in different micro-batches
    denom = denominator(mask, mode, groups)
    per_row = isinstance(denom, torch.Tensor)
    full = aggregate(
        per_token(slice(None)), mask, mode, global_denominator=denom if per_row else None
    )
    (grad_full,) = torch.autograd.grad(full, theta)
    total = sum(
        aggregate(
            per_token(rows), mask[rows], mode, global_denominator=denom[rows] if per_row else denom
        )
        for rows in (slice(0, 2), slice(2, 3), slice(3, 6))
    )
    (grad_micro,) = torch.autograd.grad(total, theta)
    torch.testing.assert_close(total, full)
    torch.testing.assert_close(grad_micro, grad_full)


def policy_inputs(ratios, advs):
    """One sequence per call site: logp chosen so that exp(logp − old_logp) = ratios."""
    old = torch.log(torch.tensor([[0.3] * len(ratios)], dtype=torch.float64))
    logp = (old + torch.tensor([ratios], dtype=torch.float64).log()).requires_grad_()
    return logp, old, torch.tensor([advs], dtype=torch.float64), torch.ones(1, len(ratios))


def test_ppo_ratio_one_is_minus_mean_advantage():
    g = torch.Generator().manual_seed(1)
    logp = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    adv = torch.randn(3, 4, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]).bool()
    loss, stats = ppo_policy_loss(logp, logp.detach(), adv, mask)
    assert loss.item() == pytest.approx(-adv[mask].mean().item())
    assert stats["clip_frac"] == 0 and stats["ratio_mean"] == 1 and stats["ratio_max"] == 1
    assert stats["approx_kl"] == 0 and all(not v.requires_grad for v in stats.values())
    loss.backward()  # ∂ℓ/∂logp = −ρA / N = −A / 7 on real tokens
    torch.testing.assert_close(logp.grad, torch.where(mask, -adv / 7, 0))


def test_ppo_no_gradient_on_the_clipped_side():
    ratios = [1.5, 0.5, 0.5, 1.5, 1.1]
    advs = [1.0, -1.0, 1.0, -1.0, 2.0]  # clipped, clipped, inside (pessimistic side) x2, inside
    logp, old, adv, mask = policy_inputs(ratios, advs)
    loss, stats = ppo_policy_loss(logp, old, adv, mask)
    loss.backward()
    expected = [0.0, 0.0, -0.5 / 5, 1.5 / 5, -2.2 / 5]  # −ρA/N where unclipped
    torch.testing.assert_close(logp.grad, torch.tensor([expected], dtype=torch.float64))
    # loss = −(1.2 − 0.8 + 0.5 − 1.5 + 2.2) / 5
    assert loss.item() == pytest.approx(-(1.2 - 0.8 + 0.5 - 1.5 + 2.2) / 5)
    assert stats["clip_frac"] == pytest.approx(0.4)
    assert stats["clip_frac_high"] == pytest.approx(0.2)
    assert stats["clip_frac_low"] == pytest.approx(0.2)
    assert stats["ratio_max"] == pytest.approx(1.5)
    assert stats["ratio_mean"] == pytest.approx(sum(ratios) / 5)
    k3 = sum(r - 1 - math.log(r) for r in ratios) / 5
    assert stats["approx_kl"] == pytest.approx(k3)


def test_ppo_asymmetric_clip_hand_worked():
    # clip_low 0.2, clip_high 0.28 (DAPO): per-token losses
    # ρ=1.5, A=+1 -> −1.28 (clipped high); ρ=1.25, A=+1 -> −1.25 (inside, 0.2 would clip it)
    # ρ=0.7, A=−1 -> −min(−0.7, −0.8) = 0.8 (clipped low); ρ=0.9, A=−2 -> 1.8 (inside)
    logp, old, adv, mask = policy_inputs([1.5, 1.25, 0.7, 0.9], [1.0, 1.0, -1.0, -2.0])
    loss, stats = ppo_policy_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx((-1.28 - 1.25 + 0.8 + 1.8) / 4)
    assert stats["clip_frac"] == pytest.approx(0.5)
    assert stats["clip_frac_high"] == pytest.approx(0.25)
    assert stats["clip_frac_low"] == pytest.approx(0.25)
    symmetric, _ = ppo_policy_loss(logp, old, adv, mask)
    assert symmetric.item() == pytest.approx((-1.2 - 1.2 + 0.8 + 1.8) / 4)


def test_ppo_dual_clip():
    # c = 3: ρ=5, A=−1 -> min(5, 3) = 3 (dual-clipped, no gradient); ρ=2, A=−1 -> 2;
    # ρ=5, A=+1 -> −1.2 (ordinary clip)
    logp, old, adv, mask = policy_inputs([5.0, 2.0, 5.0], [-1.0, -1.0, 1.0])
    loss, stats = ppo_policy_loss(logp, old, adv, mask, dual_clip=3.0)
    assert loss.item() == pytest.approx((3 + 2 - 1.2) / 3)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 2 / 3, 0.0]], dtype=torch.float64))
    assert stats["dual_clip_frac"] == pytest.approx(1 / 3)
    no_dual, _ = ppo_policy_loss(logp, old, adv, mask)
    assert no_dual.item() == pytest.approx((5 + 2 - 1.2) / 3)
    with pytest.raises(ValueError, match="dual_clip"):
        ppo_policy_loss(logp, old, adv, mask, dual_clip=1.0)


def test_ppo_padding_garbage_is_harmless_and_micro_batches_match():
    g = torch.Generator().manual_seed(2)
    old = torch.randn(4, 5, generator=g, dtype=torch.float64)
    logp = (old + 0.3 * torch.randn(4, 5, generator=g, dtype=torch.float64)).requires_grad_()
    adv = torch.randn(4, 5, generator=g, dtype=torch.float64)
    mask = torch.arange(5)[None, :] < torch.tensor([5, 2, 0, 3])[:, None]
    dirty_old = torch.where(mask, old, NAN)
    dirty_adv = torch.where(mask, adv, float("inf"))
    for mode in AGG_MODES:
        den = denominator(mask, mode, torch.tensor([0, 0, 1, 1]))
        per_row = isinstance(den, torch.Tensor)
        full, _ = ppo_policy_loss(
            logp, dirty_old, dirty_adv, mask, agg=mode, global_denominator=den if per_row else None
        )
        (grad_full,) = torch.autograd.grad(full, logp)
        assert torch.isfinite(full) and torch.isfinite(grad_full).all()
        parts = [
            ppo_policy_loss(
                logp[r],
                old[r],
                adv[r],
                mask[r],
                agg=mode,
                global_denominator=den[r] if per_row else den,
            )[0]
            for r in (slice(0, 1), slice(1, 4))
        ]
        (grad_micro,) = torch.autograd.grad(sum(parts), logp)
        torch.testing.assert_close(grad_micro, grad_full)


def test_policy_loss_registry():
    assert POLICY_LOSSES.get("ppo_clip") is ppo_policy_loss
    assert POLICY_LOSSES.get("gspo") is gspo_policy_loss
    logp, old, adv, mask = policy_inputs([1.0, 1.0], [1.0, 3.0])
    assert POLICY_LOSSES.get("cispo") is cispo_policy_loss
    assert POLICY_LOSSES.get("gmpo") is gmpo_policy_loss
    for name in POLICY_LOSSES:
        loss, stats = POLICY_LOSSES.get(name)(
            logp=logp, old_logp=old, advantages=adv, mask=mask, clip_low=0.2, clip_high=0.2
        )
        if name in RATIO_CLIP_LOSSES:  # CISPO's value is −A·log π, GMPO's uses the mean A
            assert loss.item() == pytest.approx(-2.0)
        assert {"clip_frac", "approx_kl", "ratio_mean", "ratio_max"} <= set(stats)
    # dual clip through the shared signature: ρ = 5, A = −1, c = 3 bounds the loss at 3
    logp, old, adv, mask = policy_inputs([5.0, 5.0], [-1.0, -1.0])
    for name in RATIO_CLIP_LOSSES:
        loss, stats = POLICY_LOSSES.get(name)(logp, old, adv, mask, clip_low=0.2, dual_clip=3.0)
        assert loss.item() == pytest.approx(3.0) and stats["dual_clip_frac"] == 1


def gspo_reference(logp, old, adv_seq, lengths, clip_low, clip_high):
    """Sequence-level GSPO: mean_i −min(s_i A_i, clip(s_i) A_i), s_i = exp(mean_t log ρ)."""
    losses = []
    for b, n in enumerate(lengths):
        if n == 0:
            continue
        s = torch.exp((logp[b, :n] - old[b, :n]).mean())
        a = float(adv_seq[b])
        losses.append(-torch.minimum(s * a, s.clamp(1 - clip_low, 1 + clip_high) * a))
    return torch.stack(losses).mean()


def random_sequences(seed: int, adv_seq: list[float]):
    """Five sequences of lengths 5, 1, 0, 3, 4: (lengths, mask, old, logp, adv [B], adv [B, T])."""
    g = torch.Generator().manual_seed(seed)
    lengths = [5, 1, 0, 3, 4]
    mask = torch.arange(5)[None, :] < torch.tensor(lengths)[:, None]
    old = torch.randn(5, 5, generator=g, dtype=torch.float64)
    logp = (old + 0.1 * torch.randn(5, 5, generator=g, dtype=torch.float64)).requires_grad_()
    adv = torch.tensor(adv_seq, dtype=torch.float64)
    return lengths, mask, old, logp, adv, torch.where(mask, adv[:, None], 0)


def assert_same_value_and_gradient(loss, ref, logp) -> None:
    (grad,) = torch.autograd.grad(loss, logp, retain_graph=True)
    (ref_grad,) = torch.autograd.grad(ref, logp)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(grad, ref_grad)


@pytest.mark.parametrize("clip", [0.5, 0.02])  # nothing clipped / some sequences clipped
def test_gspo_matches_sequence_level_reference(clip):
    lengths, mask, old, logp, adv_seq, adv = random_sequences(3, [1.0, -0.5, 2.0, -1.5, 0.7])
    loss, stats = gspo_policy_loss(logp, old, adv, mask, clip_low=clip, clip_high=clip)
    assert_same_value_and_gradient(
        loss, gspo_reference(logp, old, adv_seq, lengths, clip, clip), logp
    )
    assert (stats["clip_frac"] > 0) == (clip < 0.1)


def test_gspo_per_sequence_loss_is_not_scaled_by_length():
    # ratio 1: each sequence contributes −A_i whatever its length; a [B] advantage works too
    logp = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]]).bool()
    loss, _ = gspo_policy_loss(logp, logp.detach(), torch.tensor([2.0, 4.0]), mask)
    assert loss.item() == pytest.approx(-3.0)


@pytest.mark.parametrize("name", ["ppo_clip", "gspo", "cispo", "gmpo"])
def test_every_policy_loss_is_the_policy_gradient_at_ratio_one(name):
    # on-policy (ρ = 1) with one advantage per sequence, each loss's gradient is −A_i ∇ log π
    # averaged over the sequence's tokens (one sequence: token-mean = sequence mean)
    logp = torch.log(torch.tensor([[0.2, 0.5, 0.4]], dtype=torch.float64)).requires_grad_()
    adv = torch.full((1, 3), -1.5, dtype=torch.float64)
    loss, _ = POLICY_LOSSES.get(name)(logp, logp.detach(), adv, torch.ones(1, 3))
    (grad,) = torch.autograd.grad(loss, logp)
    torch.testing.assert_close(grad, torch.full((1, 3), 1.5 / 3, dtype=torch.float64))


def test_cispo_hand_worked_weights_keep_the_gradient_of_clipped_tokens():
    # ρ = 0.5, 1, 2 and A = 1, −1, 1: no lower bound (clip_low = 1) and a cap at 1.28, so the
    # weights are 0.5, 1, 1.28; ℓ = −Σ w A log π / 3, ∂ℓ/∂log π_t = −w_t A_t / 3
    logp, old, adv, mask = policy_inputs([0.5, 1.0, 2.0], [1.0, -1.0, 1.0])
    loss, stats = cispo_policy_loss(logp, old, adv, mask, clip_low=1.0, clip_high=0.28)
    (grad,) = torch.autograd.grad(loss, logp)
    want = torch.tensor([[-0.5 / 3, 1 / 3, -1.28 / 3]], dtype=torch.float64)
    torch.testing.assert_close(grad, want)
    value = -(torch.tensor([0.5, -1.0, 1.28], dtype=torch.float64) * logp.detach()).sum() / 3
    torch.testing.assert_close(loss, value)
    assert stats["clip_frac"].item() == pytest.approx(1 / 3)
    assert stats["clip_frac_high"].item() == pytest.approx(1 / 3)
    assert stats["clip_frac_low"].item() == 0
    # PPO drops the clipped token's gradient (ρ = 2 > 1.2 with A > 0); CISPO keeps it, capped
    ppo, _ = ppo_policy_loss(logp, old, adv, mask, clip_high=0.28)
    (ppo_grad,) = torch.autograd.grad(ppo, logp)
    assert ppo_grad[0, 2] == 0 and grad[0, 2] < 0
    # a floor: clip_low = 0.2 raises the weight of ρ = 0.5 to 0.8
    loss, stats = cispo_policy_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28)
    (grad,) = torch.autograd.grad(loss, logp)
    assert grad[0, 0].item() == pytest.approx(-0.8 / 3)
    assert stats["clip_frac_low"].item() == pytest.approx(1 / 3)


def test_gmpo_hand_worked_log_space_clip():
    # A = 1, log ρ = 0.2, 0.6, clip 0.4: the second token is clipped to 0.4 (no gradient);
    # r = exp((0.2 + 0.4) / 2) = e^0.3, ℓ = −e^0.3, ∂ℓ/∂log π = (−e^0.3 / 2, 0)
    e = math.exp
    logp, old, adv, mask = policy_inputs([e(0.2), e(0.6)], [1.0, 1.0])
    loss, stats = gmpo_policy_loss(logp, old, adv, mask, clip_low=0.4, clip_high=0.4)
    (grad,) = torch.autograd.grad(loss, logp)
    assert loss.item() == pytest.approx(-e(0.3))
    torch.testing.assert_close(grad, torch.tensor([[-e(0.3) / 2, 0.0]], dtype=torch.float64))
    assert stats["clip_frac_high"].item() == pytest.approx(0.5)
    # A = −1, log ρ = −0.6, 0.2: the pessimistic side is below, −0.6 → −0.4 (no gradient);
    # r = exp((−0.4 + 0.2) / 2) = e^−0.1, ℓ = +e^−0.1, ∂ℓ/∂log π = (0, e^−0.1 / 2)
    logp, old, adv, mask = policy_inputs([e(-0.6), e(0.2)], [-1.0, -1.0])
    loss, stats = gmpo_policy_loss(logp, old, adv, mask, clip_low=0.4, clip_high=0.4)
    (grad,) = torch.autograd.grad(loss, logp)
    assert loss.item() == pytest.approx(e(-0.1))
    torch.testing.assert_close(grad, torch.tensor([[0.0, e(-0.1) / 2]], dtype=torch.float64))
    assert stats["clip_frac_low"].item() == pytest.approx(0.5)


def gmpo_reference(logp, old, adv_seq, lengths, clip_low, clip_high):
    """GMPO by cases (Zhao et al. 2025, eq. 7): per sequence −A·exp(mean_t l_t), l_t = min(log ρ,
    ε_high) for A > 0, max(log ρ, −ε_low) for A < 0; the mean over non-empty sequences."""
    losses = []
    for b, n in enumerate(lengths):
        if n == 0:
            continue
        a = float(adv_seq[b])
        terms = []
        for t in range(n):
            lr = logp[b, t] - old[b, t]
            if a > 0:
                terms.append(torch.minimum(lr, torch.tensor(clip_high, dtype=lr.dtype)))
            elif a < 0:
                terms.append(torch.maximum(lr, torch.tensor(-clip_low, dtype=lr.dtype)))
            else:
                terms.append(lr * 0)
        losses.append(-a * torch.exp(torch.stack(terms).mean()))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("clip", [1.0, 0.05])  # nothing clipped / some tokens clipped
def test_gmpo_matches_reference(clip):
    lengths, mask, old, logp, adv_seq, adv = random_sequences(5, [1.0, -0.5, 2.0, -1.5, 0.0])
    loss, stats = gmpo_policy_loss(logp, old, adv, mask, clip_low=clip, clip_high=clip)
    assert_same_value_and_gradient(
        loss, gmpo_reference(logp, old, adv_seq, lengths, clip, clip), logp
    )
    assert (stats["clip_frac"] > 0) == (clip < 0.5)
    # a [B] advantage is the same thing
    loss_1d, _ = gmpo_policy_loss(logp, old, adv_seq, mask, clip_low=clip, clip_high=clip)
    torch.testing.assert_close(loss_1d, loss)


def test_value_loss_unclipped_and_clipped_hand_worked():
    values = torch.tensor([[1.0, 2.0, 9.0]], requires_grad=True)
    returns = torch.tensor([[0.0, 0.0, NAN]])
    mask = torch.tensor([[1, 1, 0]])
    loss, stats = value_loss(values, values.detach(), returns, mask)
    assert loss.item() == pytest.approx(0.5 * (1 + 4) / 2)
    assert stats["vf_clip_frac"] == 0
    # clip 0.2 around old = 0: (V=1,R=0): max(1, 0.04) = 1; (V=1,R=2): max(1, 3.24) = 3.24 (clipped,
    # no gradient); (V=0.1,R=1): inside the range, 0.81
    values = torch.tensor([[1.0, 1.0, 0.1]], requires_grad=True)
    returns = torch.tensor([[0.0, 2.0, 1.0]])
    loss, stats = value_loss(values, torch.zeros(1, 3), returns, torch.ones(1, 3), clip_range=0.2)
    assert loss.item() == pytest.approx(0.5 * (1 + 3.24 + 0.81) / 3)
    assert stats["vf_clip_frac"] == pytest.approx(1 / 3)
    loss.backward()  # ∂/∂V ½(V − R)² / 3 = (V − R) / 3 where unclipped
    torch.testing.assert_close(values.grad, torch.tensor([[1 / 3, 0.0, -0.9 / 3]]))


def test_explained_variance():
    g = torch.Generator().manual_seed(4)
    returns = torch.randn(3, 4, generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    values = torch.where(mask.bool(), returns, 1e6)  # padding ignored
    assert explained_variance(values, returns, mask) == pytest.approx(1.0)
    mean = returns[mask.bool()].mean()
    assert explained_variance(torch.full_like(returns, mean), returns, mask) == pytest.approx(0.0)
    assert math.isnan(explained_variance(returns, torch.ones(3, 4), mask))
