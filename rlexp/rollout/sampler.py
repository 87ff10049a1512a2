"""Batched sampling with a KV cache: prompts ``[B, P]`` → completions ``[B, T]``.

Two decoders share one sampling loop (one forward per generated position for the whole batch):

* ``"fast"``: for Llama-family models (``LlamaForCausalLM``, ``Qwen2ForCausalLM``) a hand-written
  decode step on the HF module's own weights, with a preallocated KV cache and a handful of ops
  per layer. At small sizes a decode step is pure framework overhead, which this removes.
* ``"generic"``: the HF forward with a ``DynamicCache``, for any causal LM.

``backend="auto"`` picks ``"fast"`` when :func:`fast_path_supported`, unless the environment
variable ``RLEXP_SAMPLER_BACKEND`` names a backend.

Behaviour log-probs: ``logp`` is the log-prob of each sampled token under the temperature-scaled,
UN-truncated distribution ``softmax(logits / temperature)``, i.e. exactly what
``completion_logprobs(..., temperature)`` recomputes. With ``top_p < 1`` tokens are drawn from the
nucleus-truncated distribution, but ``logp`` stays the full one (so importance ratios against the
training forward are consistent). Greedy decoding reports ``logp`` at temperature 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from rlexp.rollout.decoders import GenericDecoder, LlamaDecoder, fast_path_supported

BACKEND_ENV = "RLEXP_SAMPLER_BACKEND"


@dataclass
class Samples:
    """Sampled completions; all ``[B, T]`` tensors are right-padded to the longest completion."""

    completion_ids: Tensor  # [B, T] right-padded with pad_token_id
    completion_mask: Tensor  # [B, T] 1 on real tokens incl. the EOS, 0 after it
    logp: Tensor  # [B, T] behaviour log-probs of the sampled tokens, 0 on padding
    truncated: Tensor  # [B] bool, hit max_new_tokens without EOS


class _Decoder(Protocol):
    def prefill(self) -> Tensor: ...  # next-token logits [B, V]

    def step(self, tokens: Tensor, t: int) -> Tensor: ...  # feed generated token t [B] → [B, V]


# --------------------------------------------------------------------------- sampling


def next_tokens(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw one token per row from logits ``[B, V]``; returns ``(tokens [B], logp [B])``.

    ``logp`` is under ``softmax(logits / temperature)`` (temperature 1 when greedy), never the
    nucleus-truncated distribution. Sampling inverts the CDF with one uniform per row.
    """
    if greedy:
        tokens = logits.argmax(-1)
        return tokens, logits.log_softmax(-1).gather(1, tokens[:, None]).squeeze(1)
    logprobs = (logits / temperature if temperature != 1.0 else logits).log_softmax(-1)
    probs = logprobs.exp()
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device)
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # mass before the token < top_p
        cdf = sorted_p.where(keep, 0.0).cumsum(-1)
        idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
        idx = torch.minimum(idx, keep.sum(-1, keepdim=True) - 1)
        tokens = order.gather(1, idx).squeeze(1)
    else:
        cdf = probs.cumsum(-1)
        idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
        tokens = idx.clamp_max(probs.shape[1] - 1).squeeze(1)
    return tokens, logprobs.gather(1, tokens[:, None]).squeeze(1)


def _finish(tokens: Tensor, logp: Tensor, eos: Tensor, pad_token_id: int) -> Samples:
    """Mask everything after each row's first EOS; tokens, logp ``[B, T]``."""
    is_eos = torch.isin(tokens, eos)
    eos_before = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    mask = ~eos_before
    return Samples(
        completion_ids=tokens.where(mask, pad_token_id),
        completion_mask=mask.long(),
        logp=logp.where(mask, 0.0),
        truncated=~is_eos.any(1),
    )


# --------------------------------------------------------------------------- generic decoder


# --------------------------------------------------------------------------- fast Llama path


# --------------------------------------------------------------------------- public API


def select_backend(model: nn.Module, backend: str = "auto") -> str:
    """Resolve ``"auto"`` (or env ``RLEXP_SAMPLER_BACKEND``) to ``"fast"`` or ``"generic"``."""
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "auto")
    if backend == "auto":
        return "fast" if fast_path_supported(model) else "generic"
    if backend not in ("fast", "generic"):
        raise ValueError(f"unknown sampler backend {backend!r}; choose auto, fast or generic")
    if backend == "fast" and not fast_path_supported(model):
        raise ValueError(f"fast sampler does not support {type(model).__name__}")
    return backend


@torch.no_grad()
def sample(
    model: nn.Module,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    *,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int],
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> Samples:
    """Sample completions for left-padded prompts ``[B, P]`` (mask 1 = real token).

    One forward over the prompts, then one batched forward per generated position; stops when
    every row has emitted EOS or after ``max_new_tokens``. ``T`` is the longest completion. See the
    module docstring for ``logp`` and ``backend``. Reproducible given ``generator``.
    """
    if max_new_tokens < 1 or not 0.0 < top_p <= 1.0 or (temperature <= 0.0 and not greedy):
        raise ValueError("need max_new_tokens >= 1, 0 < top_p <= 1 and temperature > 0")
    eos = torch.as_tensor(eos_token_id, device=prompt_ids.device).reshape(-1)
    use_fast = select_backend(model, backend) == "fast"
    with torch.inference_mode():
        make = LlamaDecoder if use_fast else GenericDecoder
        decoder: _Decoder = make(model, prompt_ids, prompt_mask, max_new_tokens)
        B = prompt_ids.shape[0]
        tokens = torch.empty(B, max_new_tokens, dtype=torch.long, device=prompt_ids.device)
        logp = torch.empty(B, max_new_tokens, device=prompt_ids.device)
        done = torch.zeros(B, dtype=torch.bool, device=prompt_ids.device)
        logits = decoder.prefill()
        for t in range(max_new_tokens):
            tok, lp = next_tokens(
                logits, temperature=temperature, top_p=top_p, greedy=greedy, generator=generator
            )
            tokens[:, t], logp[:, t] = tok, lp
            done |= torch.isin(tok, eos)
            if t + 1 == max_new_tokens or bool(done.all()):
                break
            logits = decoder.step(tok, t)
    # Outside inference mode, so the results are ordinary tensors that autograd may save.
    return _finish(tokens[:, : t + 1], logp[:, : t + 1], eos, pad_token_id)
