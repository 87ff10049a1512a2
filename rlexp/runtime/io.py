"""Atomic file writes: a reader (or a run killed mid-write) sees the old file or the new one whole,
never a half-written one. The text goes to ``<name>.tmp`` beside the target, then replaces it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rlexp.runtime.errors import DataError, json_object

log = logging.getLogger(__name__)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through ``<path>.tmp`` and an atomic rename. A failed write (a
    full disk) leaves ``path`` as it was and no ``.tmp`` behind, and its error names ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, f"could not write {path}: {err.strerror or err}") from err


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """``json.dumps(data, indent=indent)`` written to ``path`` atomically (``atomic_write_text``)."""
    atomic_write_text(path, json.dumps(data, indent=indent))


def read_run_record(path: str | Path, on_corrupt: str = "raise") -> dict[str, Any]:
    """A run's JSON record (``run_info.json``) as a dict; ``{}`` when the file does not exist.

    An unreadable one (truncated, not JSON, not an object) is a ``DataError`` naming the file, or,
    with ``on_corrupt="replace"`` (a writer that rewrites the record anyway), a warning naming it
    and ``{}``: a new record replaces it, nothing else of the run is touched."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return json_object(path.read_text(), f"{path}: unreadable run record")
    except (DataError, UnicodeDecodeError, OSError) as err:
        if on_corrupt != "replace":
            raise DataError(str(err) if isinstance(err, DataError) else f"{path}: {err}") from None
        log.warning("%s; it is replaced by a new record", err)
        return {}


def jsonl_objects(
    path: Path, where: Callable[[int], str], error: type[Exception] = DataError
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where(line number), object)`` per non-blank line of a JSONL file; a line that is not
    UTF-8 or not a JSON object raises ``error`` naming it."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            here = where(lineno)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise error(f"{here}: not valid UTF-8") from None
            if line.strip():
                yield here, json_object(line, here, error)
