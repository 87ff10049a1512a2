"""Rewards: exact match, format, weighted sums, never raising on malformed completions."""

import pytest

from rlexp.data.tasks import Problem, build_task
from rlexp.rollout.rewards import REWARDS, is_correct, score_components, weighted_sum


@pytest.fixture(scope="module")
def task():
    return build_task("arithmetic", n_train=5, n_test=5)


P = Problem(id="p", prompt="47+18+93=", solution="47+18=65,65+93=158####158", answer="158")
COMPLETIONS = [
    "47+18=65,65+93=158####158",  # right
    "####0158",  # right after normalisation
    "47+18=65,65+93=157####157",  # wrong, well formed
    "47+18=65,65+93=158",  # no marker
    "####15x",  # garbage after marker
    "",
    "####-",
]


def test_registered():
    assert {"exact_match", "format"} <= set(REWARDS)


def test_exact_match_and_format(task):
    problems = [P] * len(COMPLETIONS)
    assert REWARDS.get("exact_match")(COMPLETIONS, problems, task) == [1, 1, 0, 0, 0, 0, 0]
    assert REWARDS.get("format")(COMPLETIONS, problems, task) == [1, 1, 1, 0, 0, 0, 0]
    assert is_correct(COMPLETIONS, problems, task) == [True, True] + [False] * 5


def test_weighted_sum_and_components(task):
    problems = [P] * len(COMPLETIONS)
    weights = {"exact_match": 1.0, "format": 0.1}
    parts = score_components(COMPLETIONS, problems, task, weights)
    assert parts == {"exact_match": [1, 1, 0, 0, 0, 0, 0], "format": [1, 1, 1, 0, 0, 0, 0]}
    assert weighted_sum(parts, weights) == pytest.approx([1.1, 1.1, 0.1, 0, 0, 0, 0])
    assert weighted_sum(score_components([], [], task, weights), weights) == []


def test_per_problem_gold(task):
    problems = task.test[:3]
    completions = [p.solution for p in problems]
    completions[1] = "####" + str(int(problems[1].answer) + 1)
    assert REWARDS.get("exact_match")(completions, problems, task) == [1.0, 0.0, 1.0]


def test_errors_are_clear(task):
    with pytest.raises(KeyError, match="exact_match"):  # an unknown reward lists the choices
        score_components(["####1"], [P], task, {"nope": 1.0})
    with pytest.raises(ValueError):
        REWARDS.get("format")(["####1"], [], task)
