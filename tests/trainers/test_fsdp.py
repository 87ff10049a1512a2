"""``distributed.strategy=fsdp`` (FSDP2 over 2 gloo ranks on the CPU): one sharded update equals
the single-process update of the global batch; clipping uses the global gradient norm (a
rank-local norm fails the same check); a gathered checkpoint loads with ``from_pretrained``;
the real entry point under torchrun, SIGKILLed, resumes a run exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import AutoModelForCausalLM

from benchmarks.resume_demo import kill_after_checkpoint
from rlexp.models.logprobs import completion_logprobs
from rlexp.models.value import ValueModel
from rlexp.rollout.collect import compute_advantages
from rlexp.runtime.distributed import is_main
from rlexp.runtime.sharding import (
    FullWeights,
    full,
    load_sharded_optimizer,
    save_sharded_optimizer,
    shard,
)
from rlexp.trainers.update import critic_update, policy_update
from tests.conftest import TINY, read_jsonl
from tests.trainers.test_distributed import (
    CASES,
    ROOT,
    WORLD,
    _algo,
    _flat,
    _free_port,
    _global_batch,
    _model,
    _shard,
    _train_once,
    join_world,
)

FSDP_CASES = ["token_mean_group_relative", "ppo_gae_critic"]  # GRPO-style; PPO with a critic
CLIPPED = {"max_grad_norm": 0.05}  # small enough that every step is clipped


def _full_flat(module) -> torch.Tensor:
    return torch.cat([full(p).detach().flatten() for p in module.parameters()])


def _local_norm_clip(params, max_norm, *args, **kwargs):
    """A deliberately wrong clip: each rank scales by the norm of its own gradient shard."""
    grads = [p.grad for p in params if p.grad is not None]
    local = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in local]))
    scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for g in local:
        g.mul_(scale)
    return norm


def _train_sharded(algo_kw: dict, adv_cfg: dict, out_dir: Path | None = None) -> dict:
    model = _model()
    batch = _shard(_global_batch(model))  # this rank's rows, as under ddp
    shard(model, torch.float32)
    algo = _algo(**algo_kw)
    compute_advantages(batch, adv_cfg, None)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    stats = policy_update(model, opt, batch, algo, 1.0, torch.Generator().manual_seed(0))
    out = {"policy": _full_flat(model), "stats": stats}
    if algo.critic.enabled:
        critic = shard(ValueModel.from_policy(_model()), torch.float32)
        c_opt = torch.optim.SGD(critic.parameters(), lr=1.0)
        out["stats"] |= critic_update(critic, c_opt, batch, algo, torch.Generator().manual_seed(0))
        out["critic"] = _full_flat(critic)
    if out_dir is not None:  # the exported policy: gathered by every rank, written by rank 0
        weights = FullWeights(model)
        if is_main():
            weights.save_pretrained(out_dir / "policy")
    return out


def _adam_step(model, sharded_dir: Path | None = None):
    """One AdamW step of the GRPO-style case; with ``sharded_dir`` the model is sharded and its
    optimizer state written there with DCP."""
    kw, adv = CASES["token_mean_group_relative"]
    batch = _global_batch(model)
    if sharded_dir is not None:
        batch = _shard(batch)
        shard(model, torch.float32)
    compute_advantages(batch, adv, None)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    policy_update(model, opt, batch, _algo(**kw), 1.0, torch.Generator().manual_seed(0))
    if sharded_dir is not None:
        save_sharded_optimizer(model, opt, sharded_dir)
    return opt


def _worker(rank_: int, port: int, out_dir: str) -> None:
    join_world(rank_, port)
    grpo = CASES["token_mean_group_relative"]
    results = {name: _train_sharded(*CASES[name]) for name in FSDP_CASES}
    results["clipped"] = _train_sharded({**grpo[0], **CLIPPED}, grpo[1], Path(out_dir))
    real_clip = torch.nn.utils.clip_grad_norm_
    torch.nn.utils.clip_grad_norm_ = _local_norm_clip
    try:
        results["local_norm"] = _train_sharded({**grpo[0], **CLIPPED}, grpo[1])
    finally:
        torch.nn.utils.clip_grad_norm_ = real_clip
    _adam_step(_model(), Path(out_dir) / "adam_optimizer")
    torch.save(results, Path(out_dir) / f"rank{rank_}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def fsdp_ranks(tmp_path_factory) -> tuple[list[dict], Path]:
    out = tmp_path_factory.mktemp("fsdp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)], out


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", FSDP_CASES)
def test_a_sharded_update_equals_the_single_process_update(fsdp_ranks, case: str) -> None:
    single = _train_once(*CASES[case])
    assert not torch.allclose(single["policy"], _flat(_model()))  # the step moved the weights
    for r in fsdp_ranks[0]:
        assert (r[case]["policy"] - single["policy"]).abs().max() < 1e-5
        if "critic" in single:
            assert (r[case]["critic"] - single["critic"]).abs().max() < 1e-5
        for key in ("loss/policy", "train/grad_norm", "critic/value_loss"):
            if key in single["stats"]:
                assert r[case]["stats"][key] == pytest.approx(single["stats"][key], rel=1e-5)


def test_clipping_uses_the_global_norm_and_a_local_norm_fails(fsdp_ranks) -> None:
    grpo = CASES["token_mean_group_relative"]
    single = _train_once({**grpo[0], **CLIPPED}, grpo[1])
    assert single["stats"]["train/grad_norm"] > CLIPPED["max_grad_norm"]  # clipping is active
    for r in fsdp_ranks[0]:
        assert _close(r["clipped"]["policy"], single["policy"])
        assert not _close(r["local_norm"]["policy"], single["policy"])  # the wrong variant


def test_the_exported_policy_loads_with_from_pretrained(fsdp_ranks) -> None:
    grpo = CASES["token_mean_group_relative"]
    single = _train_once({**grpo[0], **CLIPPED}, grpo[1])
    loaded = AutoModelForCausalLM.from_pretrained(fsdp_ranks[1] / "policy")
    assert _close(_flat(loaded), single["policy"])
    batch = _global_batch(_model())
    with torch.no_grad():
        logp = completion_logprobs(
            loaded, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask
        )
        reference = _model()
        torch.nn.utils.vector_to_parameters(single["policy"], reference.parameters())
        expected = completion_logprobs(
            reference,
            batch.prompt_ids,
            batch.prompt_mask,
            batch.completion_ids,
            batch.completion_mask,
        )
    assert (logp - expected).abs().max() < 1e-5


def _command(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={WORLD}", "-m", "rlexp.train", *TINY,
        "model.sft_first=false", "algorithm=grpo", "algorithm.prompts_per_step=4",
        "algorithm.group_size=2", "algorithm.minibatch_size=4", "algorithm.micro_batch_size=2",
        "algorithm.lr=1e-3", "distributed.strategy=fsdp", "eval_every=2", "save_every=2",
        f"output_dir={out}", f"cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={out}", *extra,
    ]  # fmt: skip


ENV = {
    "OMP_NUM_THREADS": "1",
    "WANDB_MODE": "disabled",
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
}


def _launch(tmp_path: Path, out: Path, *extra: str) -> None:
    cmd = _command(tmp_path, out, *extra)
    proc = subprocess.run(
        cmd, env=os.environ | ENV, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_sharded_optimizer_state_loads_into_one_unsharded_process(fsdp_ranks) -> None:
    """DCP reshards on load: the 2 ranks' AdamW shards, read by a single process, are the
    single-process optimizer state after the same step."""
    single = _adam_step(_model())
    model = _model()
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-2)
    load_sharded_optimizer(model, fresh, fsdp_ranks[1] / "adam_optimizer")
    for p_single, p_fresh in zip(
        single.param_groups[0]["params"], fresh.param_groups[0]["params"], strict=True
    ):
        want, got = single.state[p_single], fresh.state[p_fresh]
        assert float(got["step"]) == float(want["step"]) == 1.0
        for key in ("exp_avg", "exp_avg_sq"):
            assert _close(got[key], want[key]), key


@pytest.mark.slow  # subprocesses
def test_sigkilled_torchrun_fsdp_run_resumes_exactly(tmp_path: Path) -> None:
    """A sharded run SIGKILLed after a checkpoint, then restarted with ``resume=true``, logs the
    metrics of the uninterrupted run: the checkpoint (full weights and optimizer state, gathered)
    restores the shards exactly."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _launch(tmp_path, whole, "steps=6")
    stop = kill_after_checkpoint(
        killed, command=_command(tmp_path, killed, "steps=6"), env=os.environ | ENV, timeout=300
    )
    assert stop["checkpoint_step"] < 6
    _launch(tmp_path, killed, "steps=6", "resume=true")

    def rows(out: Path) -> list[dict]:
        return [
            {k: v for k, v in r.items() if not k.startswith("time/") and "per_s" not in k}
            for r in read_jsonl(out / "metrics.jsonl")
        ]

    assert rows(killed) == rows(whole)
    assert len([r for r in rows(whole) if "train/reward_mean" in r]) == 6


