"""Sweep files: the YAML configs in the repository's ``sweeps/`` folder, as the ``sweep`` group.

``rlexp-train -m +sweep=lambda_ablation`` composes ``sweeps/lambda_ablation.yaml`` on top of the
run config; the file fixes the grid (``hydra.sweeper.params``), the W&B group (``logger.group``),
the launcher and the run sizes. Every file is registered in Hydra's ConfigStore at the global
package, from a path computed from this module, so the group resolves from any working directory
(``hydra.searchpath`` entries would be relative to the cwd, and a search-path root could not map
the folder ``sweeps/`` to the group name ``sweep``).
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from rlexp.runtime.paths import SWEEPS_DIR


def exact_div(total: int, parts: int) -> int:
    """``${rlexp.div:128,${algorithm.group_size}}``: total / parts, which must divide exactly.

    The group-size sweep keeps the number of sampled completions per step fixed, so
    ``prompts_per_step = budget / group_size``.
    """
    total, parts = int(total), int(parts)
    if parts <= 0 or total % parts:
        raise ValueError(f"rlexp.div: {total} is not divisible by {parts}")
    return total // parts


def mul(a: int, b: int) -> int:
    """``${rlexp.mul:8,${algorithm.group_size}}``: a minibatch that scales with the group size."""
    return int(a) * int(b)


def sweep_names() -> list[str]:
    """Names of the sweep files (``sweeps/<name>.yaml``), sorted."""
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


def register_sweeps(cs: ConfigStore | None = None) -> None:
    """Store every ``sweeps/<name>.yaml`` as option ``<name>`` of the group ``sweep``."""
    OmegaConf.register_new_resolver("rlexp.div", exact_div, replace=True)
    OmegaConf.register_new_resolver("rlexp.mul", mul, replace=True)
    cs = cs or ConfigStore.instance()
    for name in sweep_names():
        node = OmegaConf.load(SWEEPS_DIR / f"{name}.yaml")
        cs.store(group="sweep", name=name, node=node, package="_global_")
