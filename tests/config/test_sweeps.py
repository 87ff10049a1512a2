"""Sweeps: every sweep file composes and validates at every grid point; threads per launcher;
a tiny joblib multirun (2 jobs) whose failing members (a config error, a NaN) do not stop the
others, through the ``rlexp-train`` console script; the sweep summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from wandb.proto import wandb_internal_pb2 as pb

from rlexp.config import register_configs
from rlexp.config.sweeps import SWEEPS_DIR, exact_div, sweep_names
from rlexp.config.validate import validate
from rlexp.runtime.multirun import (
    THREAD_ENV,
    apply_threads,
    cpu_count,
    format_summary,
    launcher_threads,
    summarize_sweep,
)
from tests.conftest import CONF_DIR, TINY, sweep_grid
from tests.wandb_offline import _payloads, read_offline_run

RLEXP_TRAIN = Path(sys.executable).parent / "rlexp-train"
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
QUICK_SWEEPS = {
    "lambda_ablation",
    "group_size",
    "group_size_fixed_prompts",
    "algorithms",
    "scalerl_loo",
}


def _compose(overrides: list[str], hydra: bool = False):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=hydra)


def test_sweep_files_are_the_sweep_group() -> None:
    names = sweep_names()
    for name in ("lambda_ablation", "group_size", "group_size_fixed_prompts", "algorithms"):
        assert name in names and f"{name}_quick" in names
    assert {"majk_passk", "majk_passk_quick"} <= set(names)
    assert all((SWEEPS_DIR / f"{n}.yaml").exists() for n in names)


@pytest.mark.parametrize("name", sweep_names())
def test_every_grid_point_composes_and_validates(name: str) -> None:
    cfg = _compose([f"+sweep={name}", "output_dir=unused"], hydra=True)
    assert cfg.logger.group, "a sweep fixes its W&B group"
    assert name.replace("_quick", "") in cfg.hydra.sweep.dir
    grid = sweep_grid(cfg.hydra.sweeper.params)
    assert len(grid) >= 3
    if name.endswith("_quick") and name.removesuffix("_quick") in QUICK_SWEEPS:
        assert cfg.hydra.launcher._target_ == JOBLIB and cfg.hydra.launcher.n_jobs == 2
    points = {tuple(o for o in p if not o.startswith("seed=")) for p in grid}  # seeds can't break
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for point in sorted(points):
            member = compose(
                config_name="config", overrides=[f"+sweep={name}", "output_dir=u", *point]
            )
            OmegaConf.to_container(member, resolve=True)  # every interpolation resolves
            validate(member)


def test_group_size_sweep_keeps_the_completion_budget() -> None:
    sizes = []
    for g in (2, 4, 8, 16, 32):
        cfg = _compose(["+sweep=group_size", "output_dir=unused", f"algorithm.group_size={g}"])
        algo = cfg.algorithm
        sizes.append((algo.group_size, algo.prompts_per_step))
        assert algo.group_size * algo.prompts_per_step == 128
    assert sizes[0] == (2, 64) and sizes[-1] == (32, 4)
    fixed = _compose(["+sweep=group_size_fixed_prompts", "output_dir=u", "algorithm.group_size=32"])
    assert fixed.algorithm.prompts_per_step == 16 and fixed.algorithm.minibatch_size == 256
    with pytest.raises(ValueError, match="not divisible"):
        exact_div(128, 3)


def test_threads_divide_cores_among_parallel_jobs() -> None:
    joblib = {"_target_": JOBLIB, "n_jobs": 2}
    assert launcher_threads(joblib, cores=2) == 1
    assert launcher_threads(joblib, cores=16) == 8
    assert launcher_threads({**joblib, "n_jobs": 3}, cores=2) == 1  # never 0
    assert launcher_threads({**joblib, "n_jobs": -1}, cores=8) == 1  # -1: one job per core
    assert launcher_threads({**joblib, "n_jobs": -2}, cores=8) == 1
    slurm = {"_target_": "hydra_plugins.hydra_submitit_launcher.x.SlurmLauncher"}
    assert launcher_threads({**slurm, "cpus_per_task": 4}, cores=64) == 4
    ray = {"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"}
    assert launcher_threads({**ray, "ray": {"remote": {"num_cpus": 3}}}, cores=64) == 3
    basic = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
    assert launcher_threads(basic, cores=8) is None


def test_auto_threads_follow_the_launcher_of_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """threads=0 inside a joblib multirun job: torch gets cores // n_jobs; threads=N wins."""
    for var in THREAD_ENV:
        monkeypatch.delenv(var, raising=False)  # restored after the test
    cfg = _compose(
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1", "hydra.mode=MULTIRUN"], hydra=True
    )
    before = torch.get_num_threads()
    HydraConfig.instance().set_config(cfg)
    try:
        assert apply_threads(0) == cpu_count() and torch.get_num_threads() == cpu_count()
        assert os.environ["OMP_NUM_THREADS"] == str(cpu_count())
        assert apply_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        HydraConfig.instance().cfg = None
        torch.set_num_threads(before)
    assert apply_threads(0) is None  # a plain run outside Hydra keeps torch's default


