"""rlexp as a real package: a wheel built from the tree carries its configs and sweep files, and an
installed rlexp runs from an empty directory (issue 16, item 1)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*cmd, "-w", str(out), str(ROOT)], check=True, capture_output=True)
    (path,) = out.glob("rlexp-*.whl")
    return path


def test_the_wheel_carries_every_config_and_sweep_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("conf", "sweeps"):
        for path in (ROOT / folder).rglob("*.yaml"):
            assert f"rlexp/_bundled/{path.relative_to(ROOT).as_posix()}" in names


@pytest.mark.slow  # a venv, an install and two CLI runs: ~1 minute
def test_installed_wheel_runs_from_an_empty_directory(wheel: Path, tmp_path: Path) -> None:
    # a fresh venv holding only the wheel; its dependencies come from this interpreter's
    # site-packages on PYTHONPATH (no .pth processing there, so this checkout's editable rlexp
    # stays invisible: `import rlexp` finds the wheel's copy)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    deps = sysconfig.get_paths()["purelib"]
    env = os.environ | {"PYTHONPATH": deps, "WANDB_MODE": "disabled"}
    env.pop("RLEXP_CACHE_DIR", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run(
        [python, "-c", "import rlexp, rlexp.runtime.paths as p; print(rlexp.__file__, p.CONF_DIR)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(env_dir) in where and "_bundled" in where, where
    train = env_dir / "bin" / "rlexp-train"
    helped = subprocess.run([train, "--help"], cwd=empty, env=env, capture_output=True, text=True)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert "algorithm" in helped.stdout
    run = subprocess.run(
        [train, *TINY, "steps=2", "eval_every=2", "logger=none", f"cache_dir={tmp_path / 'c'}"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert list(empty.glob("runs/*/*/metrics.jsonl")), "the run wrote no metrics under ./runs"
