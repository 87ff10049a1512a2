"""A tiny Llama for CPU-scale experiments, built from scratch (no downloads)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


def default_intermediate_size(hidden_size: int) -> int:
    """SwiGLU width ~ 8/3 · hidden, rounded to a multiple of 32 (128 → 352)."""
    return max(32, round(8 * hidden_size / 3 / 32) * 32)


def build_tiny_llama(
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 256,
    seed: int = 0,
    tie_word_embeddings: bool = False,
) -> LlamaForCausalLM:
    """A randomly initialised ``LlamaForCausalLM`` (float32, no dropout), deterministic in ``seed``.

    Vocab size and bos/eos/pad ids come from ``tokenizer``; ~0.81 M parameters at the defaults
    with the 22-token character tokenizer. The global torch RNG is left untouched.
    """
    ids = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or default_intermediate_size(hidden_size),
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        max_position_embeddings=max_position_embeddings,
        attention_dropout=0.0,
        tie_word_embeddings=tie_word_embeddings,
        **ids,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    for key, value in ids.items():
        setattr(model.generation_config, key, value)
    return model
