"""Data parallelism (gloo on CPU, 2 processes): 2 ranks on halves of a global batch give the
advantages and the update of 1 process on the whole batch; torchrun runs the real entry point."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from rlexp.config.algorithms import CriticConfig, KLConfig
from rlexp.config.algorithms import RLAlgorithmConfig as AlgorithmConfig
from rlexp.config.validate import _validate_world as _validate_any_world
from rlexp.data.prompts import left_pad
from rlexp.data.tasks import build_task
from rlexp.models.build import init_model
from rlexp.models.logprobs import completion_logprobs
from rlexp.models.tiny import build_tiny_llama
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.models.value import ValueModel
from rlexp.rollout.batch import RolloutBatch, last_token_rewards
from rlexp.rollout.collect import compute_advantages, rollout_stats
from rlexp.runtime.checkpoint import load_trainer_state
from rlexp.runtime.distributed import (
    all_gather_objects,
    all_reduce_gradients,
    all_reduce_scalar,
    broadcast_module,
    init_distributed,
    is_main,
    rank,
    reduce_dict,
    world_size,
)
from rlexp.runtime.errors import ConfigError
from rlexp.runtime.tracking import NullLogger
from rlexp.trainers import TRAINERS
from rlexp.trainers.rl import RLTrainer
from rlexp.trainers.rl_setup import _validate_world as _validate_rl_world
from rlexp.trainers.update import critic_update, policy_update
from tests.conftest import TINY, compose_cfg, read_jsonl

ROOT = Path(__file__).resolve().parents[2]
B, T, GROUP = 8, 7, 2  # 4 groups of 2: each of 2 ranks gets 2 whole groups
WORLD = 2
KL = {"coef": 0.1, "estimator": "k3", "placement": "loss"}
# name → (algorithm overrides, advantage config); the minibatch is the whole batch (one step),
# so 1 process and 2 ranks see the same global minibatch
CASES = {
    "token_mean_group_relative": (
        {"loss_agg": "token-mean", "micro_batch_size": 2, "kl": KL, "entropy_coef": 0.01},
        {"name": "group_relative", "normalize_std": True, "eps": 1e-6},
    ),
    "seq_mean_batch_normalized": (
        {"loss_agg": "seq-mean-token-mean", "micro_batch_size": 1},
        {"name": "batch_normalized", "gamma": 0.9},
    ),
    "token_sum_norm_rloo": (
        {"loss_agg": "seq-mean-token-sum-norm", "micro_batch_size": 4},
        {"name": "leave_one_out"},
    ),
    "ppo_gae_critic": (
        {"loss_agg": "token-mean", "micro_batch_size": 2, "critic": {"enabled": True}},
        {"name": "gae", "gamma": 1.0, "lam": 0.9},
    ),
}
GLOBAL_STATS = (  # losses, gradient norms and batch statistics: global numbers on every rank
    "loss/policy",
    "loss/kl",
    "train/entropy",
    "train/grad_norm",
    "critic/value_loss",
    "critic/explained_variance",
    "train/reward_mean",
    "train/reward_std",
    "train/accuracy",
    "train/zero_var_group_frac",
    "train/response_length_mean",
    "train/response_length_max",
    "adv/mean",
    "adv/std",
)


def _model():
    tok = build_char_tokenizer()
    return build_tiny_llama(tok, hidden_size=32, num_layers=1, num_heads=2, seed=0)


def _global_batch(model) -> RolloutBatch:
    """A fixed batch whose completions have different lengths (token- vs sequence-means differ)."""
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(4, 20, (int(n),), generator=g).tolist() for n in [2, 5, 3, 4] * 2]
    prompt_ids, prompt_mask = left_pad(prompts, 0, torch.device("cpu"))
    lengths = torch.tensor([1, 7, 3, 5, 2, 2, 6, 4])  # rank 1's longest is shorter than T
    mask = (torch.arange(T)[None] < lengths[:, None]).float()
    completion_ids = torch.where(mask > 0, torch.randint(4, 20, (B, T), generator=g), 0)
    with torch.no_grad():
        old = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, mask)
    scores = torch.tensor([1.0, 0.0, 0.2, 0.9, 0.0, 1.0, 0.5, 0.5])  # last group flat
    return RolloutBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids,
        completion_mask=mask,
        old_logp=old,
        group_ids=torch.arange(B) // GROUP,
        scores=scores,
        correct=scores > 0.5,
        truncated=torch.zeros(B, dtype=torch.bool),
        token_rewards=last_token_rewards(scores, mask),
        ref_logp=old - 0.1 * torch.rand(B, T, generator=g),
        values=torch.randn(B, T, generator=g) * mask,
    )


def _shard(batch: RolloutBatch) -> RolloutBatch:
    """This rank's contiguous rows (whole groups), completions cut to the shard's own longest
    one, as a rank's own rollout would be padded."""
    n = len(batch) // world_size()
    part = batch.select(torch.arange(rank() * n, (rank() + 1) * n))
    width = int(part.completion_mask.sum(1).max())
    cut = {
        f.name: getattr(part, f.name)[:, :width]
        for f in fields(part)
        if not f.name.startswith("prompt")
        and getattr(part, f.name) is not None
        and getattr(part, f.name).dim() == 2
    }
    return RolloutBatch(**(vars(part) | cut))


