"""Per-token log-probabilities (and entropies) of completions under a causal LM.

Layout: prompts are LEFT-padded ``[B, P]``, completions RIGHT-padded ``[B, T]``; masks are 1 on
real tokens (the completion mask includes the EOS that ended a row). Position ids follow the
attention mask, so a prompt scores the same however much left padding it carries.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Position ids ``[B, S]`` = cumsum of the ``[B, S]`` mask − 1, clamped at 0 (pads get 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def build_attention_inputs(
    prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor, completion_mask: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Concatenate prompt ``[B, P]`` and completion ``[B, T]`` into one model input.

    Returns ``(input_ids, attention_mask, position_ids)``, each ``[B, P + T]``.
    """
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1).long()
    return input_ids, attention_mask, position_ids_from_mask(attention_mask)


def token_logprobs(
    logits: Tensor, tokens: Tensor, with_entropy: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """``log softmax(logits)`` at ``tokens`` without materialising the full log-softmax.

    logits ``[..., V]``, tokens ``[...]`` → logp ``[...]``; with ``with_entropy`` also the entropy
    ``−Σ p log p`` ``[...]``. Computed as ``logit[token] − logsumexp(logits)``.
    """
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse
    if not with_entropy:
        return logp
    # H = −Σ p (z − lse) = lse − Σ p z, with p = exp(z − lse).
    probs = torch.exp(logits - lse.unsqueeze(-1))
    entropy = lse - (probs * logits).sum(-1)
    return logp, entropy


def _accepts_logits_to_keep(model: nn.Module) -> bool:
    # a peft model (LoRA) forwards **kwargs to the HF model it wraps: ask that one
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def completion_logprobs(
    model: nn.Module,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Log-probs ``[B, T]`` of the completion tokens under ``softmax(logits / temperature)``.

    One forward over the ``[B, P + T]`` concatenation; the logits at positions ``P−1 … P+T−2``
    score the completion tokens. Only those ``T`` positions go through the LM head when the model
    supports ``logits_to_keep``. Differentiable. Padded positions (``completion_mask == 0``) are 0.
    With ``with_entropy`` returns ``(logp, entropy)``, both ``[B, T]``.
    """
    input_ids, attention_mask, position_ids = build_attention_inputs(
        prompt_ids, prompt_mask, completion_ids, completion_mask
    )
    T = completion_ids.shape[1]
    kwargs = {"logits_to_keep": T + 1} if _accepts_logits_to_keep(model) else {}
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
        **kwargs,
    ).logits
    logits = logits[:, -(T + 1) : -1].float()  # [B, T, V]: position i predicts token i + 1
    if temperature != 1.0:
        logits = logits / temperature
    out = token_logprobs(logits, completion_ids, with_entropy)
    valid = completion_mask.bool()
    if with_entropy:
        logp, entropy = out
        return logp.where(valid, 0.0), entropy.where(valid, 0.0)
    return out.where(valid, 0.0)
