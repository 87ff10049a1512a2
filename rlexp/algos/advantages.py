"""Advantage estimators (theory.md §1–3): GAE, GRPO's group baseline, RLOO, REINFORCE++.

Conventions: token tensors are ``[B, T]`` (batch, completion time), right-padded; ``mask`` (bool or
float) is 1 on real completion tokens and 0 on padding. Padding never enters any result: padded
inputs are replaced by 0 before use (so even ``inf`` there is harmless) and outputs are 0 there.
Everything here is computed without gradient, in the dtype of the inputs.

The trainer calls estimators through ``ADVANTAGES`` with one signature,
``estimator(inputs: AdvantageInputs, **params) -> (advantages [B, T], returns [B, T] | None)``.
What each estimator needs from the rest of the run is declared once, at registration, in
``ESTIMATOR_REQUIREMENTS``; config validation asks ``estimator_requirements(name).critic``,
``.groups`` and ``.token_rewards``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from rlexp.algos.masks import local_mean_std, real_mask
from rlexp.runtime.registry import Registry

# Spread below FLAT_RTOL * max(1, |mean|) counts as none: scores equal up to float rounding
# (0.1 + 0.25 vs 0.35) must give advantage 0, not rounding noise divided by a tiny std.
FLAT_RTOL = 1e-6


def _flat_tol(dtype: torch.dtype) -> float:
    """Relative tolerance for "no spread"; never finer than a few ulps of ``dtype``."""
    return max(FLAT_RTOL, 4 * torch.finfo(dtype).eps)


# values [N] -> (count, mean, std). The default, ``local_mean_std``, uses torch's own reductions;
# data parallel runs pass ``rlexp.runtime.distributed.global_mean_std`` instead (every rank's
# values pooled), so the math here never communicates.
MeanStd = Callable[[Tensor], tuple[int, Tensor, Tensor]]


@torch.no_grad()
def discounted_returns(rewards: Tensor, real: Tensor, gamma: float) -> Tensor:
    """G_t = Σ_{k≥0} γ^k r_{t+k} over the real tokens, computed right to left: ``[B, T]``, 0 at
    padding. ``rewards`` must already be 0 at padding; ``real`` is the bool mask."""
    ret = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = torch.where(real[:, t], rewards[:, t] + gamma * running, 0)
        ret[:, t] = running
    return ret


@torch.no_grad()
def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016; theory.md §1).

    δ_t = r_t + γ V_{t+1} − V_t (V after the last real token is 0), A_t = δ_t + γλ A_{t+1}
    computed right to left; returns = A + V. Inputs and outputs ``[B, T]``, 0 at padding.
    """
    real = real_mask(mask)
    r = torch.where(real, rewards.detach(), 0).to(values.dtype)
    v = torch.where(real, values.detach(), 0)
    adv = torch.zeros_like(v)
    next_v = torch.zeros_like(v[:, 0])
    next_a = torch.zeros_like(v[:, 0])
    for t in reversed(range(v.shape[1])):
        delta = r[:, t] + gamma * next_v - v[:, t]
        next_a = torch.where(real[:, t], delta + gamma * lam * next_a, 0)
        adv[:, t] = next_a
        next_v = v[:, t]
    return adv, torch.where(real, adv + v, 0)


@torch.no_grad()
def masked_whiten(
    values: Tensor,
    mask: Tensor,
    shift_mean: bool = True,
    eps: float = 1e-8,
    mean_std: MeanStd = local_mean_std,
) -> Tensor:
    """Batch whitening of per-token values (theory.md §1, "Advantage whitening"), ``[B, T]``.

    Over the real tokens of the batch (as ``mean_std`` pools them: data parallel, every rank's):
    ``(x − mean) / (std + eps)``, std the unbiased one; ``shift_mean=False`` adds the mean back
    (only the scale changes, the sign of every value is kept). This is ``masked_whiten`` of
    OpenRLHF / TRL, whose default also subtracts the mean. Padding is 0 in the output; fewer than
    2 real tokens or no spread (as in ``batch_normalized``) leaves the values centred
    (``shift_mean``) or unchanged, never divided by a vanishing std.
    """
    real = real_mask(mask)
    x = torch.where(real, values.detach(), 0)
    n, mean, std = mean_std(x[real])
    if n < 2 or std <= _flat_tol(x.dtype) * mean.abs().clamp(min=1):
        out = x - mean if shift_mean and n > 0 else x
    else:
        out = (x - mean) / (std + eps) + (0 if shift_mean else mean)
    return torch.where(real, out, 0)


