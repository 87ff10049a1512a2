"""Every ``theory.md §N`` citation in the repository resolves to a section of docs/theory.md.

Pure text scanning (no torch): citations are found in *.py, *.md and *.yaml files under the
scanned folders and in README.md. A citation ``§N`` needs a heading ``## N.``; ``§N.M`` needs
``### N.M``. Ranges and lists that follow a citation (``§1–3``, ``§1–3, §5``) are checked too.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.md"
SCANNED_DIRS = ("rlexp", "analysis", "conf", "sweeps", "docs", "benchmarks", "tests")
SCANNED_FILES = ("README.md",)
SUFFIXES = {".py", ".md", ".yaml"}

CITATION = re.compile(r"theory\.md ?§ ?(\d+)(?:\.(\d+))?")
# what may follow a citation: "–3" / "-3" (a range end) or ", §5" / " and §5" (a list item)
TAIL = re.compile(r"\s*(?:([–-])\s*§?|(?:,|and)\s*§)\s*(\d+)(?:\.(\d+))?")
SECTION = re.compile(r"^## (\d+)\.", re.MULTILINE)
SUBSECTION = re.compile(r"^### (\d+)\.(\d+)\b", re.MULTILINE)


def _sources() -> list[Path]:
    files = [ROOT / name for name in SCANNED_FILES if (ROOT / name).is_file()]
    for folder in SCANNED_DIRS:
        base = ROOT / folder
        if base.is_dir():
            files += [
                p
                for p in sorted(base.rglob("*"))
                if p.suffix in SUFFIXES and p.is_file() and "__pycache__" not in p.parts
            ]
    return files


def _refs(line: str, match: re.Match[str]) -> tuple[str, list[tuple[int, int | None]]]:
    """The cited text and every (section, subsection) it names; a range a–b names a..b."""
    sec, sub = match.groups()
    refs = [(int(sec), int(sub) if sub else None)]
    end = match.end()
    while tail := TAIL.match(line, end):
        dash, sec, sub = tail.groups()
        if dash and sub is None:  # a range: every section strictly between its two ends too
            refs += [(n, None) for n in range(refs[-1][0] + 1, int(sec))]
        refs.append((int(sec), int(sub) if sub else None))
        end = tail.end()
    return line[match.start() : end], refs


def _citations() -> list[tuple[str, int, str, tuple[int, int | None]]]:
    """(file relative to the root, line, cited text, (section, subsection or None))."""
    found = []
    for path in _sources():
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(ROOT).as_posix()
        for lineno, line in enumerate(text.splitlines(), start=1):
            for match in CITATION.finditer(line):
                cited, refs = _refs(line, match)
                found += [(rel, lineno, cited, ref) for ref in refs]
    return found


def test_theory_page_exists_and_is_self_contained() -> None:
    assert THEORY.is_file(), f"{THEORY.relative_to(ROOT)} is missing"
    text = THEORY.read_text(encoding="utf-8")
    assert SECTION.search(text), "docs/theory.md has no '## N.' section heading"
    assert "../shared" not in text, "docs/theory.md must not point outside the repository"


def test_every_theory_citation_resolves() -> None:
    text = THEORY.read_text(encoding="utf-8")
    sections = {int(n) for n in SECTION.findall(text)}
    subsections = {(int(a), int(b)) for a, b in SUBSECTION.findall(text)}
    cites = _citations()
    assert cites, "no 'theory.md §N' citation found: the scan is broken, the test would be vacuous"
    missing = sorted(
        {
            (rel, lineno, cited, sec if sub is None else f"{sec}.{sub}")
            for rel, lineno, cited, (sec, sub) in cites
            if sec not in sections or (sub is not None and (sec, sub) not in subsections)
        },
        key=lambda m: (m[0], m[1], str(m[3])),
    )
    dangling = [f"{rel}:{lineno}: {cited!r} cites §{ref}" for rel, lineno, cited, ref in missing]
    assert not dangling, (
        f"{len(dangling)} citation(s) of sections missing from docs/theory.md "
        f"(sections present: {sorted(sections)}):\n" + "\n".join(dangling)
    )
