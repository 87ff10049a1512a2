"""``resume=true`` continues a run with the settings it was started with: its ``config.yaml``.

The saved config is the run's config; the command line may change only what does not change the
run (``RESUME_MAY_CHANGE``). Another key that differs is taken from the saved config when the
command line did not set it (a default that changed, an override left out), and is one error when
it did — before anything is written, so a refused resume leaves the run's files as they were.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlexp.runtime.errors import ConfigError, check
from rlexp.runtime.multirun import override_key

# Keys (and sections) a resume may change: where and how it runs, how long, how it logs.
RESUME_MAY_CHANGE = ("resume", "steps", "threads", "device", "logger", "output_dir", "cache_dir")


def holds_run(run_dir: Path) -> bool:
    """Did a run start in ``run_dir``? Its ``run_info.json`` has a start time (written before any
    compute), or it left metrics or checkpoints. A Hydra job directory holds ``.hydra/`` from the
    start, and a run refused by a config error its config.yaml and a failed run_info.json."""
    if (run_dir / "checkpoints").is_dir() or (run_dir / "metrics.jsonl").is_file():
        return True
    try:
        return "started" in json.loads((run_dir / "run_info.json").read_text())
    except (OSError, ValueError):
        return False


def check_resume_target(run_dir: Path, sweep_dir: Path | None = None) -> None:
    """``rlexp-train resume=true``: the directory named must hold a run to continue, so that a
    typo'd path is one error, not a fresh run started there. In a multirun the sweep directory
    must hold one member's run; a member that never started starts now. (``rlexp.train.run``
    itself, called by rlexp-study per seed, resumes a run if there is one, else starts it.)"""
    if sweep_dir is not None:
        check(
            any(holds_run(member) for member in sweep_dir.iterdir() if member.is_dir()),
            f"resume=true: the sweep directory {sweep_dir} holds no run to resume (no member "
            "started); check hydra.sweep.dir, or drop resume=true to start the sweep",
        )
        return
    check(
        run_dir.is_dir(),
        f"resume=true: output_dir={run_dir} does not exist; check the path, or drop resume=true "
        "to start a new run",
    )
    check(
        holds_run(run_dir),
        f"resume=true: output_dir={run_dir} holds no run to resume (no run_info.json of a "
        "started run, metrics.jsonl or checkpoints/); check the path, or drop resume=true",
    )


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
        name = override_key(o)
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
