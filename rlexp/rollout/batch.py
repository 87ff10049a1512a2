"""The rollout batch: every per-sample tensor the update needs, indexed and joined alike."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass
class RolloutBatch:
    prompt_ids: Tensor  # [B, P] left-padded
    prompt_mask: Tensor  # [B, P]
    completion_ids: Tensor  # [B, T] right-padded
    completion_mask: Tensor  # [B, T] 1 on real tokens incl. EOS
    old_logp: Tensor  # [B, T] behaviour log-probs (rollout temperature)
    group_ids: Tensor  # [B] long
    scores: Tensor  # [B] outcome reward
    correct: Tensor  # [B] bool, the task's verifier
    truncated: Tensor  # [B] bool, no EOS within max_new_tokens
    token_rewards: Tensor  # [B, T] outcome on the last real token (+ KL penalty if in reward)
    ref_logp: Tensor | None = None  # [B, T] frozen reference
    sampler_logp: Tensor | None = None  # [B, T] the sampler's own, when old_logp was recomputed
    values: Tensor | None = None  # [B, T] critic V(s_t) at rollout time
    advantages: Tensor | None = None  # [B, T]
    returns: Tensor | None = None  # [B, T] value targets

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    def select(self, index: Tensor) -> RolloutBatch:
        """The samples at ``index`` (a minibatch), every per-sample tensor indexed alike."""
        return replace(
            self,
            **{
                f.name: getattr(self, f.name)[index]
                for f in fields(self)
                if getattr(self, f.name) is not None
            },
        )


def concat_batches(parts: list[RolloutBatch], pad_id: int) -> RolloutBatch:
    """One batch from several: prompts re-padded on the left, completions on the right."""
    if len(parts) == 1:
        return parts[0]
    width_p = max(b.prompt_ids.shape[1] for b in parts)
    width_t = max(b.completion_ids.shape[1] for b in parts)
    out = {}
    for f in fields(RolloutBatch):
        values = [getattr(b, f.name) for b in parts]
        if values[0] is None:
            out[f.name] = None
            continue
        if values[0].dim() == 2:
            left = f.name.startswith("prompt")
            fill = pad_id if f.name.endswith("_ids") else 0
            width = width_p if left else width_t
            values = [pad_to_width(v, width, fill, left) for v in values]
        out[f.name] = torch.cat(values)
    return RolloutBatch(**out)


def pad_to_width(x: Tensor, width: int, fill: float, left: bool) -> Tensor:
    """``x [B, T]`` padded with ``fill`` to ``[B, width]``, on the left or the right."""
    extra = width - x.shape[1]
    if extra == 0:
        return x
    pad = torch.full((x.shape[0], extra), fill, dtype=x.dtype, device=x.device)
    return torch.cat([pad, x] if left else [x, pad], dim=1)


def last_token_rewards(scores: Tensor, mask: Tensor) -> Tensor:
    """``[B, T]`` zeros with each score on its sequence's last real token."""
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    last = (mask.sum(1) - 1).clamp(min=0).long()
    out[torch.arange(len(scores), device=mask.device), last] = scores.float()
    return out * mask
