"""Registered reward functions and their weighted combination.

Every reward has one signature, ``fn(completions, problems, task, **params) -> list[float]``
(one float per completion), and scores a completion without a parsable answer 0.0, never raising.
Accuracy is logged from ``is_correct`` so it stays separate from a shaped reward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from rlexp.data.tasks.base import Problem, Task
from rlexp.runtime.registry import Registry


class RewardFn(Protocol):
    def __call__(
        self, completions: Sequence[str], problems: Sequence[Problem], task: Task, **params: Any
    ) -> list[float]: ...


REWARDS: Registry[RewardFn] = Registry("reward")


def _check(completions: Sequence[str], problems: Sequence[Problem]) -> None:
    if len(completions) != len(problems):
        raise ValueError(f"{len(completions)} completions but {len(problems)} problems")


def is_correct(completions: Sequence[str], problems: Sequence[Problem], task: Task) -> list[bool]:
    """Per-sample verifier outcome (for accuracy / pass@k), independent of the reward."""
    _check(completions, problems)
    return [task.is_correct(c, p) for c, p in zip(completions, problems, strict=True)]


@REWARDS.register("exact_match")
def exact_match(
    completions: Sequence[str], problems: Sequence[Problem], task: Task, **params: Any
) -> list[float]:
    """1.0 when the extracted answer equals the gold answer, else 0.0."""
    return [float(ok) for ok in is_correct(completions, problems, task)]


@REWARDS.register("format")
def format_reward(
    completions: Sequence[str], problems: Sequence[Problem], task: Task, **params: Any
) -> list[float]:
    """1.0 when the answer marker is followed by a parsable answer, else 0.0."""
    _check(completions, problems)
    return [float(task.is_well_formed(c)) for c in completions]


def score_components(
    completions: Sequence[str],
    problems: Sequence[Problem],
    task: Task,
    weights: Mapping[str, float],
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, list[float]]:
    """Unweighted scores of each named reward, ``{name: [score per completion]}``."""
    params = params or {}
    return {
        name: REWARDS.get(name)(completions, problems, task, **params.get(name, {}))
        for name in weights
    }


def weighted_sum(
    scores: Mapping[str, Sequence[float]], weights: Mapping[str, float]
) -> list[float]:
    """``sum_k weights[k] * scores[k][i]`` for each sample ``i``."""
    columns = [[weights[name] * s for s in scores[name]] for name in weights]
    return [sum(row) for row in zip(*columns, strict=True)] if columns else []
