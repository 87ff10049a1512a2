"""Memory per rank of one GRPO step and one PPO step (policy + critic), ddp vs fsdp.

    .venv/bin/python benchmarks/bench_fsdp.py          # 2 CPU ranks (gloo), ~100 M parameters
    .venv/bin/python benchmarks/bench_fsdp.py --tiny   # a check that it runs

It launches ``torchrun --nproc_per_node=2`` of itself once per (strategy, algorithm); each rank
builds a Qwen2-config model (and for PPO a critic from it), shards it (fsdp) or not (ddp), takes
one AdamW step on a synthetic rollout batch with rlexp's ``policy_update`` / ``critic_update``,
and reports the bytes its parameters, gradients and optimizer state hold (the local shards:
what FSDP divides), the process's memory when the step starts (after sharding) and its peak
during the step (RSS high-water mark, reset at the start). On a GPU the same script runs on CUDA
(allocated memory instead of RSS). Expect fsdp's parameter + gradient + optimizer bytes per rank
to be close to half of ddp's. Each rank builds the whole model before sharding it (no meta-device
initialisation yet), which the peak window leaves out.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import Qwen2Config, Qwen2ForCausalLM

MiB = 2**20
SIZES = {  # ~100 M parameters (tied embeddings), and a tiny one for --tiny
    "100m": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                 num_attention_heads=12, num_key_value_heads=4, vocab_size=32000),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=2, vocab_size=256),
}  # fmt: skip


def local_bytes(tensors) -> int:
    total = 0
    for t in tensors:
        t = t.to_local() if hasattr(t, "to_local") else t
        total += t.numel() * t.element_size()
    return total


def footprint(model, optimizer) -> int:
    params = [p for p in model.parameters()]
    grads = [p.grad for p in params if p.grad is not None]
    states = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return local_bytes(params) + local_bytes(grads) + local_bytes(states)


def proc_status(key: str) -> int:
    """A /proc/self/status memory line (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak(device: torch.device) -> int:
    """Start a new peak-memory window; returns the memory held at its start. CPU: freed memory
    is handed back to the OS (``malloc_trim``) and the RSS high-water mark reset."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return proc_status("VmRSS")


def rank_main(args) -> None:
    from rlexp.config.algorithms import CriticConfig, RLAlgorithmConfig
    from rlexp.models.value import ValueModel
    from rlexp.rollout.batch import RolloutBatch, last_token_rewards
    from rlexp.rollout.collect import compute_advantages
    from rlexp.runtime.distributed import init_distributed, rank
    from rlexp.runtime.sharding import shard
    from rlexp.trainers.update import critic_update, policy_update

    torch.set_num_threads(1)
    device = init_distributed(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    config = Qwen2Config(**SIZES["tiny" if args.tiny else "100m"], tie_word_embeddings=True)
    policy = Qwen2ForCausalLM(config).to(device)
    critic = ValueModel.from_policy(policy) if args.algorithm == "ppo" else None
    if args.strategy == "fsdp":
        shard(policy, torch.float32)
        if critic is not None:
            shard(critic, torch.float32)
    n, p_len, t_len = 4, 16, 32  # this rank's rollout: 4 sequences of 16 + 32 tokens
    g = torch.Generator().manual_seed(rank())
    prompt = torch.randint(3, config.vocab_size, (n, p_len), generator=g).to(device)
    completion = torch.randint(3, config.vocab_size, (n, t_len), generator=g).to(device)
    mask = torch.ones(n, t_len, device=device)
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0], device=device)
    batch = RolloutBatch(
        prompt_ids=prompt, prompt_mask=torch.ones_like(prompt), completion_ids=completion,
        completion_mask=mask, old_logp=torch.full((n, t_len), -5.0, device=device),
        group_ids=torch.arange(n, device=device) // 2 + 2 * rank(), scores=scores,
        correct=scores.bool(), truncated=torch.zeros(n, dtype=torch.bool, device=device),
        token_rewards=last_token_rewards(scores, mask),
        values=torch.zeros(n, t_len, device=device) if critic is not None else None,
    )  # fmt: skip
    adv = {"name": "gae", "gamma": 1.0, "lam": 0.95} if critic else {"name": "group_relative"}
    compute_advantages(batch, adv, None)
    algo = OmegaConf.structured(
        RLAlgorithmConfig(name=args.algorithm, group_size=2, prompts_per_step=4,
                          micro_batch_size=2, critic=CriticConfig(enabled=critic is not None))
    )  # fmt: skip
    start = reset_peak(device)  # the step's own peak, not the full model built before sharding
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-5)
    policy_update(policy, opt, batch, algo, 1.0, torch.Generator().manual_seed(0))
    held = footprint(policy, opt)
    if critic is not None:
        c_opt = torch.optim.AdamW(critic.parameters(), lr=1e-5)
        critic_update(critic, c_opt, batch, algo, torch.Generator().manual_seed(0))
        held += footprint(critic, c_opt)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else proc_status("VmHWM")
    params = sum(getattr(p, "shape", p).numel() for p in policy.parameters())  # global shapes
    if rank() == 0:
        print(json.dumps({"held": held, "peak": peak, "start": start, "params": params}))


def launch(strategy: str, algorithm: str, tiny: bool) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           __file__, "--rank-main", f"--strategy={strategy}", f"--algorithm={algorithm}",
           *(["--tiny"] if tiny else [])]  # fmt: skip
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--rank-main", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--strategy", default="ddp")
    p.add_argument("--algorithm", default="grpo")
    args = p.parse_args()
    if args.rank_main:
        rank_main(args)
        return
    print("| step | strategy | params + grads + optimizer / rank (MiB) | memory at step start / "
          "rank (MiB) | peak in the step / rank (MiB) |")  # fmt: skip
    print("|---|---|---:|---:|---:|")
    for algorithm in ("grpo", "ppo"):
        res = {s: launch(s, algorithm, args.tiny) for s in ("ddp", "fsdp")}
        for s, r in res.items():
            print(f"| {algorithm} | {s} | {r['held'] / MiB:,.0f} | {r['start'] / MiB:,.0f} | "
                  f"{r['peak'] / MiB:,.0f} |")  # fmt: skip
        ratio = {k: res["fsdp"][k] / res["ddp"][k] for k in ("held", "start", "peak")}
        print(f"| {algorithm} | fsdp / ddp | {ratio['held']:.2f} | {ratio['start']:.2f} | "
              f"{ratio['peak']:.2f} |")  # fmt: skip
    print(f"\npolicy: {res['ddp']['params'] / 1e6:.1f} M parameters, 2 ranks, fp32, AdamW")


if __name__ == "__main__":
    main()
