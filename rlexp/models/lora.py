"""LoRA adapters on the policy (peft): ``W x + (α/r)·B A x`` with ``W`` frozen and ``B = 0`` at the
start, so the wrapped policy starts out equal to its base (Hu et al. 2021)."""

from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn


def lora_enabled(lora_cfg) -> bool:
    return lora_cfg is not None and lora_cfg.r > 0


def apply_lora(policy: nn.Module, lora_cfg) -> nn.Module:
    """The policy with fresh LoRA adapters from ``model.lora``; unchanged when LoRA is off
    (``r: 0``) or the policy already carries an adapter (loaded from a LoRA checkpoint)."""
    if not lora_enabled(lora_cfg) or isinstance(policy, PeftModel):
        return policy
    targets = list(lora_cfg.target_modules)
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=lora_cfg.r,
        lora_alpha=lora_cfg.alpha if lora_cfg.alpha is not None else 2 * lora_cfg.r,
        lora_dropout=lora_cfg.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
    )
    return get_peft_model(policy, config)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What the optimizer updates: every parameter, or only the adapters of a LoRA policy."""
    return [p for p in model.parameters() if p.requires_grad]
