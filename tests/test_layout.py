"""The package layout the README's code map describes: subpackages by phase, entry points at the
top, and pure math in ``rlexp.algos`` (the layer contracts themselves: ``make lint``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {
    "__init__.py",
    "__main__.py",
    "api.py",
    "cli.py",
    "train.py",
    "evaluate.py",
    "study.py",
}
SUBPACKAGES = {"algos", "config", "data", "evaluation", "models", "rollout", "runtime", "trainers"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_only_entry_points_sit_directly_under_rlexp() -> None:
    modules = {p.name for p in (ROOT / "rlexp").glob("*.py")}
    assert modules <= ENTRY_POINTS, f"move into a subpackage: {sorted(modules - ENTRY_POINTS)}"
    folders = {p.name for p in (ROOT / "rlexp").iterdir() if (p / "__init__.py").exists()}
    assert folders == SUBPACKAGES


def test_algos_never_communicate_nor_read_config() -> None:
    files = sorted((ROOT / "rlexp" / "algos").glob("*.py"))
    assert len(files) >= 5
    for path in files:
        bad = {
            name
            for name in _imports(path)
            if name.startswith(("torch.distributed", "omegaconf", "hydra", "rlexp.config"))
            or name.startswith(("rlexp.runtime.distributed", "rlexp.trainers", "rlexp.rollout"))
        }
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
