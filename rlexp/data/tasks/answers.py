"""Final answers of free-text math solutions: where they are, and their canonical forms.

Two formats, looked up by name in ``ANSWER_FORMATS``:

* ``hash_number`` (GSM8K): the number right after the *last* ``####``; ``"#### $1,080.50."`` →
  ``"1080.5"``; ``"#### 1e3"`` → ``"1000"``. Text after the number (a unit, a new line) is
  ignored; anything else there (``"#### five"``, ``"#### 3/4"``) is unparsable.
* ``boxed`` (MATH): the content of the *last* ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces
  matched; ``"so $\\boxed{\\dfrac{1}{2}}$."`` → ``"\\frac{1}{2}"`` after ``normalize_latex``.

Unparsable text gives ``None`` (reward 0), never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from rlexp.runtime.registry import Registry

HASH_MARKER = "####"
BOXED_MARKER = "\\boxed{"
_BOX_COMMANDS = ("\\boxed", "\\fbox")
# sign, optional $, digits with thousands commas, optional decimals, an optional exponent of at
# most 3 digits; not followed by more of a number (a digit, a fraction bar, decimals, a longer
# exponent), so "3/4" is not read as 3, nor "1e3" as 1.
_NUMBER = re.compile(
    r"([-+]?)\s*\$?\s*((?:\d[\d,]*)?(?:\.\d+)?)(?:[eE]([-+]?\d{1,3}))?(?![\d/]|\.\d|[eE][-+]?\d)"
)
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![a-zA-Z])")  # not \rightarrow
_SPACING = re.compile(r"\\[!,;: ]")  # \! \, \; \: and "\ "


def normalize_number(s: str) -> str | None:
    """Canonical decimal of the number at the start of ``s``, or ``None`` if there is none.

    Strips whitespace, ``$`` and thousands commas; drops leading zeros and trailing decimal
    zeros: ``" $1,000.50"`` → ``"1000.5"``, ``"18.0"`` → ``"18"``, ``"-0"`` → ``"0"``.
    """
    m = _NUMBER.match(s.strip())
    if m is None or not any(c.isdigit() for c in m.group(2)):
        return None
    number = m.group(2).replace(",", "")
    if m.group(3):  # "1e3" → "1000", "2.5E-1" → "0.25"
        number = format(Decimal(f"{number}e{m.group(3)}"), "f")
    whole, _, frac = number.partition(".")
    whole, frac = whole.lstrip("0") or "0", frac.rstrip("0")
    digits = f"{whole}.{frac}" if frac else whole
    return digits if digits == "0" or m.group(1) != "-" else "-" + digits


def after_last_hash(text: str) -> str | None:
    """The text after the last ``####``, or ``None`` without one."""
    _, sep, tail = text.rpartition(HASH_MARKER)
    return tail if sep else None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces matched), or of a
    bare ``\\boxed 5``; ``None`` when there is none or its braces never close."""
    start, command = max((text.rfind(c), c) for c in _BOX_COMMANDS)
    if start < 0:
        return None
    i = start + len(command)
    if text.startswith(" ", i):  # "\boxed 5": up to the next space or $
        return re.split(r"[\s$]", text[i + 1 :], maxsplit=1)[0] or None
    if not text.startswith("{", i):
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{" and text[j - 1] != "\\":
            depth += 1
        elif text[j] == "}" and text[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def normalize_latex(s: str) -> str | None:
    """A light canonical form of a LaTeX answer, ``None`` when nothing is left.

    Removes whitespace, ``\\left``/``\\right``, the spacing commands ``\\! \\, \\; \\: \\ ``
    and a trailing ``.``; ``\\dfrac``/``\\tfrac`` → ``\\frac``. Equivalent forms beyond these
    (``0.5`` vs ``\\frac12``) still differ.
    """
    s = _SPACING.sub("", _LEFT_RIGHT.sub("", s))
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = "".join(s.split()).rstrip(".")
    return s or None


@dataclass(frozen=True)
class AnswerFormat:
    """Where a final answer sits in a text and how it is compared.

    ``locate(text)`` returns the raw answer text (``None`` without the marker) and
    ``normalize(raw)`` its canonical form (``None`` when unparsable).
    """

    name: str
    marker: str  # shown in error messages: what a solution must contain
    locate: Callable[[str], str | None]
    normalize: Callable[[str], str | None]

    def extract(self, text: str) -> str | None:
        """Canonical final answer of ``text`` (a completion or a worked solution), or ``None``."""
        raw = self.locate(text)
        return None if raw is None else self.normalize(raw)


ANSWER_FORMATS: Registry[AnswerFormat] = Registry("answer format")
for _fmt in (
    AnswerFormat("hash_number", HASH_MARKER, after_last_hash, normalize_number),
    AnswerFormat("boxed", BOXED_MARKER + "}", last_boxed, normalize_latex),
):
    ANSWER_FORMATS.register(_fmt.name)(_fmt)
