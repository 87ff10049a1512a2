"""Problems, the task interface (problems + verifier) and the task registry."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlexp.runtime.registry import Registry

ANSWER_MARKER = "####"


@dataclass(frozen=True)
class Problem:
    """One verifiable problem.

    ``solution`` is the SFT target completion (worked steps, marker, final answer);
    ``answer`` is the gold final answer, already normalised.
    """

    id: str
    prompt: str
    solution: str
    answer: str
    source: str = ""  # where it was read, e.g. "data/train.jsonl line 12" (errors name it)
    # the dataset row's other columns (e.g. a difficulty or reference length), for rewards
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Task:
    """A named pair of fixed splits plus a verifier.

    The final answer is the text after the *last* ``marker``. Subclasses override
    ``normalize_answer`` (canonical form) and ``parse_answer`` (``None`` when unparsable).
    """

    name: str
    train: list[Problem]
    test: list[Problem]
    params: dict[str, Any] = field(default_factory=dict)
    marker: str = ANSWER_MARKER

    def normalize_answer(self, s: str) -> str:
        """Canonical form used to compare answers; by default whitespace is collapsed."""
        return " ".join(s.split())

    def parse_answer(self, s: str) -> str | None:
        """Normalised answer from the raw text after the marker, or ``None`` if unparsable."""
        s = self.normalize_answer(s)
        return s or None

    def extract_answer(self, completion: str) -> str | None:
        """Normalised answer after the last marker; ``None`` without a parsable answer."""
        _, sep, tail = completion.rpartition(self.marker)
        if not sep:
            return None
        return self.parse_answer(tail)

    def demonstration_nll(self, problem: Problem) -> float:
        """``-log P(clean solution | prompt)`` under the task's own demonstrations (nats).

        0 for noiseless data; a model that imitates noisy demonstrations perfectly has exactly
        this held-out loss on the clean solution, so it is the floor SFT converges to.
        """
        return 0.0

    def is_well_formed(self, completion: str) -> bool:
        """The marker is present and followed by a parsable answer."""
        return self.extract_answer(completion) is not None

    def is_correct(self, completion: str, problem: Problem) -> bool:
        """The verifier: the extracted answer equals the gold answer after normalisation."""
        answer = self.extract_answer(completion)
        return answer is not None and answer == self.normalize_answer(problem.answer)


TaskFactory = Callable[..., Task]
TASKS: Registry[TaskFactory] = Registry("task")
DEFAULT_ALPHABET = "0123456789+-*=,# \n"
# The characters of the tiny model's character tokenizer (rlexp.models.tokenizer).
# Free text (GSM8K, MATH): the default's characters first, then the rest of printable ASCII
# (letters, punctuation, $ \\ { } ..., tab); anything else (é, π) is <unk>.
TEXT_ALPHABET = DEFAULT_ALPHABET + "".join(
    c for c in string.printable if c not in DEFAULT_ALPHABET and c not in "\r\x0b\x0c"
)
# Per task name; tasks not listed use DEFAULT_ALPHABET (arithmetic's).
CHAR_ALPHABETS: dict[str, str] = {}


def build_task(name: str, **params: Any) -> Task:
    """Build a registered task: ``build_task("arithmetic", n_terms=4)``."""
    return TASKS.get(name)(**params)
