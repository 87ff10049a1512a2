"""PPO and GRPO through the Hydra entry point (compose API), W&B offline; metrics read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlexp.train import run
from tests.conftest import TINY, compose_cfg, read_jsonl
from tests.wandb_offline import read_offline_run

REQUIRED = [
    "train/reward_mean",
    "train/reward_std",
    "train/accuracy",
    "train/zero_var_group_frac",
    "train/response_length_mean",
    "train/response_length_max",
    "train/truncated_frac",
    "loss/policy",
    "train/entropy",
    "train/clip_frac",
    "train/approx_kl",
    "train/grad_norm",
    "adv/mean",
    "adv/std",
    "time/generation",
    "time/update",
    "train/tokens_per_s",
]
STEPS = ["steps=2", "eval_every=2", "save_every=1"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sft_cache")


def _run(tmp_path: Path, cache_dir: Path, *overrides: str) -> Path:
    out = tmp_path / "run"
    cfg = compose_cfg([*TINY, *STEPS, f"output_dir={out}", f"cache_dir={cache_dir}", *overrides])
    run(cfg)
    return out


def test_grpo_end_to_end(tmp_path: Path, cache_dir: Path) -> None:
    out = _run(
        tmp_path,
        cache_dir,
        "algorithm=grpo",
        "algorithm.prompts_per_step=4",
        "algorithm.group_size=4",
        "algorithm.minibatch_size=8",
        "algorithm.micro_batch_size=4",
    )
    rows = read_jsonl(out / "metrics.jsonl")
    train_rows = [r for r in rows if "train/reward_mean" in r]
    assert [r["train/step"] for r in train_rows] == [0, 1]
    for key in [*REQUIRED, "train/kl_ref", "loss/kl"]:
        assert key in train_rows[0], key
    evals = [r for r in rows if "eval/sampled_accuracy" in r]
    assert [r["train/step"] for r in evals] == [0, 2]
    assert {"eval/greedy_accuracy", "eval/pass@2"} <= set(evals[0])
    # the same numbers reached W&B's offline run, with the resolved config
    wb = read_offline_run(out)
    logged = [h for h in wb["history"] if "train/reward_mean" in h]
    assert [h["train/reward_mean"] for h in logged] == pytest.approx(
        [r["train/reward_mean"] for r in train_rows]
    )
    assert wb["config"]["algorithm"]["name"] == "grpo"
    # each evaluation's samples of eval.log_samples problems: a file and a W&B table
    samples = read_jsonl(out / "eval_samples.jsonl")
    n = int(next(k for k in evals[0] if k.startswith("eval/pass@")).split("@")[1])
    assert [r["train/step"] for r in samples] == [0] * 4 * n + [2] * 4 * n
    assert [r["problem_id"] for r in samples[: 4 * n]] == [i // n for i in range(4 * n)]
    assert all(r["correct"] == (r["answer"] == r["gold"]) for r in samples)
    tables = [h["eval/samples"] for h in wb["history"] if "eval/samples" in h]
    assert len(tables) == 2 and tables[0]["_type"] == "table-file" and tables[0]["nrows"] == 4 * n
    # run directory: resolved config, seeds, status, checkpoints, the SFT curve of the base
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "finished" and info["seed"] == 0 and "sft_seed" in info
    assert (out / "config.yaml").exists() and (out / "sft_metrics.jsonl").exists()
    assert (out / "checkpoints" / "step_000002" / "policy" / "model.safetensors").exists()
    assert Path(info["base_checkpoint"]).parent.parent == cache_dir


def test_ppo_end_to_end_reuses_the_sft_base(tmp_path: Path, cache_dir: Path) -> None:
    bases_before = sorted((cache_dir / "sft").iterdir()) if (cache_dir / "sft").exists() else []
    out = _run(
        tmp_path,
        cache_dir,
        "algorithm=ppo",
        "algorithm.prompts_per_step=8",
        "algorithm.minibatch_size=4",
        "logger.log_model=true",
    )
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if "train/reward_mean" in r]
    (model,) = [a for a in read_offline_run(out)["artifacts"] if a["type"] == "model"]  # opted in
    assert model["type"] == "model" and "model.safetensors" in model["files"]
    critic_keys = ["critic/value_loss", "critic/explained_variance", "adv/var", "adv/mc_mse"]
    for key in [*REQUIRED, *critic_keys, "train/kl_ref"]:
        assert key in rows[0], key
    if bases_before:  # the GRPO test ran first with the same SFT settings: no second SFT
        assert sorted((cache_dir / "sft").iterdir()) == bases_before
    assert (out / "checkpoints" / "step_000002" / "critic" / "value_head.safetensors").exists()


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path, cache_dir: Path) -> None:
    common = [
        "algorithm.prompts_per_step=4",
        "algorithm.group_size=2",
        "algorithm.minibatch_size=8",
    ]
    out = _run(tmp_path, cache_dir, *common)
    out = _run(tmp_path, cache_dir, *common, "steps=3", "resume=true")
    steps = [r["train/step"] for r in read_jsonl(out / "metrics.jsonl") if "train/reward_mean" in r]
    assert steps == [0, 1, 2]
    info = json.loads((out / "run_info.json").read_text())
    assert info["resumed_from"].endswith("step_000002") and info["status"] == "finished"


@pytest.mark.slow  # a subprocess
def test_multirun_sweep_gives_one_run_dir_and_one_wandb_run_each_in_one_group(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-c",
        "from rlexp.train import main; main()",
        "-m",
        "algorithm=ppo,grpo",
        "seed=0,1",
        *TINY,
        "steps=1",
        "eval_every=1",
        "algorithm.prompts_per_step=4",
        "algorithm.minibatch_size=4",
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p for p in sweep.iterdir() if (p / "metrics.jsonl").exists())
    assert len(runs) == 4
    groups = {read_offline_run(r)["run"].run_group for r in runs}
    assert len(groups) == 1 and groups != {""}
    names = {read_offline_run(r)["run"].display_name for r in runs}
    assert len(names) == 4
    assert all(json.loads((r / "run_info.json").read_text())["status"] == "finished" for r in runs)


@pytest.mark.slow  # a subprocess
def test_sigterm_marks_the_run_failed_and_a_second_run_cannot_share_its_dir(tmp_path: Path) -> None:
    """A second run in a live run's directory is one config error (the directory is locked), and
    the live run is untouched. SLURM preempts with SIGTERM: the run records it (run_info.json
    failed, the signal named), keeps its last checkpoint and exits 143 with one line."""
    import signal
    import subprocess
    import time

    from benchmarks.resume_demo import (
        logged_steps,
        newest_checkpoint_step,
        train_command,
        train_env,
    )

    out = tmp_path / "run"
    overrides = [
        *TINY,
        "steps=400",
        "save_every=1",
        f"cache_dir={tmp_path / 'cache'}",
        "logger=none",
    ]
    proc = subprocess.Popen(
        train_command(out, overrides), env=train_env(), stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if newest_checkpoint_step(out) is not None and len(logged_steps(out)) >= 2:
            break
        time.sleep(0.05)
    # meanwhile a second run in the same directory stops at once, touching nothing of the first
    second = subprocess.run(
        train_command(out, overrides), env=train_env(), capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 2 and "is in use by another run" in second.stderr
    assert json.loads((out / "run_info.json").read_text())["status"] == "running"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "rlexp: stopped by SIGTERM; the run is marked failed" in err
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "failed" and "SIGTERM" in info["error"]
    assert newest_checkpoint_step(out) is not None  # the last complete checkpoint is kept
