"""Mathematical equivalence of two final answers (``task.verifier=math_verify``, MATH's default):
math-verify (Hugging Face's verifier, the one TRL's and open-r1's accuracy rewards use) parses
both answers as LaTeX or plain expressions with SymPy and compares the results, so ``0.5``,
``\\frac{1}{2}`` and ``1/2`` agree, as do ``\\{1, 2\\}`` and ``\\{2, 1\\}``.

Its own timeouts use SIGALRM, which works only in the main thread and would interfere with the
run's signal handling; they are off here (the answers are a completion's last ``\\boxed{}``,
bounded by ``rollout.max_new_tokens``). Parses are cached per answer text.
"""

from __future__ import annotations

import logging
from functools import lru_cache

VERIFIERS = ("exact", "math_verify")

logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" on every call


@lru_cache(maxsize=65536)
def _parsed(answer: str) -> tuple:
    from math_verify import parse  # SymPy's import is slow: only tasks that verify pay it

    return tuple(parse(f"${answer}$", parsing_timeout=None))


def math_equal(gold: str, answer: str) -> bool:
    """Do ``gold`` and ``answer`` (final answers, LaTeX without ``$``) denote the same value?"""
    from math_verify import verify

    parsed_gold, parsed = _parsed(gold), _parsed(answer)
    if not parsed_gold or not parsed:
        return False
    return bool(verify(list(parsed_gold), list(parsed), timeout_seconds=None))
