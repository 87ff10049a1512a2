"""Rollout engines at a real model's size: the native sampler, HF ``generate`` and vLLM, then one
GRPO step's split with the vLLM engine.

On a GPU (``make install-vllm`` first)::

    .venv/bin/python benchmarks/bench_engine.py            # Qwen2.5-0.5B-shaped, random weights
    .venv/bin/python benchmarks/bench_engine.py --model /models/Qwen2.5-0.5B-Instruct

64 prompts × 8 samples × 512 new tokens in bf16 (every sequence runs to the limit: no stop
token is given). Prints each engine's tokens/s (median of ``--repeats``), peak GPU memory,
and one GRPO step (rlexp's own functions: ``VLLMEngine.generate``, ``completion_logprobs`` for
the policy and the reference, ``compute_advantages`` + ``policy_update``, then
``VLLMEngine.load_weights``) split into generation, log-prob passes, update and weight sync.
Targets: vLLM ≥ 5× the native sampler at 512 tokens; weight sync < 5 % of the step.
``--tiny``: a small model and batch in fp32 on the CPU, a check that the script runs.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from omegaconf import OmegaConf
from torch import Tensor
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from rlexp.config.algorithms import RLAlgorithmConfig
from rlexp.config.schema import GroupRelativeConfig, RolloutConfig, VLLMConfig
from rlexp.models.logprobs import completion_logprobs
from rlexp.rollout.batch import RolloutBatch, last_token_rewards
from rlexp.rollout.collect import compute_advantages
from rlexp.rollout.sampler import sample
from rlexp.trainers.update import policy_update

GiB = 2**30
QWEN25_05B = dict(  # Qwen2.5-0.5B's config.json
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)
TINY = dict(
    vocab_size=512,
    hidden_size=128,
    intermediate_size=352,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=True,
)


def build_model(args, device: torch.device, dtype: torch.dtype):
    if args.model:
        return AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(device)
    config = Qwen2Config(**(TINY if args.tiny else QWEN25_05B), architectures=["Qwen2ForCausalLM"])
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).to(device=device, dtype=dtype)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def peak_gib(fn: Callable[[], object], device: torch.device) -> float:
    if device.type != "cuda":
        fn()
        return float("nan")
    torch.cuda.reset_peak_memory_stats()
    fn()
    return torch.cuda.max_memory_allocated() / GiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", help="a save_pretrained folder (default: random Qwen2.5-0.5B shape)")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=512)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--micro-batch", type=int, default=32)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.4)
    p.add_argument("--skip-generate", action="store_true", help="leave out HF generate (slow)")
    p.add_argument("--tiny", action="store_true", help="a small fp32 model on the CPU")
    args = p.parse_args()
    if args.tiny:
        args.prompts, args.samples, args.new_tokens, args.prompt_len = 4, 4, 32, 16
        args.gpu_memory_utilization = min(args.gpu_memory_utilization, 0.1)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = build_model(args, device, dtype)
    vocab = model.config.vocab_size
    gen = torch.Generator(device=device).manual_seed(0)
    B, N = args.prompts * args.samples, args.new_tokens
    prompts = torch.randint(3, vocab, (args.prompts, args.prompt_len), generator=gen, device=device)
    ids = prompts.repeat_interleave(args.samples, 0)
    mask = torch.ones_like(ids)
    kw = dict(max_new_tokens=N, eos_token_id=[], pad_token_id=0, temperature=1.0, top_p=1.0)
    print(
        f"device {device}, {dtype}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
        f"parameters; {args.prompts} prompts × {args.samples} samples × {N} new tokens"
    )

    def native() -> Tensor:
        return sample(model, ids, mask, generator=gen, **kw).completion_ids

    def hf_generate() -> Tensor:
        return model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            top_k=0,
            min_new_tokens=N,
            max_new_tokens=N,
            pad_token_id=0,
        )

    model.eval()
    rows: dict[str, tuple[float, float]] = {}
    contenders = {"native": native} | ({} if args.skip_generate else {"hf_generate": hf_generate})
    for name, fn in contenders.items():
        peak = peak_gib(fn, device)  # also the warm-up
        times = [timed(fn, device) for _ in range(args.repeats)]
        rows[name] = (B * N / statistics.median(times), peak)

    from rlexp.rollout.vllm_engine import VLLMEngine

    cfg = OmegaConf.structured(
        RolloutConfig(
            engine="vllm", vllm=VLLMConfig(gpu_memory_utilization=args.gpu_memory_utilization)
        )
    )
    t0 = time.perf_counter()
    engine = VLLMEngine(model, cfg, seed=0)
    start = time.perf_counter() - t0

    def vllm() -> object:
        return engine.generate(ids, mask, gen, **kw)

    used = lambda: (torch.cuda.mem_get_info()[1] - torch.cuda.mem_get_info()[0]) / GiB  # noqa: E731
    vllm()  # warm-up
    times = [timed(vllm, device) for _ in range(args.repeats)]
    rows["vllm"] = (
        B * N / statistics.median(times),
        used() if device.type == "cuda" else float("nan"),
    )
    print(f"\nengine start (vLLM): {start:.1f} s\n")
    print("| engine | tokens/s | × native | peak GPU memory (GiB) |\n|---|---:|---:|---:|")
    for name, (tps, peak) in rows.items():
        print(f"| {name} | {tps:,.0f} | {tps / rows['native'][0]:.2f} | {peak:.1f} |")

    split = grpo_step(model, engine, ids, mask, gen, kw, args, device)
    total = sum(split.values())
    print(f"\none GRPO step with the vLLM engine ({B} sequences × {N} tokens): {total:.2f} s")
    for name, t in split.items():
        print(f"  {name:<16} {t:7.2f} s  {100 * t / total:5.1f} %")
    print(
        f"weight sync / step: {100 * split['weight sync'] / total:.2f} % (target < 5 %); "
        f"vLLM / native: {rows['vllm'][0] / rows['native'][0]:.2f}× (target ≥ 5×)"
    )
    engine.close()


def grpo_step(model, engine, ids, mask, gen, kw, args, device) -> dict[str, float]:
    """Generation → (sleep) → log-prob passes (policy, reference) → advantages + update →
    weight sync, timed phase by phase; the rewards are random 0/1 (random weights solve nothing)."""
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    algo = OmegaConf.structured(
        RLAlgorithmConfig(
            name="grpo",
            group_size=args.samples,
            prompts_per_step=args.prompts,
            micro_batch_size=args.micro_batch,
            loss_agg="seq-mean-token-mean",
        )
    )
    split: dict[str, float] = {}
    out = None

    def generate() -> None:
        nonlocal out
        out = engine.generate(ids, mask, gen, **kw)

    split["generation"] = timed(generate, device)
    engine.release()
    chunks = [slice(i, i + args.micro_batch) for i in range(0, len(ids), args.micro_batch)]

    @torch.no_grad()
    def logprob_passes() -> tuple[Tensor, Tensor]:
        cm = out.completion_mask
        return tuple(
            torch.cat(
                [
                    completion_logprobs(m, ids[r], mask[r], out.completion_ids[r], cm[r]).float()
                    for r in chunks
                ]
            )
            for m in (model, reference)
        )

    t0 = time.perf_counter()
    old_logp, ref_logp = logprob_passes()
    split["log-prob passes"] = time.perf_counter() - t0
    scores = torch.randint(0, 2, (len(ids),), generator=gen, device=device).float()
    cm = out.completion_mask.float()
    batch = RolloutBatch(
        prompt_ids=ids,
        prompt_mask=mask,
        completion_ids=out.completion_ids,
        completion_mask=cm,
        old_logp=old_logp,
        group_ids=torch.arange(args.prompts, device=device).repeat_interleave(args.samples),
        scores=scores,
        correct=scores.bool(),
        truncated=out.truncated,
        token_rewards=last_token_rewards(scores, cm),
        ref_logp=ref_logp,
    )

    def update() -> None:
        compute_advantages(
            batch, OmegaConf.to_container(OmegaConf.structured(GroupRelativeConfig())), None
        )
        policy_update(model, optimizer, batch, algo, 1.0, torch.Generator().manual_seed(0))

    split["update"] = timed(update, device)
    split["weight sync"] = timed(lambda: engine.load_weights(model), device)
    return split


if __name__ == "__main__":
    main()
