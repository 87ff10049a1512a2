"""Token masks and the local batch moments every estimator, loss and statistic shares.

A completion ``mask`` is ``[B, T]``, bool or float, 1 (``True``) on real completion tokens and 0
on padding; ``real_mask`` is its one bool view. ``local_mean_std`` gives the moments of a 1-D
tensor with torch's own reductions (what a single process computes; data parallel runs pool
over ranks in ``rlexp.runtime.distributed.global_mean_std``, which falls back to it).
"""

from __future__ import annotations

import torch
from torch import Tensor


def real_mask(mask: Tensor) -> Tensor:
    """Bool view of a bool or float mask: ``mask`` itself when bool, else ``mask > 0``."""
    return mask if mask.dtype == torch.bool else mask > 0


def local_mean_std(values: Tensor) -> tuple[int, Tensor, Tensor]:
    """(count, mean, unbiased std) of a 1-D tensor, torch's own reductions; std 0 below 2 values
    (mean and std 0 for no value)."""
    n = values.numel()
    zero = values.new_zeros(())
    if n == 0:
        return 0, zero, zero
    return n, values.mean(), values.std() if n > 1 else zero
