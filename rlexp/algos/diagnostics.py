"""Bias / variance diagnostics of advantage estimators (theory.md §1: why λ exists).

GAE's λ trades bias for variance: λ = 1 gives the Monte-Carlo advantage Σ_k γ^k r_{t+k} − V_t
(unbiased, noisy), λ = 0 the one-step TD error (quiet, as biased as the critic). Comparing the
estimator's advantages with the Monte-Carlo ones *of the same rollouts* makes the trade-off
visible during training: the variance falls and the disagreement (MSE, 1 − correlation) grows
as λ shrinks. The critic's fit is measured by its explained variance of the returns.

Conventions as in ``rlexp.algos.advantages``: token tensors ``[B, T]``, right-padded; ``mask`` (bool
or float) is 1 on real completion tokens. Statistics pool all real tokens of the batch; padding
never enters them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlexp.algos.advantages import discounted_returns
from rlexp.algos.masks import real_mask


@torch.no_grad()
def mc_advantages(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Monte-Carlo advantages G_t − V_t, G_t = Σ_{k≥0} γ^k r_{t+k} over the real tokens.

    rewards, values, mask: ``[B, T]``. Returns ``[B, T]``, 0 at padding. Equals GAE with λ = 1.
    """
    real = real_mask(mask)
    r = torch.where(real, rewards.detach(), 0).to(values.dtype)
    return torch.where(real, discounted_returns(r, real, gamma) - values.detach(), 0)


def masked_var(x: Tensor, mask: Tensor) -> Tensor:
    """Unbiased variance (n − 1) of ``x`` over the real tokens; NaN with fewer than 2.

    Unbiased to match ``adv/std`` (torch.std), so adv/var = adv/std².
    """
    vals = x[real_mask(mask)].double()
    if vals.numel() < 2:
        return torch.tensor(float("nan"), dtype=torch.float64)
    return vals.var()


@torch.no_grad()
def advantage_diagnostics(advantages: Tensor, reference: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """How an estimator's advantages compare with reference (Monte-Carlo) ones, token by token.

    advantages, reference, mask: ``[B, T]``; statistics over the N real tokens, in float64:
    - ``var``: unbiased variance of the advantages;
    - ``mc_var``: unbiased variance of the reference;
    - ``mc_corr``: Pearson correlation of the two (NaN when either is constant or N < 2);
    - ``mc_mse``: mean over tokens of (A − A_MC)² (NaN when N = 0).
    Returns 0-dim tensors.
    """
    real = real_mask(mask)
    a, m = advantages[real].double(), reference[real].double()
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    out = {"var": masked_var(advantages, mask), "mc_var": masked_var(reference, mask)}
    out["mc_mse"] = (a - m).square().mean() if a.numel() else nan
    if a.numel() < 2:
        return out | {"mc_corr": nan}
    da, dm = a - a.mean(), m - m.mean()
    norm = (da.square().sum() * dm.square().sum()).sqrt()
    # a constant side (all-zero advantages, an untrained critic on a flat batch) has no correlation
    tiny = norm <= 1e-12 * max(1.0, float(a.abs().max()), float(m.abs().max())) ** 2
    out["mc_corr"] = nan if tiny else (da * dm).sum() / norm
    return out


def explained_variance_from_moments(
    n: int, var_returns: Tensor | float, var_residual: Tensor | float
) -> float:
    """1 − Var(R − V) / Var(R) from the unbiased variances of the returns R and of the residuals
    R − V over ``n`` real tokens (already pooled over ranks by the caller when data parallel);
    nan (undefined) when n < 2 or Var(R) is 0."""
    if n < 2 or var_returns == 0:
        return float("nan")
    return float(1 - var_residual / var_returns)


@torch.no_grad()
def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """1 − Var(R − V) / Var(R) over real tokens ``[B, T]``, in float64; nan when Var(R) is 0
    (undefined) or there are fewer than 2 real tokens."""
    real = real_mask(mask)
    r, v = returns[real].double(), values[real].double()
    if r.numel() < 2:
        return float("nan")
    return explained_variance_from_moments(r.numel(), r.var(), (r - v).var())
