"""``--help``: the groups' selectable options only (no typed schemas), a description, and
rlexp-eval's own options (issue 16, item 3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rlexp.config.help import group_options, groups_help
from rlexp.runtime.paths import CONF_DIR


def test_the_groups_are_the_yaml_files_and_the_sweeps() -> None:
    groups = group_options()
    assert "hydra" not in groups and "sweep" in groups
    for name, options in groups.items():
        assert options and not any(o.endswith("_schema") for o in options), name
    assert set(groups["algorithm"]) == {p.stem for p in Path(CONF_DIR, "algorithm").glob("*.yaml")}
    assert groups_help("task").strip().startswith("task")
    assert "algorithm" not in groups_help("task")


@pytest.mark.slow  # two CLI processes
def test_help_of_both_commands() -> None:
    bin_dir = Path(sys.executable).parent
    train = subprocess.run([bin_dir / "rlexp-train", "--help"], capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-2000:]
    assert train.stdout.startswith("rlexp-train: one run")
    assert "_schema" not in train.stdout.split("== Config ==")[0]
    assert "cispo" in train.stdout and "lambda_ablation_quick" in train.stdout
    ev = subprocess.run([bin_dir / "rlexp-eval", "--help"], capture_output=True, text=True)
    assert ev.returncode == 0, ev.stderr[-2000:]
    groups = ev.stdout.split("== Config groups")[1].split("== Config (")[0]
    assert "task" in groups and "algorithm" not in groups and "sweep" not in groups


@pytest.mark.slow  # a CLI process
def test_cfg_job_resolve_prints_the_composed_config() -> None:
    bin_dir = Path(sys.executable).parent
    cmd = [bin_dir / "rlexp-train", "--cfg", "job", "--resolve", "algorithm=ppo"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "name: ppo" in out.stdout and "output_dir: null" in out.stdout
