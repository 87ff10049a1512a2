"""Multi-step integer arithmetic with one worked step per operation.

Prompt ``"47+18+93="``; solution ``"47+18=65,65+93=158####158"``. Operators apply left to
right (only ``+`` and ``-``, so this agrees with Python's precedence); operands have exactly
``digits`` digits (0-9 when ``digits == 1``); results may be negative with ``-``.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass

from rlexp.tasks.base import ANSWER_MARKER, TASKS, Problem, Task

SUPPORTED_OPS = "+-"
_INT = re.compile(r"(-?)([0-9]+)")  # not \d: it also matches non-ASCII digits
# Below this many distinct prompts the space is enumerated and shuffled instead of sampled.
_ENUMERATE_BELOW = 100_000

Terms = tuple[tuple[int, ...], tuple[str, ...]]


def normalize_int(s: str) -> str:
    """``" 007 "`` → ``"7"``, ``"-0"`` → ``"0"``; non-integers are returned stripped."""
    s = s.strip()
    m = _INT.fullmatch(s)
    if m is None:
        return s
    digits = m.group(2).lstrip("0") or "0"  # no int(): huge strings must not raise
    return digits if digits == "0" else m.group(1) + digits


def render(numbers: tuple[int, ...], ops: tuple[str, ...], id: str = "") -> Problem:
    """Prompt, worked solution and answer for ``numbers[0] ops[0] numbers[1] ...``."""
    prompt = str(numbers[0])
    steps = []
    acc = numbers[0]
    for op, x in zip(ops, numbers[1:], strict=True):
        prompt += f"{op}{x}"
        new = acc + x if op == "+" else acc - x
        steps.append(f"{acc}{op}{x}={new}")
        acc = new
    answer = str(acc)
    return Problem(
        id=id, prompt=prompt + "=", solution=",".join(steps) + ANSWER_MARKER + answer, answer=answer
    )


def _operand_range(digits: int) -> range:
    return range(10) if digits == 1 else range(10 ** (digits - 1), 10**digits)


def _draw_terms(rng: random.Random, n: int, n_terms: int, digits: int, ops: str) -> list[Terms]:
    """``n`` distinct (numbers, operators) tuples, deterministic given ``rng``."""
    operands = _operand_range(digits)
    space = len(operands) ** n_terms * len(ops) ** (n_terms - 1)
    if n > space:
        raise ValueError(
            f"asked for {n} distinct problems but only {space} exist; make them harder"
        )
    if space < _ENUMERATE_BELOW:
        every = [
            (nums, o)
            for nums in itertools.product(operands, repeat=n_terms)
            for o in itertools.product(ops, repeat=n_terms - 1)
        ]
        rng.shuffle(every)
        return every[:n]
    seen: set[Terms] = set()
    drawn: list[Terms] = []
    while len(drawn) < n:
        nums = tuple(rng.choice(operands) for _ in range(n_terms))
        o = tuple(rng.choice(ops) for _ in range(n_terms - 1))
        if (nums, o) not in seen:
            seen.add((nums, o))
            drawn.append((nums, o))
    return drawn


def generate(
    n_terms: int, digits: int, ops: str, n_train: int, n_test: int, seed: int
) -> tuple[list[Problem], list[Problem]]:
    """Disjoint (train, test) splits fixed by ``seed``; the test split is drawn first,
    so it does not change with ``n_train``."""
    if n_terms < 2 or digits < 1:
        raise ValueError("need n_terms >= 2 and digits >= 1")
    if not ops or set(ops) - set(SUPPORTED_OPS):
        raise ValueError(f"ops must be a non-empty string of {SUPPORTED_OPS!r}, got {ops!r}")
    ops = "".join(sorted(set(ops)))  # "-+" and "+-" give the same task
    terms = _draw_terms(random.Random(seed), n_test + n_train, n_terms, digits, ops)
    test = [render(*t, id=f"arithmetic/test/{i}") for i, t in enumerate(terms[:n_test])]
    train = [render(*t, id=f"arithmetic/train/{i}") for i, t in enumerate(terms[n_test:])]
    return train, test


@dataclass
class ArithmeticTask(Task):
    """Integer answers: an optional minus sign then digits, leading zeros ignored."""

    def normalize_answer(self, s: str) -> str:
        return normalize_int(s)

    def parse_answer(self, s: str) -> str | None:
        s = s.strip()
        return normalize_int(s) if _INT.fullmatch(s) else None


@TASKS.register("arithmetic")
def make_arithmetic(
    n_terms: int = 3,
    digits: int = 2,
    ops: str = "+",
    n_train: int = 20000,
    n_test: int = 500,
    seed: int = 1234,
) -> ArithmeticTask:
    """The embedded default task; ``seed`` is the task's own seed, not the run seed."""
    params = dict(
        n_terms=n_terms, digits=digits, ops=ops, n_train=n_train, n_test=n_test, seed=seed
    )
    train, test = generate(**params)
    return ArithmeticTask(name="arithmetic", train=train, test=test, params=params)
