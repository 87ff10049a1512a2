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
    with pytest.raises(ValueError, match="choose one of: k1, k2, k3, k3_plus"):
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


def _expected_gradient(kind: str, theta: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """E_{o∼π_θ}[∇_θ k(o)] exactly: Σ_o π_θ(o) ∇_θ k(log π_θ(o), log q(o)), the sampling
    distribution held fixed (a loss term is differentiated through log π_θ only)."""
    theta = theta.clone().requires_grad_(True)
    logp = theta.log_softmax(0)
    per_token = kl_estimate(logp, q.log(), kind)
    weights = logp.exp().detach()
    (weights * per_token).sum().backward()
    return theta.grad


def test_expected_gradients_of_the_estimators_as_loss_terms():
    """k1: 0; k2 and k3_plus: ∇KL(π‖ref); k3: ∇KL(ref‖π) (theory.md §4), exactly, on a
    5-token categorical in float64."""
    theta = torch.tensor([0.3, -0.2, 1.1, 0.0, -0.7], dtype=torch.float64)
    q = torch.tensor([0.3, 0.3, 0.2, 0.1, 0.1], dtype=torch.float64)

    def grad_of(fn) -> torch.Tensor:
        t = theta.clone().requires_grad_(True)
        fn(t.softmax(0)).backward()
        return t.grad

    reverse = grad_of(lambda p: (p * (p / q).log()).sum())  # ∇KL(π‖ref)
    forward = grad_of(lambda p: (q * (q / p).log()).sum())  # ∇KL(ref‖π)
    assert not torch.allclose(reverse, forward, atol=1e-3)
    torch.testing.assert_close(
        _expected_gradient("k1", theta, q), torch.zeros(5, dtype=torch.float64), atol=1e-15, rtol=0
    )
    torch.testing.assert_close(_expected_gradient("k2", theta, q), reverse, atol=1e-14, rtol=0)
    torch.testing.assert_close(_expected_gradient("k3", theta, q), forward, atol=1e-14, rtol=0)
    torch.testing.assert_close(_expected_gradient("k3_plus", theta, q), reverse, atol=1e-14, rtol=0)


def test_k3_plus_reports_k3_and_differentiates_like_k2():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    ref = torch.tensor([-1.5, -0.5])
    value = kl_estimate(logp, ref, "k3_plus")
    torch.testing.assert_close(value.detach(), kl_estimate(logp.detach(), ref, "k3"))
    value.sum().backward()
    torch.testing.assert_close(logp.grad, logp.detach() - ref)  # d/dlogp (x²/2), x = ref − logp
