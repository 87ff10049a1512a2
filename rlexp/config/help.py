"""``--help`` as users know it: the selectable options of each config group (the YAML files of
``conf/<group>/`` and the sweep files; never the typed schemas the files build on), a one-line
description and pointers. The resolver ``${rlexp.groups:<group,...|all>}`` renders the groups for
``hydra.help.template`` (conf/config.yaml, conf/eval.yaml); ``app_help`` fills that template
itself (Hydra's own ``--help`` lists every config group of its repository first, deep-copying it
for each: 1.5 s of a 1.9 s ``--help``, ``benchmarks/bench_cli.py``)."""

from __future__ import annotations

import string

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

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


def groups_help(*which: str) -> str:
    """One line per group, ``group: a, b, c``; ``which``: ``all`` (or nothing) or group names
    (``${rlexp.groups:task,logger}`` passes two)."""
    groups = group_options()
    names = list(groups) if which in ((), ("all",)) else [n.strip() for n in which]
    width = max(len(n) for n in names)
    return "\n".join(f"  {n.ljust(width)}  {', '.join(groups[n])}" for n in names)


def register_help_resolver() -> None:
    OmegaConf.register_new_resolver("rlexp.groups", groups_help, replace=True)


def app_help(config_name: str, overrides: list[str]) -> str:
    """``hydra.help.template`` of the config ``overrides`` compose, with ``$CONFIG`` the composed
    config (unresolved, as Hydra prints it)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    template = cfg.hydra.help.template
    with open_dict(cfg):
        del cfg["hydra"]
    return string.Template(template).safe_substitute(CONFIG=OmegaConf.to_yaml(cfg))
