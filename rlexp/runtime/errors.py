"""Errors that stop a run before any compute with one clear line (see ``rlexp.train.main_guard``).

They live in this dependency-free module so that any part (tasks, data loaders) can raise them.
"""

from __future__ import annotations

import json
from typing import Any


class ConfigError(ValueError):
    """A configuration that cannot run as asked; the message names the keys to change."""


class DataError(ConfigError):
    """A data file that cannot be used; the message names the file, and the line when one is bad."""


def json_object(line: str, where: str, error: type[Exception] = DataError) -> dict[str, Any]:
    """One JSONL line as a dict; otherwise ``error`` with a message that starts with ``where``
    (the file and the line)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise error(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(row, dict):
        raise error(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row
