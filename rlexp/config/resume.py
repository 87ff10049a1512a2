"""``resume=true`` continues a run with the settings it was started with: its ``config.yaml``.

The saved config is the run's config; the command line may change only what does not change the
run (``RESUME_MAY_CHANGE``). Another key that differs is taken from the saved config when the
command line did not set it (a default that changed, an override left out), and is one error when
it did — before anything is written, so a refused resume leaves the run's files as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlexp.runtime.errors import ConfigError

# Keys (and sections) a resume may change: where and how it runs, how long, how it logs.
RESUME_MAY_CHANGE = ("resume", "steps", "threads", "device", "logger", "output_dir", "cache_dir")


def flat_items(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": 1, ...}``: the leaves of nested dicts by dotted key (an empty dict is a leaf)."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out |= flat_items(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def changed_keys(saved: DictConfig, current: DictConfig) -> list[str]:
    """Dotted keys whose values differ between two configs (missing on one side counts)."""
    a = flat_items(OmegaConf.to_container(saved, resolve=True))
    b = flat_items(OmegaConf.to_container(current, resolve=True))
    return sorted(k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>"))


def _mutable(key: str) -> bool:
    return key.split(".")[0] in RESUME_MAY_CHANGE


def _set_by(key: str, overrides: Sequence[str]) -> bool:
    """Did a command-line override (``a.b=1``, ``+a.b=1``, ``group=option``) set ``key``?"""
    for o in overrides:
        name = o.split("=", 1)[0].lstrip("+~").split("@")[0]
        if key == name or key.startswith(name + "."):
            return True
    return False


def resumed_config(cfg: DictConfig, run_dir: Path, overrides: Sequence[str] | None) -> DictConfig:
    """The config of a resumed run: the saved ``config.yaml`` with the command line's changes of
    ``RESUME_MAY_CHANGE`` keys. ``overrides`` are the command line's (None: unknown, e.g. the
    compose API, so every other difference counts as set). Without a saved config (a run killed
    before it wrote one, or a first start with resume=true) ``cfg`` is returned unchanged."""
    path = run_dir / "config.yaml"
    if not path.exists():
        return cfg
    saved = OmegaConf.load(path)
    changed = [k for k in changed_keys(saved, cfg) if not _mutable(k)]
    refused = [k for k in changed if overrides is None or _set_by(k, overrides)]
    if refused:
        a = flat_items(OmegaConf.to_container(saved, resolve=True))
        b = flat_items(OmegaConf.to_container(cfg, resolve=True))
        listed = ", ".join(
            f"{k} ({a.get(k, '<absent>')} -> {b.get(k, '<absent>')})" for k in refused
        )
        raise ConfigError(
            f"resume=true: {path} was run with other settings: {listed}; resume with the run's "
            f"own settings (only {', '.join(RESUME_MAY_CHANGE)} may change), or start a new run"
        )
    now = OmegaConf.to_container(OmegaConf.masked_copy(cfg, list(RESUME_MAY_CHANGE)), resolve=True)
    return OmegaConf.merge(saved, now)