@pytest.mark.slow
@pytest.mark.vllm
def test_torchrun_fsdp_feeds_each_ranks_vllm_engine(tmp_path: Path) -> None:
    """Sharded policy, one engine per rank: the engines get the gathered weights every step
    (their log-probs are the trainer's), and rank 0 evaluates with its engine."""
    out = tmp_path / "run"
    _launch(
        tmp_path,
        out,
        "steps=2",
        "rollout.engine=vllm",
        "model.hidden_size=64",  # head size 32 for vLLM's CPU kernels
        "rollout.vllm.gpu_memory_utilization=0.2",
        "rollout.vllm.kv_cache_gib=0.05",
    )
    rows = read_jsonl(out / "metrics.jsonl")
    train = [r for r in rows if "train/reward_mean" in r]
    assert len(train) == 2 and all(r["rollout/logp_abs_diff"] < 1e-5 for r in train)
    assert [r["train/step"] for r in rows if "eval/sampled_accuracy" in r] == [0, 2]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["distributed.strategy=zero3"], "distributed.strategy=zero3: use ddp or fsdp"),
        (["algorithm=sft"], "algorithm.trainer=sft runs in one process"),
        (["algorithm=dapo"], "FSDP's collectives need every rank in every forward"),
    ],
)
def test_impossible_fsdp_combinations(overrides: list[str], needle: str) -> None:
    from rlexp.config.validate import validate
    from rlexp.runtime.errors import ConfigError
    from tests.conftest import compose_cfg

    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(["distributed.strategy=fsdp", *overrides]))
    assert needle in str(err.value)


