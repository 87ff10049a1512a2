"""Reward shaping as pure functions of tensors (theory.md §3)."""

from __future__ import annotations

import torch
from torch import Tensor


def overlong_penalty(lengths: Tensor, max_len: int, cache_len: int) -> Tensor:
    """DAPO's soft overlong punishment (theory.md §3), per completion length ``[B]``:
    0 if |o| ≤ L_max − L_cache; ((L_max − L_cache) − |o|) / L_cache inside the window; −1 beyond
    L_max."""
    if not 0 < cache_len <= max_len:
        raise ValueError(
            f"need 0 < cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}"
        )
    lengths = lengths.to(torch.float32)
    soft = (max_len - cache_len - lengths) / cache_len
    return torch.where(lengths > max_len, torch.full_like(soft, -1.0), soft.clamp(max=0.0))
