"""Sampler throughput: ``sample`` (fast / generic) vs ``model.generate`` on a tiny Llama.

Run: ``.venv/bin/python benchmarks/bench_rollout.py [--repeats 5]`` (leave OMP_NUM_THREADS unset).
All contenders generate exactly ``--new-tokens`` tokens (the EOS id is outside the vocabulary, and
``generate`` gets ``min_new_tokens``), are timed interleaved after a warm-up, and the table
reports median tokens/s. Then the profiler's time of the fast sampler's matrix products bounds
what any sampler doing the same products could gain over ``generate`` (the "ceiling").
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

from rlexp.rollout.sampler import sample

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


def contenders(
    model: LlamaForCausalLM, ids: Tensor, mask: Tensor, new_tokens: int
) -> dict[str, Callable[[], Tensor]]:
    """Zero-argument callables returning completions ``[B, new_tokens]``."""
    gen = torch.Generator().manual_seed(0)

    def ours(backend: str) -> Callable[[], Tensor]:
        return lambda: (
            sample(
                model,
                ids,
                mask,
                max_new_tokens=new_tokens,
                eos_token_id=NEVER_EOS,
                pad_token_id=0,
                generator=gen,
                backend=backend,
            ).completion_ids
        )

    def hf_generate() -> Tensor:
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            use_cache=True,
            top_k=0,  # plain multinomial sampling, like `sample(top_p=1)`
            min_new_tokens=new_tokens,
            max_new_tokens=new_tokens,
            pad_token_id=0,
            eos_token_id=1,
        )
        return out[:, ids.shape[1] :]

    return {"fast": ours("fast"), "generic": ours("generic"), "generate": hf_generate}


def bench(
    batch: int, prompt_len: int, new_tokens: int, repeats: int
) -> dict[str, tuple[float, float]]:
    """Median (wall-clock, process-CPU-time) tokens/s of each contender, timed interleaved.

    CPU time is less sensitive to other tenants of a shared machine than wall-clock time.
    """
    torch.manual_seed(0)
    model = tiny_llama()
    ids, mask = make_prompts(batch, prompt_len, torch.Generator().manual_seed(batch))
    fns = contenders(model, ids, mask, new_tokens)
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items():  # warm-up, and check every contender made new_tokens tokens
        assert fn().shape == (batch, new_tokens), name
    names = list(fns)
    for r in range(repeats):
        for name in names[r % 3 :] + names[: r % 3]:  # rotate the order between repeats
            start, start_cpu = time.perf_counter(), time.process_time()
            fns[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    tokens = batch * new_tokens
    return {
        n: (tokens / statistics.median(wall[n]), tokens / statistics.median(cpu[n])) for n in names
    }


GEMM_OPS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm")


def gemm_seconds(fn: Callable[[], Tensor], repeats: int = 3) -> tuple[float, float]:
    """(seconds per call in matrix products, their share of the time spent in torch ops), from
    the profiler's self-CPU times (Python between the ops is in neither)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS)
    return gemm / repeats / 1e6, gemm / total


def gemm_ceiling(batch: int, prompt_len: int, new_tokens: int, generate_tok_s: float) -> str:
    """The most any sampler doing the fast sampler's matrix products could gain over
    ``generate``: generate's wall time per call over the time of those products alone."""
    torch.manual_seed(0)
    model = tiny_llama()
    ids, mask = make_prompts(batch, prompt_len, torch.Generator().manual_seed(batch))
    gemm, share = gemm_seconds(contenders(model, ids, mask, new_tokens)["fast"])
    generate_s = batch * new_tokens / generate_tok_s
    return (
        f"batch {batch}: the fast sampler spends {gemm * 1e3:.0f} ms per call in matrix products "
        f"({share:.0%} of its op time); generate takes {generate_s * 1e3:.0f} ms: ceiling "
        f"{generate_s / gemm:.2f}x generate for any sampler doing these products"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--prompt-len", type=int, default=10)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0 = as is")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"prompt_len={args.prompt_len}, new_tokens={args.new_tokens}, repeats={args.repeats}"
    )
    cols = ["batch", "fast tok/s", "generic tok/s", "generate tok/s"]
    cols += ["fast/generate", "generic/generate", "fast/generate (cpu time)"]
    print(" | ".join(cols))
    print("-" * len(" | ".join(cols)))
    ceilings = []
    for batch in args.batch_sizes:
        r = bench(batch, args.prompt_len, args.new_tokens, args.repeats)
        (fast, fast_cpu), (generic, _), (hf, hf_cpu) = r["fast"], r["generic"], r["generate"]
        cells = [f"{batch}", f"{fast:.0f}", f"{generic:.0f}", f"{hf:.0f}"]
        cells += [f"{fast / hf:.2f}x", f"{generic / hf:.2f}x", f"{fast_cpu / hf_cpu:.2f}x"]
        print(" | ".join(c.rjust(len(h)) for c, h in zip(cells, cols, strict=True)))
        ceilings.append(gemm_ceiling(batch, args.prompt_len, args.new_tokens, hf))
    print("\nWhere the time goes (torch.profiler, self CPU time of the matrix products):")
    print("\n".join(ceilings))


if __name__ == "__main__":
    main()
