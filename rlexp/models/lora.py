"""LoRA adapters on the policy (peft): ``W x + (α/r)·B A x`` with ``W`` frozen and ``B = 0`` at the
start, so the wrapped policy starts out equal to its base (Hu et al. 2021)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import Tensor, nn

from rlexp.runtime.sharding import full, full_items


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


def merged_weights(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """The model's weights under the names of its plain HF checkpoint, one tensor at a time
    (a sharded model's gathered whole, one all-gather each); for a LoRA policy the merged
    ``W + (α/r)·B A`` of every adapted layer (the model itself is left unchanged), so an
    inference engine that knows only the base architecture serves the current policy."""
    with torch.no_grad():
        if not isinstance(model, PeftModel):
            yield from full_items(model.state_dict().items())
            return
        base, adapter = model.get_base_model(), model.active_adapter
        adapted = {
            f"{name}.weight": module
            for name, module in base.named_modules()
            if isinstance(module, LoraLayer) and adapter in module.lora_A and not module.merged
        }
        for name, tensor in base.state_dict().items():
            if ".lora_" in name:
                continue
            name = name.replace(".base_layer.", ".")
            weight = full(tensor)
            if name in adapted:
                weight = weight + full(adapted[name].get_delta_weight(adapter)).to(weight.dtype)
            yield name, weight