def _groups(n: int, group_size: int | None, group_ids: Tensor | None) -> tuple[Tensor, Tensor]:
    """Group index ``[N]`` (0..G-1) and group sizes ``[G]``; every group needs ≥ 2 members."""
    if group_size is not None and group_size < 2:
        raise ValueError(f"group_size must be >= 2 for a group baseline, got {group_size}")
    if group_ids is None:
        if group_size is None:
            raise ValueError("give group_size (contiguous groups) or group_ids")
        if n % group_size:
            raise ValueError(f"{n} scores do not split into groups of {group_size}")
        index = torch.arange(n) // group_size
        return index, torch.full((n // group_size,), group_size)
    if group_ids.shape != (n,):
        raise ValueError(f"group_ids has shape {tuple(group_ids.shape)}, expected ({n},)")
    ids, index, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    small = counts < 2
    if small.any():
        bad = ids[small].tolist()
        raise ValueError(f"groups need >= 2 samples for a baseline; group ids {bad} have 1")
    return index, counts


def _group_stats(scores: Tensor, index: Tensor, counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per sample: centred score r − mean_g, unbiased group std, and a "flat group" flag (all ``[N]``)."""
    index = index.to(scores.device)
    n_g = counts.to(device=scores.device, dtype=scores.dtype)
    mean = torch.zeros_like(n_g).index_add_(0, index, scores) / n_g
    centred = scores - mean[index]
    var = torch.zeros_like(n_g).index_add_(0, index, centred.square()) / (n_g - 1)
    std = var.sqrt()
    flat = std <= _flat_tol(scores.dtype) * mean.abs().clamp(min=1)
    flat = flat[index]
    return torch.where(flat, 0, centred), std[index], flat


@torch.no_grad()
def group_relative(
    scores: Tensor,
    group_size: int | None = None,
    normalize_std: bool = True,
    group_ids: Tensor | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """GRPO's group-relative advantage (Shao et al. 2024; theory.md §2): ``[N] -> [N]``.

    Â_i = (r_i − mean_g) / (std_g + eps), std_g the UNBIASED sample std of the group (Bessel's
    n − 1, like ``torch.std``). ``normalize_std=False`` gives r_i − mean_g (Dr.GRPO, Liu et al.
    2025). Groups are contiguous blocks of ``group_size`` when ``group_ids`` is None, else samples
    sharing an id in any order (sizes may then differ; ``group_size`` may be None). A group whose
    std is at most ``FLAT_RTOL · max(1, |mean|)`` has no spread and gets exactly 0.
    """
    index, counts = _groups(scores.shape[0], group_size, group_ids)
    centred, std, flat = _group_stats(scores.detach(), index, counts)
    if not normalize_std:
        return centred
    return torch.where(flat, 0, centred / (std + eps))


@torch.no_grad()
def leave_one_out(
    scores: Tensor, group_size: int | None = None, group_ids: Tensor | None = None
) -> Tensor:
    """RLOO advantage (Ahmadian et al. 2024): r_i − mean_{j≠i} r_j, ``[N] -> [N]``.

    Equals n/(n−1)·(r_i − mean_g); grouping as in ``group_relative``; flat groups give 0.
    """
    index, counts = _groups(scores.shape[0], group_size, group_ids)
    centred, _, _ = _group_stats(scores.detach(), index, counts)
    n = counts.to(device=scores.device, dtype=scores.dtype)[index.to(scores.device)]
    return centred * n / (n - 1)


@torch.no_grad()
def batch_normalized(
    rewards: Tensor,
    mask: Tensor,
    gamma: float,
    eps: float = 1e-8,
    mean_std: MeanStd = local_mean_std,
) -> tuple[Tensor, Tensor]:
    """REINFORCE++ (Hu 2025): whitened discounted returns, ``[B, T] -> ([B, T], [B, T])``.

    G_t = Σ_k γ^k r_{t+k} over real tokens; advantages = (G − mean) / (std + eps), mean and
    unbiased std over ALL real tokens of the batch (not per group), as ``mean_std`` pools them
    (data parallel: ``global_mean_std``, the global batch of every rank's tokens). Returns are
    G. No spread (as in ``group_relative``) or fewer than 2 real tokens gives advantage 0.
    """
    real = real_mask(mask)
    ret = discounted_returns(torch.where(real, rewards.detach(), 0), real, gamma)
    n, mean, std = mean_std(ret[real])
    if n < 2:
        return torch.zeros_like(ret), ret
    if std <= _flat_tol(ret.dtype) * mean.abs().clamp(min=1):
        return torch.zeros_like(ret), ret
    return torch.where(real, (ret - mean) / (std + eps), 0), ret


# ---------------------------------------------------------------- registry, one signature


@dataclass
class AdvantageInputs:
    """Everything an estimator may read; shapes: B sequences, T completion tokens."""

    token_rewards: Tensor  # [B, T] outcome on the last real token (+ any KL-in-reward penalty)
    scores: Tensor  # [B] sequence-level outcome score (what group baselines use)
    mask: Tensor  # [B, T] 1 on real completion tokens
    group_ids: Tensor  # [B] long, samples of one prompt share an id
    values: Tensor | None = None  # [B, T] critic values, None without a critic
    mean_std: MeanStd = local_mean_std  # batch moments; data parallel: pooled over ranks


@dataclass(frozen=True)
class EstimatorRequirements:
    """What an estimator needs and reads, declared at registration."""

    critic: bool  # reads ``values``: the run must train a critic
    groups: bool  # compares samples of one prompt: group_size must be >= 2
    token_rewards: (
        bool  # reads ``token_rewards`` (so a KL-in-reward penalty reaches it), not ``scores``
    )


Estimator = Callable[..., tuple[Tensor, Tensor | None]]
ADVANTAGES: Registry[Estimator] = Registry("advantage estimator")
ESTIMATOR_REQUIREMENTS: dict[str, EstimatorRequirements] = {}


def _register(
    name: str, *, critic: bool, groups: bool, token_rewards: bool
) -> Callable[[Estimator], Estimator]:
    """Register an estimator and its requirements together, so the two never drift apart."""

    def wrap(fn: Estimator) -> Estimator:
        ADVANTAGES.register(name)(fn)
        ESTIMATOR_REQUIREMENTS[name] = EstimatorRequirements(critic, groups, token_rewards)
        return fn

    return wrap


def estimator_requirements(name: str) -> EstimatorRequirements:
    """Requirements of estimator ``name``; unknown names fail listing the choices."""
    ADVANTAGES.get(name)
    return ESTIMATOR_REQUIREMENTS[name]


def _per_token(seq_adv: Tensor, mask: Tensor) -> Tensor:
    """Broadcast a per-sequence advantage ``[B]`` over the real tokens ``[B, T]``."""
    return torch.where(real_mask(mask), seq_adv[:, None], 0)


@_register("gae", critic=True, groups=False, token_rewards=True)
def _gae(
    inputs: AdvantageInputs, gamma: float = 1.0, lam: float = 0.95, whiten: bool = False
) -> tuple[Tensor, Tensor]:
    """GAE; ``whiten``: the advantages (not the value targets, which stay A + V) whitened
    over the batch's real tokens, mean subtracted."""
    if inputs.values is None:
        raise ValueError("advantage estimator 'gae' needs critic values (inputs.values is None)")
    adv, returns = gae(
        rewards=inputs.token_rewards, values=inputs.values, mask=inputs.mask, gamma=gamma, lam=lam
    )
    if whiten:
        adv = masked_whiten(adv, inputs.mask, mean_std=inputs.mean_std)
    return adv, returns


@_register("group_relative", critic=False, groups=True, token_rewards=False)
def _group_relative(
    inputs: AdvantageInputs,
    normalize_std: bool = True,
    std_scope: str = "group",
    eps: float = 1e-6,
) -> tuple[Tensor, None]:
    """``std_scope=batch``: ScaleRL's batch-level normalisation (Khatri et al. 2025), the
    group-centred r_i − mean_g divided by the std of all the batch's centred scores (pooled over
    data-parallel ranks)."""
    if std_scope not in ("group", "batch"):
        raise ValueError(f"advantage.std_scope={std_scope!r}: use group or batch")
    if std_scope == "batch" and normalize_std:
        centred = group_relative(
            inputs.scores, None, normalize_std=False, group_ids=inputs.group_ids
        )
        adv = centred / (inputs.mean_std(centred.float())[2] + eps)
    else:
        adv = group_relative(
            inputs.scores, None, normalize_std=normalize_std, group_ids=inputs.group_ids, eps=eps
        )
    return _per_token(adv, inputs.mask), None


@_register("leave_one_out", critic=False, groups=True, token_rewards=False)
def _leave_one_out(inputs: AdvantageInputs) -> tuple[Tensor, None]:
    adv = leave_one_out(inputs.scores, None, group_ids=inputs.group_ids)
    return _per_token(adv, inputs.mask), None


@_register("batch_normalized", critic=False, groups=False, token_rewards=True)
def _batch_normalized(inputs: AdvantageInputs, gamma: float = 1.0) -> tuple[Tensor, Tensor]:
    return batch_normalized(
        rewards=inputs.token_rewards, mask=inputs.mask, gamma=gamma, mean_std=inputs.mean_std
    )


@_register("outcome", critic=False, groups=False, token_rewards=False)
def _outcome(inputs: AdvantageInputs) -> tuple[Tensor, None]:
    """The raw outcome score as every token's advantage, no baseline (theory.md §5): with
    ``reward=exact_match`` this is (online) RFT's gradient coefficient 1[o correct]."""
    return _per_token(inputs.scores.to(torch.float32), inputs.mask), None
