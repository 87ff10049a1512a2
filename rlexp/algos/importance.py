"""Truncated importance sampling of the sampler/trainer mismatch (Yao et al. 2025, "Your efficient
RL framework secretly brings you off-policy RL training"; verl's rollout importance sampling).

When the tokens were sampled by an engine whose probabilities differ from the trainer's
(π_sampler ≠ π_old: bf16 numerics, another kernel, nucleus truncation), the policy gradient of the
trainer's surrogate is re-weighted by the ratio of the two, truncated at a cap C (theory.md §3):

* ``token``:    w_t = min(π_old(y_t) / π_sampler(y_t), C)
* ``sequence``: w   = min(Π_t π_old(y_t) / π_sampler(y_t), C), the same for every token

Weights carry no gradient. Scaling a token's advantage by w > 0 scales its clipped surrogate by w
(min(r·wA, clip(r)·wA) = w·min(r·A, clip(r)·A)), so the weights are applied to the advantages.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlexp.algos.masks import real_mask

ROLLOUT_IS_LEVELS = ("none", "token", "sequence")
LOG_RATIO_CLAMP = 20.0  # |log w| beyond 20 is a broken sample, not a weight; keeps exp finite


@torch.no_grad()
def truncated_is_weights(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, level: str, cap: float
) -> Tensor:
    """Weights ``[B, T]`` (0 on padding) of ``level`` ``token`` or ``sequence``, truncated at ``cap``."""
    real = real_mask(mask)
    log_w = torch.where(real, trainer_logp - sampler_logp, 0).double()
    if level == "sequence":
        log_w = log_w.sum(1, keepdim=True).expand_as(log_w)
    elif level != "token":
        raise ValueError(f"rollout IS level {level!r}: use token or sequence")
    w = log_w.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).exp().clamp(max=cap)
    return torch.where(real, w, 0).to(trainer_logp.dtype)
