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


def check(ok: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``ok``: one line per config check."""
    if not ok:
        raise ConfigError(message)


def check_unit_interval(name: str, value: float) -> None:
    check(0.0 <= value <= 1.0, f"{name}={value} must lie in [0, 1]")
