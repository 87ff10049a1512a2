"""Per-token KL estimators between the policy and the reference (theory.md §4; Schulman 2020).

With tokens sampled from π_θ and x = log π_ref − log π_θ (elementwise, any shape):
k1 = −x (unbiased, can be negative), k2 = x²/2 (biased, low variance),
k3 = exp(x) − x − 1 (unbiased, ≥ 0, low variance; GRPO's choice).

As loss terms their expected gradients differ from what their values estimate (theory.md §4):
E[∇k1] = 0 (so k1 in the loss is a config error), E[∇k2] = ∇KL(π_θ‖π_ref), but
E[∇k3] = ∇KL(π_ref‖π_θ), the forward KL. ``k3_plus`` keeps k3's value with k2's gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rlexp.runtime.registry import Registry

# k3 exponentiates x; beyond ±20 (a probability ratio of e^20 ≈ 5e8) the estimate is meaningless
# and soon overflows, so k3 clamps x to [−20, 20] (zero gradient outside; finite in float32 and
# bfloat16, not in float16, whose range ends at e^11).
K3_CLAMP = 20.0

KL_ESTIMATORS: Registry[Callable[[Tensor], Tensor]] = Registry("KL estimator")


@KL_ESTIMATORS.register("k1")
def _k1(x: Tensor) -> Tensor:
    return -x


@KL_ESTIMATORS.register("k2")
def _k2(x: Tensor) -> Tensor:
    return 0.5 * x.square()


@KL_ESTIMATORS.register("k3")
def _k3(x: Tensor) -> Tensor:
    x = x.clamp(-K3_CLAMP, K3_CLAMP)
    # expm1 keeps exp(x) - 1 - x accurate for small x; the clamp only removes rounding below 0.
    return (torch.expm1(x) - x).clamp(min=0)


@KL_ESTIMATORS.register("k3_plus")
def _k3_plus(x: Tensor) -> Tensor:
    """The value of k3, the gradient of k2 (straight through): as a loss term its expected
    gradient is ∇KL(π_θ‖π_ref), the KL that k3 estimates (theory.md §4)."""
    k2 = _k2(x)
    return _k3(x).detach() + (k2 - k2.detach())


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str) -> Tensor:
    """Elementwise KL(π_θ‖π_ref) estimate, same shape as ``logp``; differentiable in both inputs.

    ``kind`` is "k1", "k2", "k3" or "k3_plus" (see module docstring); k3 clamps x to [−20, 20]
    before exp.
    Unknown kinds raise ValueError listing the choices.
    """
    if kind not in KL_ESTIMATORS:
        raise ValueError(
            f"unknown KL estimator {kind!r}; choose one of: {', '.join(KL_ESTIMATORS)}"
        )
    return KL_ESTIMATORS.get(kind)(ref_logp - logp)
