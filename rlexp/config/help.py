"""``--help`` as users know it: the selectable options of each config group (the YAML files of
``conf/<group>/`` and the sweep files; never the typed schemas the files build on), a one-line
description and pointers. The resolver ``${rlexp.groups:<group,...|all>}`` renders the groups for
``hydra.help.template`` (conf/config.yaml, conf/eval.yaml)."""

from __future__ import annotations

from omegaconf import OmegaConf

from rlexp.config.sweeps import sweep_names
from rlexp.runtime.paths import CONF_DIR


def group_options() -> dict[str, list[str]]:
    """``{group: [option, ...]}`` for every folder of ``conf/`` (Hydra's own left out) and ``sweep``."""
    groups = {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(CONF_DIR.iterdir())
        if d.is_dir() and d.name != "hydra"
    }
    return groups | {"sweep": sweep_names()}


def groups_help(which: str = "all") -> str:
    """One line per group, ``group: a, b, c``; ``which`` is ``all`` or comma-separated names."""
    groups = group_options()
    names = list(groups) if which == "all" else [n.strip() for n in which.split(",")]
    width = max(len(n) for n in names)
    return "\n".join(f"  {n.ljust(width)}  {', '.join(groups[n])}" for n in names)


def register_help_resolver() -> None:
    OmegaConf.register_new_resolver("rlexp.groups", groups_help, replace=True)
