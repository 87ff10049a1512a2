"""FP32 LM-head logits (``model.fp32_lm_head``; ScaleRL, Khatri et al. 2025 §3, after MiniMax-M1):
the logits h·Wᵀ of a bf16/fp16 model computed in float32, hidden state and head weights upcast,
so that the probabilities the sampler draws from and the ones the trainer's ratio uses do not
differ by the rounding of the logits to 8 mantissa bits. In a float32 model it changes nothing.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class FP32Linear(nn.Linear):
    """An ``nn.Linear`` whose product is taken in float32; its parameters keep their dtype (the
    state dict, checkpoints and the optimizer see no difference)."""

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.float()
        return F.linear(x.float(), self.weight.float(), bias)


def use_fp32_lm_head(model: nn.Module) -> None:
    """Compute ``model``'s logits in float32 from now on (and in its deep copies)."""
    head = model.get_output_embeddings()
    if type(head) is nn.Linear:
        head.__class__ = FP32Linear  # the same module and parameters, another forward
    elif not isinstance(head, FP32Linear):
        raise TypeError(f"model.fp32_lm_head: cannot upcast a {type(head).__name__} head")
