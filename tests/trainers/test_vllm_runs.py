"""Training runs with ``rollout.engine=vllm`` (the real engine, CPU, fp32) next to ``native``."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from rlexp.train import run
from tests.conftest import TINY, compose_cfg, read_jsonl

# A base with some accuracy to compare (sampled ≈ 0.24, greedy ≈ 0.68 after 300 SFT steps,
# ~15 s; the pre-2026-12-03 optimizer: the default's β2 0.95 and decay to 0 are tuned for 1,200
# steps and leave a 300-step base at ≈ 0.07), and a head size of 32 (vLLM's CPU attention has no
# kernel for TINY's 16).
VLLM_TINY = [
    *TINY,
    "task.n_train=2000",
    "task.n_terms=2",
    "sft.steps=300",
    "sft.batch_size=64",
    "sft.betas=[0.9,0.999]",
    "sft.min_lr_ratio=0.1",
    "eval.n_problems=40",
    "eval.n_samples=8",
]
TINY_MODEL = ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=2"]
# a fixed KV cache: on a CPU vLLM counts the test process's whole RSS against its share
VLLM_SMALL = ["rollout.vllm.gpu_memory_utilization=0.2", "rollout.vllm.kv_cache_gib=0.1"]
GRPO = [
    "algorithm=grpo",
    "algorithm.prompts_per_step=8",
    "algorithm.group_size=4",
    "algorithm.minibatch_size=16",
    "algorithm.lr=1e-4",
    *VLLM_SMALL,
]
pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vllm_sft_cache")


def _run(out: Path, cache_dir: Path, *overrides: str, model: list[str] = TINY_MODEL) -> list[dict]:
    tiny = [o for o in VLLM_TINY if not o.startswith("model.")]
    run(compose_cfg([*tiny, *model, f"output_dir={out}", f"cache_dir={cache_dir}", *overrides]))
    return read_jsonl(out / "metrics.jsonl")


def _final_accuracy(rows: list[dict]) -> float:
    return [r for r in rows if "eval/sampled_accuracy" in r][-1]["eval/sampled_accuracy"]


def test_grpo_with_vllm_learns_like_native(tmp_path: Path, cache_dir: Path) -> None:
    steps = ["steps=10", "eval_every=10", "seed=0"]
    native = _run(tmp_path / "native", cache_dir, *GRPO, *steps)
    vllm = _run(tmp_path / "vllm", cache_dir, *GRPO, *steps, "rollout.engine=vllm")
    train = [r for r in vllm if "train/reward_mean" in r]
    assert len(train) == 10
    # weights synced every step: the engine's log-probs stay the trainer's (fp32) at every step
    for r in train:
        assert r["rollout/logp_abs_diff"] < 1e-5 and abs(r["rollout/ratio_max"] - 1) < 1e-4, r
        assert r["time/weight_sync"] >= 0
    acc_n, acc_v = _final_accuracy(native), _final_accuracy(vllm)
    base = _final_accuracy(native[:1])
    n = 40 * 8  # eval.n_problems × eval.n_samples
    p = (acc_n + acc_v) / 2
    noise = 3 * math.sqrt(2 * p * (1 - p) / n)  # 3σ of the difference of two such estimates
    print(
        f"held-out sampled accuracy: base {base:.3f}, native {acc_n:.3f}, vllm {acc_v:.3f} "
        f"(|Δ| {abs(acc_n - acc_v):.3f}, 3σ noise {noise:.3f})"
    )
    assert base > 0.1  # a base that can learn, so the comparison says something
    assert abs(acc_n - acc_v) <= noise


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_hf_checkpoint_trains_with_vllm(tmp_path: Path, cache_dir: Path, algorithm: str) -> None:
    """``model=hf model.path=<save_pretrained folder> rollout.engine=vllm`` end to end."""
    base_run = tmp_path / "base"
    _run(base_run, cache_dir, "algorithm=grpo", "steps=0")
    checkpoint = json.loads((base_run / "run_info.json").read_text())["base_checkpoint"]
    rows = _run(
        tmp_path / algorithm,
        cache_dir,
        f"algorithm={algorithm}",
        "rollout.engine=vllm",
        *VLLM_SMALL,
        "algorithm.prompts_per_step=4",
        "algorithm.group_size=2",
        "algorithm.minibatch_size=8",
        "steps=2",
        "eval_every=2",
        model=["model=hf", f"model.path={checkpoint}"],
    )
    train = [r for r in rows if "train/reward_mean" in r]
    assert [r["train/step"] for r in train] == [0, 1]
    assert all(r["rollout/logp_abs_diff"] < 1e-5 for r in train)
    info = json.loads((tmp_path / algorithm / "run_info.json").read_text())
    assert info["status"] == "finished"


def _numbers(rows: list[dict]) -> list[dict]:
    """A run's logged numbers without the timings (which are all the async mode changes)."""
    skip = ("time/", "train/tokens_per_s")
    return [{k: v for k, v in r.items() if not k.startswith(skip)} for r in rows]


def test_async_mode_logs_the_numbers_of_lag_1_and_resumes_exactly(
    tmp_path: Path, cache_dir: Path
) -> None:
    """rollout.mode=async (issue 17 item 2): step t+1 sampled by the engine during update t is
    rollout.lag=1's data, so every logged number matches the synchronous run's; a run resumed
    from a checkpoint between steps (the prefetched samples saved) or from its last checkpoint
    (none prefetched) continues the same numbers."""
    common = [*GRPO, "rollout.engine=vllm", "rollout.lag=1", "eval_every=2", "seed=0"]
    sync = _numbers(_run(tmp_path / "sync", cache_dir, *common, "steps=4"))
    mode = "rollout.mode=async"
    rows = _run(tmp_path / "async", cache_dir, *common, "steps=4", mode)
    assert _numbers(rows) == sync
    waits = [r["time/generation_wait"] for r in rows if "time/generation_wait" in r]
    assert len(waits) == 4 and all(w >= 0 for w in waits)
    part = tmp_path / "part"
    _run(part, cache_dir, *common, "steps=3", "save_every=2", mode)
    between = tmp_path / "between"  # the step-2 checkpoint holds step 2's prefetched samples
    shutil.copytree(part, between)
    shutil.rmtree(between / "checkpoints" / "step_000003")
    for out in (part, between):
        resumed = _run(out, cache_dir, *common, "steps=4", "save_every=2", mode, "resume=true")
        assert _numbers(resumed) == sync, out.name
