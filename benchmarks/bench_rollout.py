"""Sampler throughput: ``sample`` (fast / generic) vs ``model.generate`` on a tiny Llama.

Run: ``.venv/bin/python benchmarks/bench_rollout.py [--repeats 5]`` (leave OMP_NUM_THREADS unset).
All contenders generate exactly ``--new-tokens`` tokens (the EOS id is outside the vocabulary, and
``generate`` gets ``min_new_tokens``), are timed interleaved after a warm-up, and the table
reports median tokens/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor
from transformers import LlamaConfig, LlamaForCausalLM

from rlexp.rollout import sample

VOCAB = 32
NEVER_EOS = VOCAB + 1  # an id no row can sample, so every row runs to max_new_tokens


def tiny_llama() -> LlamaForCausalLM:
    """The reference tiny Llama: vocab 32, hidden 128, 4 layers, 4 heads, no dropout."""
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=352,
        max_position_embeddings=256,
        attention_dropout=0.0,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
    )
    return LlamaForCausalLM(cfg).eval()


def make_prompts(batch: int, length: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Left-padded prompts ``[B, length]`` with 6 … length real tokens."""
    ids = torch.randint(3, VOCAB, (batch, length), generator=gen)
    lengths = torch.randint(6, length + 1, (batch,), generator=gen)
    mask = (torch.arange(length)[None, :] >= length - lengths[:, None]).long()
    return ids.where(mask.bool(), 0), mask


def contenders(model, ids, mask, new_tokens: int) -> dict[str, Callable[[], torch.Tensor]]:
    common = dict(max_new_tokens=new_tokens, eos_token_id=NEVER_EOS, pad_token_id=0)
    gen = torch.Generator().manual_seed(0)

    def hf_generate() -> torch.Tensor:
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            use_cache=True,
            top_k=0,
            min_new_tokens=new_tokens,
            max_new_tokens=new_tokens,
            pad_token_id=0,
            eos_token_id=1,
        )
        return out[:, ids.shape[1] :]

    return {
        "sample/fast": lambda: (
            sample(model, ids, mask, generator=gen, backend="fast", **common).completion_ids
        ),
        "sample/generic": lambda: (
            sample(model, ids, mask, generator=gen, backend="generic", **common).completion_ids
        ),
        "hf_generate": hf_generate,
    }


def bench(batch: int, prompt_len: int, new_tokens: int, repeats: int) -> dict[str, float]:
    """Median tokens/s of each contender, timed interleaved."""
    torch.manual_seed(0)
    model = tiny_llama()
    ids, mask = make_prompts(batch, prompt_len, torch.Generator().manual_seed(batch))
    fns = contenders(model, ids, mask, new_tokens)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items():  # warm-up, and check every contender made new_tokens tokens
        assert fn().shape == (batch, new_tokens), name
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: batch * new_tokens / statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--prompt-len", type=int, default=10)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"prompt_len={args.prompt_len}, new_tokens={args.new_tokens}, repeats={args.repeats}"
    )
    header = f"{'batch':>6} | {'fast tok/s':>11} | {'generic tok/s':>13} | {'generate tok/s':>14}"
    print(header + f" | {'fast/generate':>13} | {'generic/generate':>16}")
    print("-" * (len(header) + 35))
    for batch in args.batch_sizes:
        r = bench(batch, args.prompt_len, args.new_tokens, args.repeats)
        fast, generic, hf = r["sample/fast"], r["sample/generic"], r["hf_generate"]
        print(
            f"{batch:>6} | {fast:>11.0f} | {generic:>13.0f} | {hf:>14.0f} | "
            f"{fast / hf:>12.2f}x | {generic / hf:>15.2f}x"
        )


if __name__ == "__main__":
    main()