@pytest.mark.parametrize(
    "launcher, plugin",
    [
        ("slurm", "hydra_plugins.hydra_submitit_launcher"),
        ("ray_cluster", "hydra_plugins.hydra_ray_launcher"),
    ],
)
def test_cluster_launcher_configs_compose(launcher: str, plugin: str) -> None:
    pytest.importorskip(plugin, reason='the optional extra: pip install -e ".[cluster]"')
    cfg = _compose(["+sweep=lambda_ablation", f"hydra/launcher={launcher}"], hydra=True)
    assert launcher_threads(cfg.hydra.launcher, cores=64) == 4


def _env() -> dict[str, str]:
    return os.environ | {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}


def _wandb_exit_code(run_dir: Path) -> int | None:
    (path,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    for payload in _payloads(path.read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(payload)
        if rec.WhichOneof("record_type") == "exit":
            return rec.exit.exit_code
    return None


@pytest.mark.slow
def test_joblib_multirun_survives_failing_members(tmp_path: Path, shared_cache: Path) -> None:
    """Two jobs at once (joblib, n_jobs=2) over clip_low × reward weight: members 0 and 1 finish;
    member 2's NaN reward weight makes its advantages NaN (a diverged run: the trainer raises);
    members 3-5 have clip_low=1.5, which fails validation. Each failure is recorded, the others
    run, W&B gets the runs in one group (the diverged one with exit code 1), the summary says so."""
    sweep_dir = tmp_path / "sweep"
    cmd = [
        str(RLEXP_TRAIN),
        "-m",
        *TINY,
        "steps=1",
        "eval_every=1",
        "save_every=1",
        "algorithm.prompts_per_step=2",
        "algorithm.group_size=2",
        "algorithm.minibatch_size=4",
        "algorithm.clip_low=0.2,1.5",
        "reward.components.exact_match=1.0,0.5,nan",
        f"cache_dir={shared_cache}",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    out = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]

    infos = [json.loads((sweep_dir / str(i) / "run_info.json").read_text()) for i in range(6)]
    assert [i["status"] for i in infos] == ["finished"] * 2 + ["failed"] * 4
    assert "FloatingPointError: non-finite" in infos[2]["error"]
    for info in infos[3:]:
        assert "ConfigError: algorithm.clip_low=1.5 must be < 1" in info["error"]
        assert "algorithm.clip_low=1.5" in info["overrides"]
    assert (sweep_dir / "3" / "config.yaml").exists()  # the failed member still says what it was
    # each job got its share of the cores: 2 jobs × threads <= cores
    assert {i["torch_threads"] for i in infos[:3]} == {max(1, cpu_count() // 2)}

    runs = [read_offline_run(sweep_dir / str(i))["run"] for i in range(3)]
    assert runs[0].run_group == str(sweep_dir).replace("/", "_")
    assert runs[0].run_group == runs[1].run_group == runs[2].run_group
    assert {r.job_type for r in runs} == {"rl"}  # W&B's job type: the stage (rl, sft, dpo, rft)
    assert [_wandb_exit_code(sweep_dir / str(i)) for i in range(3)] == [0, 0, 1]
    assert len(list((shared_cache / "sft").iterdir())) >= 1
    assert not list((shared_cache / "sft").glob(".tmp-*"))  # no half-written base left behind

    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert [r["status"] for r in summary] == ["finished"] * 2 + ["failed"] * 4
    assert summary[0]["final_accuracy"] is not None and "non-finite" in summary[2]["error"]
    assert "2 of 6 members finished" in out.stdout


@pytest.mark.slow  # a subprocess
def test_a_multirun_whose_members_all_fail_exits_non_zero(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    cmd = [str(RLEXP_TRAIN), "-m", *TINY, "algorithm.clip_low=1.5,2.5"]
    cmd += [f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep_dir}"]
    out = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "every member of the sweep failed" in out.stderr
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert [r["status"] for r in summary] == ["failed", "failed"]


@pytest.mark.slow  # a subprocess
def test_single_run_still_fails_loudly_from_any_cwd(tmp_path: Path) -> None:
    """+sweep=<name> resolves outside the repository; a config error exits 2 in a single run."""
    cmd = [str(RLEXP_TRAIN), "+sweep=lambda_ablation", "advantage.lam=1.5"]
    out = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "config error: advantage.lam=1.5 must lie in [0, 1]" in out.stderr
    info = json.loads(next(tmp_path.glob("runs/*/*/run_info.json")).read_text())
    assert info["status"] == "failed"


def test_summary_reports_members_without_run_info(tmp_path: Path) -> None:
    for i, info in enumerate(
        [{"status": "finished", "final": {"eval/sampled_accuracy": 0.5}}, None]
    ):
        (tmp_path / str(i) / ".hydra").mkdir(parents=True)
        (tmp_path / str(i) / ".hydra" / "overrides.yaml").write_text(f"- +sweep=x\n- seed={i}\n")
        if info:
            (tmp_path / str(i) / "run_info.json").write_text(json.dumps(info))
    rows = summarize_sweep(tmp_path)
    assert [(r["status"], r["overrides"]) for r in rows] == [
        ("finished", ["seed=0"]),
        ("missing", ["seed=1"]),
    ]
    text = format_summary(rows)
    assert "0.500" in text and "1 of 2 members finished" in text
