"""The run's configuration: typed schemas (``schema``), the checks before compute (``validate``)
and the sweep files (``sweeps``)."""

from __future__ import annotations

from rlexp.config.help import register_help_resolver
from rlexp.config.schema import register_schemas
from rlexp.config.sweeps import register_sweeps


def register_configs() -> None:
    """Everything Hydra composes from besides ``conf/``: the schemas and ``sweeps/<name>.yaml``
    as the group ``sweep`` (``+sweep=<name>``). Entry points call it before ``hydra.main``."""
    register_schemas()
    register_sweeps()
    register_help_resolver()
