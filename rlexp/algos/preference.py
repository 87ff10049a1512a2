"""Preference losses on paired sequence log-probs (theory.md §5): DPO's sigmoid and IPO."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rlexp.runtime.registry import Registry


def _dpo_sigmoid(h: Tensor, beta: float) -> Tensor:
    """−log σ(β·h) (Rafailov et al. 2023), computed as softplus(−β·h) to stay finite."""
    return torch.nn.functional.softplus(-beta * h)


def _ipo(h: Tensor, beta: float) -> Tensor:
    """(h − 1/(2β))² (Azar et al. 2023): regress the log-ratio gap onto a finite target."""
    return (h - 1 / (2 * beta)).square()


PairLoss = Callable[[Tensor, float], Tensor]


DPO_KINDS: Registry[PairLoss] = Registry("DPO loss kind")
DPO_KINDS.register("sigmoid")(_dpo_sigmoid)
DPO_KINDS.register("ipo")(_ipo)


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
    kind: str = "sigmoid",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Pairwise preference loss (theory.md §5), to minimise; mean over the ``[B]`` pairs.

    Inputs are sequence log-probs ``[B]``, each summed over its completion's tokens (EOS included)
    of the chosen y_w and rejected y_l completion of one prompt x:

        h = (log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x))
        sigmoid (DPO, Rafailov et al. 2023):  ℓ = −log σ(β·h)      (log 2 at h = 0)
        ipo     (IPO, Azar et al. 2023):      ℓ = (h − 1/(2β))²

    Differentiable in the policy log-probs only (reference log-probs are detached). Stats are
    detached 0-d means over pairs of the implicit rewards r = β(log π_θ − log π_ref):
    reward_chosen, reward_rejected, reward_margin (= β·h) and accuracy (fraction with β·h > 0).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    loss_fn = DPO_KINDS.get(kind)
    chosen = policy_chosen_logps - ref_chosen_logps.detach()
    rejected = policy_rejected_logps - ref_rejected_logps.detach()
    h = chosen - rejected
    loss = loss_fn(h, beta).mean()
    margin = (beta * h).detach()
    stats = {
        "reward_chosen": (beta * chosen).detach().mean(),
        "reward_rejected": (beta * rejected).detach().mean(),
        "reward_margin": margin.mean(),
        "accuracy": (margin > 0).to(margin.dtype).mean(),
    }
    return loss, stats
