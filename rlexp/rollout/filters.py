"""What a rollout batch keeps and how its scores are shaped before the advantage: DAPO's
dynamic sampling (groups with both right and wrong answers) and overlong shaping."""

from __future__ import annotations

import torch
from torch import Tensor

from rlexp.algos.shaping import overlong_penalty
from rlexp.rollout.batch import RolloutBatch, last_token_rewards


def add_overlong_penalty(batch: RolloutBatch, max_len: int, cache_len: int) -> None:
    """DAPO's overlong shaping folded into the outcome score (and so into the last token)."""
    lengths = batch.completion_mask.sum(1)
    batch.scores = batch.scores + overlong_penalty(lengths, max_len, cache_len)
    batch.token_rewards = last_token_rewards(batch.scores, batch.completion_mask)


def informative_groups(batch: RolloutBatch) -> Tensor:
    """Indices of the samples whose group has both right and wrong answers (by the verifier,
    never by the shaped reward): DAPO's dynamic sampling keeps only these."""
    _, inverse = torch.unique(batch.group_ids, return_inverse=True)
    n = int(inverse.max()) + 1 if len(batch) else 0
    right = torch.zeros(n, device=inverse.device).index_add_(0, inverse, batch.correct.float())
    size = torch.zeros(n, device=inverse.device).index_add_(
        0, inverse, torch.ones_like(right[inverse])
    )
    mixed = (right > 0) & (right < size)
    return torch.nonzero(mixed[inverse]).flatten()
