"""The critic: the policy's backbone with a scalar value head, initialised from the policy."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import AutoModel

from rlexp.models.logprobs import build_attention_inputs


class ValueModel(nn.Module):
    """V(s_t) for every position: ``forward(...) -> [B, L]``."""

    def __init__(self, backbone: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_policy(cls, policy: nn.Module) -> ValueModel:
        backbone = copy.deepcopy(policy.base_model)
        model = cls(backbone, policy.config.hidden_size)
        return model.to(next(policy.parameters()).device)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        hidden = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1)

    def save_pretrained(
        self, path: str | Path, state_dict: dict[str, Tensor] | None = None
    ) -> None:
        """The backbone as an HF folder plus ``value_head.safetensors``; ``state_dict`` (this
        module's, e.g. gathered from shards) replaces the live weights."""
        path = Path(path)
        if state_dict is None:
            self.backbone.save_pretrained(path)
            save_file(self.head.state_dict(), str(path / "value_head.safetensors"))
            return
        part = {
            k: {n[len(k) + 1 :]: v for n, v in state_dict.items() if n.startswith(f"{k}.")}
            for k in ("backbone", "head")
        }
        self.backbone.save_pretrained(path, state_dict=part["backbone"])
        save_file(
            {k: v.contiguous() for k, v in part["head"].items()},
            str(path / "value_head.safetensors"),
        )

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: torch.device, dtype: torch.dtype | None = None
    ) -> ValueModel:
        """The critic saved by ``save_pretrained``: backbone in ``dtype`` (default: as saved)."""
        path = Path(path)
        backbone = AutoModel.from_pretrained(path, dtype=dtype or "auto", local_files_only=True)
        model = cls(backbone, backbone.config.hidden_size)
        model.head.load_state_dict(load_file(str(path / "value_head.safetensors")))
        return model.to(device)


def completion_values(
    critic: nn.Module,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
) -> Tensor:
    """V(s_t) for each completion token t, ``[B, T]`` in float32: the critic's value at the
    position that predicts token t (inputs laid out as for ``completion_logprobs``).
    Differentiable; padded positions are not zeroed."""
    ids, attn, pos = build_attention_inputs(
        prompt_ids, prompt_mask, completion_ids, completion_mask
    )
    p, t = prompt_ids.shape[1], completion_ids.shape[1]
    return critic(ids, attn, pos)[:, p - 1 : p + t - 1].float()
