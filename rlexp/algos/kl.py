"""Per-token KL estimators between the policy and the reference (theory.md §4; Schulman 2020).

With tokens sampled from π_θ and x = log π_ref − log π_θ (elementwise, any shape):
k1 = −x (unbiased, can be negative), k2 = x²/2 (biased, low variance),
k3 = exp(x) − x − 1 (unbiased, ≥ 0, low variance; GRPO's choice).
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


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str) -> Tensor:
    """Elementwise KL(π_θ‖π_ref) estimate, same shape as ``logp``; differentiable in both inputs.

    ``kind`` is "k1", "k2" or "k3" (see module docstring); k3 clamps x to [−20, 20] before exp.
    Unknown kinds raise ValueError listing the choices.
    """
    if kind not in KL_ESTIMATORS:
        raise ValueError(
            f"unknown KL estimator {kind!r}; choose one of: {', '.join(KL_ESTIMATORS)}"
        )
    return KL_ESTIMATORS.get(kind)(ref_logp - logp)
