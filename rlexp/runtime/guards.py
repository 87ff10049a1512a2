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


PARAM_NORM_GROWTH = (
    10.0  # the parameter norm may grow this much over a run before it counts as diverged
)


def check_parameter_norm(
    norm: float, start: float, name: str, max_growth: float = PARAM_NORM_GROWTH
) -> None:
    """After an update: ``FloatingPointError`` when the parameter norm is NaN/inf or more than
    ``max_growth`` × its value at the start of the run. Exploded but finite weights (±1e9) are
    caught at the step that made them, before they are saved as a checkpoint."""
    if math.isfinite(norm) and norm <= max_growth * start:
        return
    raise FloatingPointError(
        f"{name} parameter norm {norm:.4g} after the update, {norm / start:.3g}× its {start:.4g} "
        f"at the start of the run (the limit is {max_growth:g}×): the update diverged"
    )
