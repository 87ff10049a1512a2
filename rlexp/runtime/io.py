"""Atomic file writes: a reader (or a run killed mid-write) sees the old file or the new one whole,
never a half-written one. The text goes to ``<name>.tmp`` beside the target, then replaces it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through ``<path>.tmp`` and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """``json.dumps(data, indent=indent)`` written to ``path`` atomically (``atomic_write_text``)."""
    atomic_write_text(path, json.dumps(data, indent=indent))
