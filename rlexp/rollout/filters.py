"""What a rollout batch keeps and how its scores are shaped before the advantage: DAPO's
dynamic sampling (groups with both right and wrong answers), ScaleRL's zero-variance filter of
the loss, ScaleRL's dropping of solved prompts, and overlong shaping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from rlexp.algos.shaping import overlong_penalty
from rlexp.rollout.batch import RolloutBatch, last_token_rewards


def add_overlong_penalty(batch: RolloutBatch, max_len: int, cache_len: int) -> None:
    """DAPO's overlong shaping folded into the outcome score (and so into the last token)."""
    lengths = batch.completion_mask.sum(1)
    batch.scores = batch.scores + overlong_penalty(lengths, max_len, cache_len)
    batch.token_rewards = last_token_rewards(batch.scores, batch.completion_mask)


def varied_score_rows(group_ids: Tensor, scores: Tensor) -> Tensor:
    """``[B]`` bool: the samples whose group's scores are not all equal (ScaleRL's zero-variance
    filter keeps only these in the policy loss; a group of one never varies)."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n = int(inverse.max()) + 1 if len(group_ids) else 0
    lowest = torch.full((n,), float("inf"), device=scores.device).scatter_reduce(
        0, inverse, scores.float(), "amin"
    )
    highest = torch.full((n,), float("-inf"), device=scores.device).scatter_reduce(
        0, inverse, scores.float(), "amax"
    )
    return (highest > lowest)[inverse]


def without_zero_variance_groups(batch: RolloutBatch) -> tuple[RolloutBatch, float]:
    """The batch for the policy loss with the tokens of zero-variance groups masked out (they
    leave the aggregation's denominators too), and the share of samples masked. The rows stay,
    so minibatch sizes are unchanged; unlike dynamic sampling nothing is resampled."""
    keep = varied_score_rows(batch.group_ids, batch.scores)
    mask = batch.completion_mask * keep[:, None].to(batch.completion_mask.dtype)
    return replace(batch, completion_mask=mask), 1.0 - float(keep.float().mean())


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


def solved_prompts(
    correct: Tensor, problems: Sequence[int], group_size: int, threshold: float
) -> list[int]:
    """The problems whose group of ``group_size`` samples (rows ``[i·G, (i+1)·G)`` of ``correct``
    belong to ``problems[i]``) has a pass rate of at least ``threshold`` (ScaleRL's
    no-positive-resampling: ``data.drop_solved_above``, 0.9)."""
    if len(problems) == 0:
        return []
    pass_rate = correct.float().view(len(problems), group_size).mean(1)
    return [p for p, rate in zip(problems, pass_rate.tolist(), strict=True) if rate >= threshold]
