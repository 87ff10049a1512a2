"""Final-answer extraction and normalisation of free-text math solutions, on hand-worked cases."""

import pytest

from rlexp.data.tasks.answers import (
    ANSWER_FORMATS,
    after_last_hash,
    last_boxed,
    normalize_latex,
    normalize_number,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("72", "72"),
        (" 72\n", "72"),
        ("1,200", "1200"),
        ("$1,080.50", "1080.5"),
        ("18.0", "18"),
        ("18.00", "18"),
        ("0.50", "0.5"),
        (".5", "0.5"),
        ("007", "7"),
        ("-3", "-3"),
        ("- $4", "-4"),
        ("-0", "0"),
        ("+5", "5"),
        ("72.", "72"),  # a sentence's full stop
        ("72 apples", "72"),  # a unit after the number is ignored
        ("72\nQuestion: next", "72"),
        ("50%", "50"),
        ("five", None),
        ("3/4", None),  # a fraction is not read as its numerator
        ("3.5/2", None),
        ("", None),
        ("$", None),
        ("-", None),
        ("the answer is 5", None),
    ],
)
def test_normalize_number(text: str, expected: str | None) -> None:
    assert normalize_number(text) == expected


def test_normalize_number_is_idempotent() -> None:
    for text in ("1,200", "$0.50", "-7.250", "007"):
        once = normalize_number(text)
        assert once is not None and normalize_number(once) == once


def test_after_last_hash() -> None:
    assert after_last_hash("a #### 1\nb #### 2") == " 2"
    assert after_last_hash("no marker") is None
    assert after_last_hash("####") == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $\\boxed{5}$.", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
        ("\\boxed{\\frac{\\sqrt{3}}{2}} then", "\\frac{\\sqrt{3}}{2}"),
        ("first \\boxed{1}, finally \\boxed{2}", "2"),  # the last one
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces are content
        ("\\fbox{7}", "7"),
        ("\\boxed{3} and \\fbox{4}", "4"),
        ("$\\boxed 9$", "9"),
        ("\\boxed{}", ""),
        ("\\boxed{\\frac{1}{2}", None),  # never closes
        ("no box", None),
        ("\\boxed", None),
        ("\\boxedx", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\frac{1}{2}", "\\frac{1}{2}"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\tfrac12", "\\frac12"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("x \\rightarrow 0", "x\\rightarrow0"),  # \right is not stripped out of \rightarrow
        ("10\\!000", "10000"),
        ("1\\,000", "1000"),
        ("5.", "5"),
        (" 2\\sqrt{2} ", "2\\sqrt{2}"),
        ("", None),
        (" . ", None),
    ],
)
def test_normalize_latex(text: str, expected: str | None) -> None:
    assert normalize_latex(text) == expected


def test_formats_extract_from_a_whole_text() -> None:
    gsm8k, boxed = ANSWER_FORMATS["hash_number"], ANSWER_FORMATS["boxed"]
    assert gsm8k.extract("6*8=48 pencils.\n#### 48") == "48"
    assert gsm8k.extract("#### 4 #### $1,000") == "1000"
    assert gsm8k.extract("48") is None
    assert boxed.extract("so $x = \\boxed{\\dfrac{1}{2}}$.") == "\\frac{1}{2}"
    assert boxed.extract("#### 5") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### 1e3", "1000"),  # was read as 1
        ("#### 2.5E-1", "0.25"),
        ("#### 1.5e2 apples", "150"),
        ("#### 1e3000", None),  # an exponent of 4 digits is not a GSM8K answer
        ("#### 12eggs", "12"),
    ],
)
def test_hash_number_reads_scientific_notation(text: str, expected: str | None) -> None:
    from rlexp.data.tasks.answers import after_last_hash, normalize_number

    assert normalize_number(after_last_hash(text)) == expected
