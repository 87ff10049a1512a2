"""Guards that stop a diverged run: a NaN or inf raises ``FloatingPointError`` naming what held it.

Raised before the optimizer step (or the log row), so nothing of the failed step reaches the
weights, a checkpoint or metrics.jsonl; the trainers add the step and the checkpoint to go back to.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor


def check_finite(x: Tensor, name: str, context: str = "") -> None:
    """Raise ``FloatingPointError("non-finite <name> (<detail>)<context>")`` when ``x`` holds a NaN
    or an inf; the detail is the value of a 0-dim tensor, else how many of its values are bad."""
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    detail = f"{float(x)}" if x.dim() == 0 else f"{int((~finite).sum())} of {x.numel()} values"
    raise FloatingPointError(f"non-finite {name} ({detail}){context}")


def check_finite_metrics(row: Mapping[str, float], keys: Iterable[str], context: str = "") -> None:
    """Raise ``FloatingPointError("non-finite <key> = <value><context>")`` for the first of
    ``keys`` whose value in ``row`` is a NaN or an inf (keys missing from ``row`` are skipped)."""
    for key in keys:
        value = row.get(key)
        if value is not None and not math.isfinite(value):
            raise FloatingPointError(f"non-finite {key} = {value}{context}")
