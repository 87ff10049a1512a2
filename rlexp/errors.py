"""Errors that stop a run before any compute with one clear line (see ``rlexp.train.main_guard``).

They live in this dependency-free module so that any part (tasks, data loaders) can raise them.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot run as asked; the message names the keys to change."""


class DataError(ConfigError):
    """A data file that cannot be used; the message names the file, and the line when one is bad."""
