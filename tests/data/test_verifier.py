"""``task.verifier`` (issue 16 item 6): MATH's answers compared by value with math-verify, so
``0.5`` and ``\\frac{1}{2}`` agree (they used to differ after the light LaTeX normalisation);
GSM8K keeps the exact comparison of canonical numbers; a bad name is a config error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlexp.data.tasks import build_task
from rlexp.data.tasks.base import Problem
from rlexp.data.tasks.equivalence import math_equal
from rlexp.runtime.errors import ConfigError
from rlexp.trainers.sft_base import sft_key
from tests.conftest import compose_cfg
from tests.data.test_math_data import MATH


@pytest.mark.parametrize(
    ("gold", "answer", "equal"),
    [
        ("\\frac{1}{2}", "0.5", True),
        ("\\frac{1}{2}", "1/2", True),
        ("\\{1, 2\\}", "\\{2, 1\\}", True),
        ("x + 1", "1 + x", True),
        ("\\sqrt{2}", "2^{1/2}", True),
        ("\\frac{1}{2}", "0.51", False),
        ("3", "4", False),
        ("3", "", False),  # nothing to parse: not equal, no error
    ],
)
def test_math_equal_hand_checked(gold: str, answer: str, equal: bool) -> None:
    assert math_equal(gold, answer) is equal


def _math_task(tmp_path: Path, **settings):
    rows = [{"problem": "Half of one?", "solution": "It is $\\boxed{\\frac{1}{2}}$."}]
    path = tmp_path / "half.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return build_task("math", train_file=str(path), test_file=str(path), **settings)


def test_math_scores_an_equivalent_answer_right_and_exact_does_not(tmp_path: Path) -> None:
    task = _math_task(tmp_path)
    problem: Problem = task.test[0]
    assert task.verifier == "math_verify"
    assert task.is_correct("so \\boxed{0.5}", problem)
    assert task.is_correct("\\boxed{\\dfrac{1}{2}}", problem)  # the canonical forms already agree
    assert not task.is_correct("\\boxed{0.25}", problem)
    assert not task.is_correct("no box at all: 0.5", problem)
    exact = _math_task(tmp_path, verifier="exact")
    assert not exact.is_correct("so \\boxed{0.5}", problem)
    assert exact.is_correct("\\boxed{\\dfrac{1}{2}}", problem)


def test_gsm8k_stays_exact_and_a_bad_verifier_is_a_config_error() -> None:
    assert (
        compose_cfg(["task=gsm8k", "task.train_file=x", "task.test_file=y"]).task.verifier
        == "exact"
    )
    with pytest.raises(ConfigError, match="task.verifier=sympy is unknown"):
        build_task("math", **MATH, verifier="sympy")


def test_the_verifier_does_not_change_the_sft_base() -> None:
    files = [f"task.{k}={v}" for k, v in MATH.items()]
    key = sft_key(compose_cfg(["task=math", *files]))
    assert sft_key(compose_cfg(["task=math", *files, "task.verifier=exact"])) == key
