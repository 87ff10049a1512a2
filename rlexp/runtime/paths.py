"""Where the project's YAML lives: the repository's ``conf/`` and ``sweeps/`` folders."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = ROOT / "conf"  # Hydra's primary config directory (config.yaml, eval.yaml, groups)
SWEEPS_DIR = ROOT / "sweeps"  # sweeps/<name>.yaml, selectable as +sweep=<name>