def test_a_model_without_decoder_layers_cannot_be_sharded_per_layer() -> None:
    from rlexp.runtime.errors import ConfigError
    from rlexp.runtime.sharding import decoder_layers

    with pytest.raises(ConfigError, match="Sequential names none"):
        decoder_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_gradient_checkpointing_leaves_the_update_unchanged() -> None:
    """``model.gradient_checkpointing``: recomputed activations, the same PPO step (policy and
    critic), to float rounding."""
    from rlexp.models.build import enable_gradient_checkpointing

    kw, adv = CASES["ppo_gae_critic"]

    def step(checkpointing: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model, critic = _model(), ValueModel.from_policy(_model())
        if checkpointing:
            enable_gradient_checkpointing(model)
            enable_gradient_checkpointing(critic)
            assert model.model.gradient_checkpointing and critic.backbone.gradient_checkpointing
        batch, algo = _global_batch(model), _algo(**kw)
        compute_advantages(batch, adv, None)
        gen = torch.Generator().manual_seed(0)
        policy_update(model, torch.optim.SGD(model.parameters(), lr=1.0), batch, algo, 1.0, gen)
        critic_update(critic, torch.optim.SGD(critic.parameters(), lr=1.0), batch, algo, gen)
        return _flat(model), _flat(critic)

    (p0, c0), (p1, c1) = step(False), step(True)
    assert not torch.allclose(p0, _flat(_model()))
    assert _close(p0, p1) and _close(c0, c1)
