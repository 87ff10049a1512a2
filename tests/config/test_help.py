"""``--help``: the groups' selectable options only (no typed schemas), a description, and
rlexp-eval's own options; ``--help`` and tab completion never import torch (issue 16, item 3;
their time is benchmarks/bench_cli.py's)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlexp.config.algorithms import ALGORITHM_SCHEMAS
from rlexp.config.help import group_options, groups_help
from rlexp.runtime.paths import CONF_DIR
from rlexp.trainers import TRAINERS

HEAVY = ("torch", "transformers", "rlexp.trainers", "rlexp.train", "pandas")


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
    study = subprocess.run([bin_dir / "rlexp-study", "--help"], capture_output=True, text=True)
    assert study.stdout.startswith("rlexp-study: the Maj@K / Pass@K study"), study.stderr[-2000:]
    assert "study:" in study.stdout.split("== Config (")[1]  # the composed config, study keys
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


def test_every_trainer_kind_has_its_schema() -> None:
    assert set(ALGORITHM_SCHEMAS) == set(TRAINERS.names())
    for kind, schema in ALGORITHM_SCHEMAS.items():
        assert schema.trainer == kind


def _modules_after(entry: str, *argv: str, env: dict[str, str] | None = None) -> list[str]:
    """The heavy modules loaded when ``rlexp.cli.<entry>`` has handled ``argv`` (it exits); the
    command's own output must have come first."""
    code = (
        "import atexit, sys\n"
        f"atexit.register(lambda: print('LOADED', [m for m in {HEAVY!r} if m in sys.modules]))\n"
        f"sys.argv = ['rlexp', *{list(argv)!r}]\n"
        f"from rlexp.cli import {entry}\n"
        f"{entry}()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ | (env or {})
    )
    assert out.returncode == 0, out.stderr[-2000:]
    printed, loaded = out.stdout.rsplit("LOADED", 1)
    assert printed.strip(), f"rlexp.cli.{entry} {argv} printed nothing"
    return ast.literal_eval(loaded.strip())


@pytest.mark.slow  # four CLI processes
def test_help_and_completion_import_no_torch() -> None:
    assert _modules_after("train", "--help") == []
    assert _modules_after("evaluate", "--help") == []
    assert _modules_after("study", "--help") == []
    completion = {"COMP_LINE": "rlexp-train algorithm=", "COMP_POINT": "22"}
    assert _modules_after("train", "-sc", "query=bash", env=completion) == []
    out = subprocess.run(  # the completion lists the group's options
        [sys.executable, "-c", "from rlexp.cli import train; train()", "-sc", "query=bash"],
        capture_output=True,
        text=True,
        env=os.environ | completion,
    )
    assert "algorithm=grpo" in out.stdout.split() and "algorithm=rl_schema" not in out.stdout
