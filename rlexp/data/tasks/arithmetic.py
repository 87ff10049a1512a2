"""Multi-step integer arithmetic with one worked step per operation.

Prompt ``"47+18+93="``; solution ``"47+18=65,65+93=158####158"``. Operators apply left to
right (only ``+`` and ``-``, so this agrees with Python's precedence); operands have exactly
``digits`` digits (0-9 when ``digits == 1``); results may be negative with ``-``.

``carry_slip`` imitates imperfect demonstrations: in a *training* solution, each carry of an
addition step is forgotten with this probability (``58+67=115`` becomes ``58+67=15`` if both are
dropped), and the worked chain continues from the slipped value, as a person's would. The gold
``answer`` stays correct, so the verifier (and RL's reward) is unaffected; test solutions are
always clean. SFT on such data converges to a model that reproduces the slips: its pass@1 is
then limited by the data, not by the SFT budget (theory.md §7).

``never_carry_from`` adds a blind spot, the hard tier of the study: a column whose sum (carry-in
included) is at least this value never carries in a training solution (``17``: 8+9, 9+9, 7+9+1,
...), as if the demonstrator never learned those facts. Test problems that need such a carry are
outside the demonstrations' support: a model that imitates them never solves those, whatever
it samples, while slips on the other carries stay random and fixable. ``0`` turns it off.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass

from rlexp.data.tasks.base import ANSWER_MARKER, TASKS, Problem, Task

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


def add_with_slips(
    a: int, b: int, slip: float, rng: random.Random | None, never_carry_from: int = 0
) -> int:
    """``a + b`` by schoolbook digit addition, each carry dropped with probability ``slip`` and
    always when its column sums to ``never_carry_from`` or more (``0``: never); non-negative
    operands; exact when both are off."""
    blind = never_carry_from > 0
    if (slip <= 0 or rng is None) and not blind or a < 0 or b < 0:
        return a + b
    total, carry, place = 0, 0, 1
    while a or b or carry:
        s = a % 10 + b % 10 + carry
        total += (s % 10) * place
        carry = s // 10
        if carry and (blind and s >= never_carry_from or rng is not None and rng.random() < slip):
            carry = 0
        a, b, place = a // 10, b // 10, place * 10
    return total


def count_carries(a: int, b: int, never_carry_from: int = 0) -> tuple[int, int]:
    """Carries of the schoolbook addition ``a + b`` (non-negative operands): ``(ordinary,
    blind)``, where a blind carry's column sums to ``never_carry_from`` or more (``0``: none)."""
    carries, blind, carry = 0, 0, 0
    while a or b or carry:
        s = a % 10 + b % 10 + carry
        carry = int(s >= 10)
        if carry and never_carry_from > 0 and s >= never_carry_from:
            blind += 1
        else:
            carries += carry
        a, b = a // 10, b // 10
    return carries, blind


def render(
    numbers: tuple[int, ...],
    ops: tuple[str, ...],
    id: str = "",
    carry_slip: float = 0.0,
    rng: random.Random | None = None,
    never_carry_from: int = 0,
) -> Problem:
    """Prompt, worked solution and answer for ``numbers[0] ops[0] numbers[1] ...``; with
    ``carry_slip > 0`` or ``never_carry_from`` the *solution* may forget carries (the answer
    stays correct)."""
    prompt = str(numbers[0])
    steps = []
    acc = shown = numbers[0]
    for op, x in zip(ops, numbers[1:], strict=True):
        prompt += f"{op}{x}"
        acc = acc + x if op == "+" else acc - x
        new = (
            add_with_slips(shown, x, carry_slip, rng, never_carry_from) if op == "+" else shown - x
        )
        steps.append(f"{shown}{op}{x}={new}")
        shown = new
    return Problem(
        id=id,
        prompt=prompt + "=",
        solution=",".join(steps) + ANSWER_MARKER + str(shown),
        answer=str(acc),
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
    n_terms: int,
    digits: int,
    ops: str,
    n_train: int,
    n_test: int,
    seed: int,
    carry_slip: float = 0.0,
    never_carry_from: int = 0,
) -> tuple[list[Problem], list[Problem]]:
    """Disjoint (train, test) splits fixed by ``seed``; the test split is drawn first,
    so it does not change with ``n_train``. Slips touch only training solutions."""
    if not 0.0 <= carry_slip <= 1.0:
        raise ValueError(f"carry_slip must be in [0, 1], got {carry_slip}")
    if never_carry_from != 0 and not 10 <= never_carry_from <= 19:
        raise ValueError(
            f"never_carry_from must be 0 (off) or a column sum in 10..19, got {never_carry_from}"
        )
    if n_terms < 2 or digits < 1:
        raise ValueError("need n_terms >= 2 and digits >= 1")
    if not ops or set(ops) - set(SUPPORTED_OPS):
        raise ValueError(f"ops must be a non-empty string of {SUPPORTED_OPS!r}, got {ops!r}")
    ops = "".join(sorted(set(ops)))  # "-+" and "+-" give the same task
    terms = _draw_terms(random.Random(seed), n_test + n_train, n_terms, digits, ops)
    test = [render(*t, id=f"arithmetic/test/{i}") for i, t in enumerate(terms[:n_test])]
    slip_rng = random.Random(f"{seed}/slips")
    train = [
        render(
            *t,
            id=f"arithmetic/train/{i}",
            carry_slip=carry_slip,
            rng=slip_rng,
            never_carry_from=never_carry_from,
        )
        for i, t in enumerate(terms[n_test:])
    ]
    return train, test


@dataclass
class ArithmeticTask(Task):
    """Integer answers: an optional minus sign then digits, leading zeros ignored."""

    def normalize_answer(self, s: str) -> str:
        return normalize_int(s)

    def parse_answer(self, s: str) -> str | None:
        s = s.strip()
        return normalize_int(s) if _INT.fullmatch(s) else None

    def demonstration_nll(self, problem: Problem) -> float:
        """Each ordinary carry of the clean chain survives with probability ``1 - carry_slip``,
        a blind one (``never_carry_from``) never: ``-log P = (carries) · -log(1 - carry_slip)``,
        ``inf`` when the chain needs a blind carry (the problem is outside the demonstrations'
        support)."""
        slip = self.params.get("carry_slip", 0.0)
        blind_from = self.params.get("never_carry_from", 0)
        if slip <= 0 and blind_from <= 0:
            return 0.0
        carries, blind, acc = 0, 0, None
        for sign, digits in re.findall(r"([+-]?)(\d+)", problem.prompt):
            x = int(digits)
            if acc is None:
                acc = x
            elif sign == "-":
                acc -= x
            else:
                if acc >= 0:
                    c, b = count_carries(acc, x, blind_from)
                    carries, blind = carries + c, blind + b
                acc += x
        if blind or (carries and slip >= 1):
            return math.inf
        return -carries * math.log1p(-slip) if carries else 0.0


@TASKS.register("arithmetic")
def make_arithmetic(
    n_terms: int = 3,
    digits: int = 2,
    ops: str = "+",
    n_train: int = 20000,
    n_test: int = 500,
    seed: int = 1234,
    carry_slip: float = 0.0,
    never_carry_from: int = 0,
) -> ArithmeticTask:
    """The embedded default task; ``seed`` is the task's own seed, not the run seed."""
    params = dict(
        n_terms=n_terms,
        digits=digits,
        ops=ops,
        n_train=n_train,
        n_test=n_test,
        seed=seed,
        carry_slip=carry_slip,
        never_carry_from=never_carry_from,
    )
    train, test = generate(**params)
    return ArithmeticTask(name="arithmetic", train=train, test=test, params=params)
