"""Where the project's YAML lives: the repository's ``conf/`` and ``sweeps/`` folders in a
checkout (an editable install), or their copies inside the installed package (a wheel:
``setup.py`` copies both into ``rlexp/_bundled/``), and where SFT bases are cached by default."""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_dir

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = Path(__file__).resolve().parents[1] / "_bundled"  # rlexp/_bundled in a wheel


def _yaml_dir(name: str) -> Path:
    """The checkout's ``<name>/`` when this module runs from a checkout (its ``pyproject.toml`` is
    next to ``rlexp/``), else the copy shipped in the package."""
    checkout = ROOT / name
    return checkout if (ROOT / "pyproject.toml").is_file() and checkout.is_dir() else BUNDLED / name


CONF_DIR = _yaml_dir("conf")  # Hydra's primary config directory (config.yaml, eval.yaml, groups)
SWEEPS_DIR = _yaml_dir("sweeps")  # sweeps/<name>.yaml, selectable as +sweep=<name>
# SFT bases: the user's cache directory (XDG_CACHE_HOME/rlexp on Linux), whatever the cwd
DEFAULT_CACHE_DIR = user_cache_dir("rlexp")