def _algo(**kw):
    base = dict(name="t", group_size=GROUP, prompts_per_step=B // GROUP, max_grad_norm=1e9)
    base |= kw
    base["kl"] = KLConfig(**base.get("kl", {}))
    base["critic"] = CriticConfig(**base.get("critic", {}))
    return OmegaConf.structured(AlgorithmConfig(**base))


def _flat(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _train_once(algo_kw: dict, adv_cfg: dict) -> dict:
    """Advantages, then one policy (and critic) update of this rank's shard with plain SGD (no
    Adam: its sign-like first step would hide a wrongly scaled gradient)."""
    model = _model()
    batch = _shard(_global_batch(model))
    algo = _algo(**algo_kw)
    compute_advantages(batch, adv_cfg, None)
    stats = rollout_stats(batch)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    stats |= policy_update(model, opt, batch, algo, 1.0, torch.Generator().manual_seed(0))
    out = {"advantages": batch.advantages, "mask": batch.completion_mask, "policy": _flat(model)}
    if algo.critic.enabled:
        critic = ValueModel.from_policy(_model())
        c_opt = torch.optim.SGD(critic.parameters(), lr=1.0)
        stats |= critic_update(critic, c_opt, batch, algo, torch.Generator().manual_seed(0))
        out["critic"] = _flat(critic)
    return out | {"stats": stats}


def _synced_minibatches() -> dict:
    """Two epochs of two shuffled minibatches each: the ranks must stay identical."""
    model = _model()
    batch = _shard(_global_batch(model))
    compute_advantages(batch, {"name": "group_relative"}, None)
    algo = _algo(loss_agg="token-mean", minibatch_size=4, micro_batch_size=1, epochs=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    policy_update(model, opt, batch, algo, 1.0, torch.Generator().manual_seed(rank()))
    return {"policy": _flat(model)}


def _sampled(tmp: str) -> dict:
    """Two rollout batches of the real trainer: this rank's prompts, group ids and stats."""
    cfg = compose_cfg(
        [*TINY, "algorithm.prompts_per_step=4", "algorithm.group_size=2", f"output_dir={tmp}"]
    )
    task = build_task(cfg.task.name, **{k: v for k, v in cfg.task.items() if k != "name"})
    policy, tok = init_model(cfg, torch.device("cpu"), torch.float32)
    trainer = RLTrainer(cfg, Path(tmp), policy, tok, task, NullLogger())
    out: dict = {"prompts": [], "group_ids": [], "completions": []}
    for _ in range(2):
        batch, stats = trainer.sample_batch()
        out["prompts"] += tok.batch_decode(batch.prompt_ids, skip_special_tokens=True)
        out["group_ids"] += batch.group_ids.tolist()
        out["completions"].append(stats["train/sampled_completions"])
    return out


def _uneven(minibatch_size: int | None) -> dict:
    """Dynamic sampling can leave ranks with different shard sizes: rank 0 keeps 2 groups, rank
    1 one group (a single process keeps the 3). The ranks must still pair up their steps."""
    model = _model()
    batch = _global_batch(model).select(torch.arange(6))
    if world_size() > 1:
        batch = batch.select(torch.arange(4) if rank() == 0 else torch.arange(4, 6))
    compute_advantages(batch, {"name": "group_relative"}, None)
    algo = _algo(loss_agg="token-mean", minibatch_size=minibatch_size, micro_batch_size=1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    stats = policy_update(model, opt, batch, algo, 1.0, torch.Generator().manual_seed(0))
    return {"policy": _flat(model), "stats": stats}


def join_world(rank_: int, port: int) -> None:
    """A spawned test process joins the 2-rank gloo world as torchrun would set it up."""
    os.environ |= {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": str(rank_),
        "LOCAL_RANK": str(rank_),
        "WORLD_SIZE": str(WORLD),
    }
    torch.set_num_threads(1)
    init_distributed(torch.device("cpu"))


def _worker(rank_: int, port: int, out_dir: str) -> None:
    join_world(rank_, port)
    results = {name: _train_once(*case) for name, case in CASES.items()}
    results["synced"] = _synced_minibatches()
    results["sampled"] = _sampled(out_dir)
    results["uneven"] = _uneven(None)
    results["uneven_minibatches"] = _uneven(4)
    torch.save(results, Path(out_dir) / f"rank{rank_}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _pad_cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([torch.nn.functional.pad(p, (0, T - p.shape[1])) for p in parts])


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_match_one_process_on_the_whole_batch(ranks: list[dict], case: str) -> None:
    single = _train_once(*CASES[case])  # no process group here: world size 1
    shards = [r[case] for r in ranks]
    # (a) advantages: each rank's shard of the single-process advantages
    torch.testing.assert_close(
        _pad_cat([s["advantages"] for s in shards]), single["advantages"], rtol=1e-6, atol=1e-6
    )
    # (b) the update: every rank equals the single-process step on the global batch
    start = _flat(_model())
    assert not torch.allclose(single["policy"], start)
    for s in shards:
        torch.testing.assert_close(s["policy"], single["policy"], rtol=1e-5, atol=1e-6)
        if "critic" in single:
            torch.testing.assert_close(s["critic"], single["critic"], rtol=1e-5, atol=1e-6)
        for key in GLOBAL_STATS:
            if key in single["stats"]:
                assert s["stats"][key] == pytest.approx(single["stats"][key], rel=1e-5, abs=1e-7)


def test_ranks_stay_identical_over_several_shuffled_minibatches(ranks: list[dict]) -> None:
    torch.testing.assert_close(ranks[0]["synced"]["policy"], ranks[1]["synced"]["policy"])
    assert not torch.allclose(ranks[0]["synced"]["policy"], _flat(_model()))


def test_ranks_sample_disjoint_whole_groups_of_the_one_prompt_stream(
    ranks: list[dict], tmp_path: Path
) -> None:
    single = _sampled(str(tmp_path))
    per_rank = [r["sampled"] for r in ranks]
    # each step's 4 prompts × 2 samples: rank 0 takes the first 2 groups, rank 1 the next 2
    for step in range(2):
        rows = slice(4 * step, 4 * step + 4)
        both = per_rank[0]["prompts"][rows] + per_rank[1]["prompts"][rows]
        assert both == single["prompts"][8 * step : 8 * step + 8]
        ids = per_rank[0]["group_ids"][rows] + per_rank[1]["group_ids"][rows]
        assert ids == single["group_ids"][8 * step : 8 * step + 8]  # unique over ranks
    assert single["group_ids"] == [i // 2 for i in range(16)]
    assert all(r["completions"] == [8.0, 8.0] for r in per_rank)  # global counts


def test_ranks_with_uneven_shards_still_take_the_global_step(ranks: list[dict]) -> None:
    single = _uneven(None)
    for r in ranks:
        torch.testing.assert_close(r["uneven"]["policy"], single["policy"], rtol=1e-5, atol=1e-6)
        assert r["uneven"]["stats"]["loss/policy"] == pytest.approx(
            single["stats"]["loss/policy"], rel=1e-5, abs=1e-7
        )
    # 2 local minibatches on rank 0, 1 (+ an empty one) on rank 1: no deadlock, ranks in sync
    torch.testing.assert_close(
        ranks[0]["uneven_minibatches"]["policy"], ranks[1]["uneven_minibatches"]["policy"]
    )


def test_world_size_must_split_prompts_and_minibatches_evenly() -> None:
    ok = _algo(prompts_per_step=4, minibatch_size=4)
    _validate_rl_world(ok, 2)
    _validate_any_world(ok, 2, TRAINERS.get("rl"))
    with pytest.raises(ConfigError, match="prompts_per_step=3 must divide by the 2"):
        _validate_rl_world(_algo(prompts_per_step=3), 2)
    with pytest.raises(ConfigError, match="minibatch_size=6 must divide by the 4"):
        _validate_rl_world(_algo(prompts_per_step=4, minibatch_size=6), 4)
    sft = OmegaConf.create({"trainer": "sft", "name": "sft"})
    with pytest.raises(ConfigError, match="trainer=sft runs in one process"):
        _validate_any_world(sft, 2, TRAINERS.get("sft"))


VLLM_PER_RANK = [  # one engine per rank (head size 32 for vLLM's CPU kernels)
    "rollout.engine=vllm",
    "model.hidden_size=64",
    "rollout.vllm.gpu_memory_utilization=0.2",
    "rollout.vllm.kv_cache_gib=0.05",
]


@pytest.mark.slow  # a subprocess
@pytest.mark.parametrize(
    "engine", ["native", pytest.param("vllm", marks=pytest.mark.vllm)], ids=["native", "vllm"]
)
def test_torchrun_two_processes_end_to_end(tmp_path: Path, engine: str) -> None:
    """The real entry point under torchrun: rank 0 alone writes metrics, W&B run, checkpoints;
    with ``rollout.engine=vllm`` each rank samples its share with its own engine."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD}",
        "-m",
        "rlexp.train",
        *TINY,
        "steps=2",
        "eval_every=2",
        "save_every=1",
        "model.sft_first=false",
        "algorithm=grpo",
        "algorithm.prompts_per_step=4",
        "algorithm.group_size=2",
        "algorithm.minibatch_size=4",
        "algorithm.micro_batch_size=2",
        f"output_dir={out}",
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        *(VLLM_PER_RANK if engine == "vllm" else []),
    ]
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(out / "metrics.jsonl")
    train = [r for r in rows if "train/reward_mean" in r]
    assert [r["train/step"] for r in train] == [0, 1]  # one row per step: rank 0 alone logs
    assert all(r["train/sampled_completions"] == 8 for r in train)  # the global batch: 4 × 2
    if engine == "vllm":  # both ranks' engines hold the synced weights (global mean, fp32)
        assert all(r["rollout/logp_abs_diff"] < 1e-5 for r in train)
    assert [r["train/step"] for r in rows if "eval/sampled_accuracy" in r] == [0, 2]
    assert len(list((out / "wandb").glob("offline-run-*"))) == 1
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "finished"
    assert (out / "checkpoints" / "step_000002" / "policy" / "model.safetensors").exists()
    state = load_trainer_state(out / "checkpoints" / "step_000002")
    samplers = state["rollout_gen_ranks"]  # every rank's sampler, for an exact resume
    assert len(samplers) == 2 and not torch.equal(samplers[0], samplers[1])
    assert torch.equal(samplers[0], state["rollout_gen"])


def test_single_process_helpers_are_identities() -> None:
    assert is_main() and world_size() == 1 and rank() == 0
    assert all_reduce_scalar(3.0, "max") == 3.0
    assert all_gather_objects({"a": 1}) == [{"a": 1}]
    assert reduce_dict({"a": 2.0}) == {"a": 2.0}
    model = _model()
    before = _flat(model).clone()
    broadcast_module(model)
    all_reduce_gradients(model.parameters())
    assert torch.equal(_flat(model), before)
