"""KL estimators k1/k2/k3 (theory.md §4): hand values, sign, and Monte-Carlo unbiasedness."""

from __future__ import annotations

import math

import pytest
import torch

from rlexp.algos.kl import kl_estimate


def test_hand_values():
    # π_θ = 0.5, π_ref = 0.25: x = log 0.5; k1 = log 2, k2 = (log 2)²/2, k3 = 0.5 + log 2 − 1
    logp = torch.tensor([math.log(0.5)], dtype=torch.float64)
    ref = torch.tensor([math.log(0.25)], dtype=torch.float64)
    ln2 = math.log(2)
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(ln2)
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(ln2**2 / 2)
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx(0.5 + ln2 - 1)
    for kind in ("k1", "k2", "k3"):
        assert kl_estimate(logp, logp, kind).item() == 0.0


def test_k3_nonnegative_and_finite_even_for_extreme_ratios():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(1000, generator=g) * 5, torch.tensor([-1e4, 1e4, 1e-9, -1e-9])])
    logp = torch.zeros_like(x)
    k3 = kl_estimate(logp, x, "k3")
    assert (k3 >= 0).all() and torch.isfinite(k3).all()
    assert kl_estimate(torch.zeros(1), torch.tensor([1e4]), "k3").item() == pytest.approx(
        math.exp(20) - 21
    )
    low = kl_estimate(logp.bfloat16(), x.bfloat16(), "k3")
    assert low.dtype == torch.bfloat16 and (low >= 0).all() and torch.isfinite(low).all()


def test_k3_gradient():
    # d/dlogp [e^x − x − 1] with x = ref − logp is 1 − e^x
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    ref = torch.tensor([-1.5, -0.5])
    kl_estimate(logp, ref, "k3").sum().backward()
    torch.testing.assert_close(logp.grad, 1 - torch.exp(ref - logp.detach()))


def test_unknown_kind():
    with pytest.raises(ValueError, match="choose one of: k1, k2, k3"):
        kl_estimate(torch.zeros(1), torch.zeros(1), "k4")


def test_monte_carlo_k1_k3_unbiased_and_k3_lower_variance():
    # tokens sampled from the policy p; reference q; exact KL(p‖q) = Σ p log(p/q)
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=torch.float64)
    q = torch.tensor([0.3, 0.3, 0.2, 0.1, 0.1], dtype=torch.float64)
    true_kl = float((p * (p / q).log()).sum())
    g = torch.Generator().manual_seed(0)
    n = 20000
    tokens = torch.multinomial(p, n, replacement=True, generator=g)
    logp, ref = p.log()[tokens], q.log()[tokens]
    spread = {}
    for kind in ("k1", "k3"):
        est = kl_estimate(logp, ref, kind)
        se = est.std().item() / math.sqrt(n)
        assert abs(est.mean().item() - true_kl) < 4 * se, kind
        spread[kind] = est.var().item()
    assert spread["k3"] < spread["k1"]
    assert (kl_estimate(logp, ref, "k1") < 0).any()  # k1 can be negative, k3 never
