"""The frozen KL reference π_ref of an RL run (theory.md §4)."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from torch import nn

from rlexp.models.load import load_policy
from rlexp.runtime.errors import ConfigError


class AdapterDisabledReference:
    """π_ref = the LoRA policy with its adapter switched off, i.e. its frozen base: the same
    weights, no second copy. Called like a model (``completion_logprobs`` accepts it)."""

    def __init__(self, policy: PeftModel) -> None:
        self.policy = policy

    def forward(self, **inputs):
        with torch.no_grad(), self.policy.disable_adapter():
            return self.policy(**inputs)

    __call__ = forward

    def get_base_model(self) -> nn.Module:
        return self.policy.get_base_model()


def build_reference(
    cfg, policy: nn.Module, base: str | Path | None, device: torch.device, dtype: torch.dtype
):
    """π_ref, or None without a KL term (``algorithm.kl.coef = 0``).

    ``model.ref_path`` → that checkpoint; a LoRA policy → itself with the adapter off; otherwise
    a frozen copy of the start model (``base``, or the seeded fresh model when there is none).
    """
    if cfg.algorithm.kl.coef == 0:
        return None
    ref_path = cfg.model.get("ref_path")
    if ref_path:
        ref = load_policy(ref_path, device, dtype)[0]
        if ref.config.vocab_size != policy.config.vocab_size:
            raise ConfigError(
                f"model.ref_path={ref_path} has vocab_size={ref.config.vocab_size}, but the "
                f"policy has {policy.config.vocab_size}: the reference must share the tokenizer"
            )
    elif isinstance(policy, PeftModel):
        return AdapterDisabledReference(policy)
    elif base is not None:
        ref = load_policy(base, device, dtype)[0]
    else:  # a fresh tiny model: rebuilt from its seed, so also right after a resume
        from rlexp.models.build import init_model

        ref = init_model(cfg, device, dtype)[0]
    return ref.eval().requires_grad_(False)
