"""Policy, preference (DPO/IPO) and value losses, and their aggregation over tokens
(theory.md §1–3, §5).

Per-token tensors are ``[B, T]``; ``mask`` (bool or float) is 1 on real completion tokens. Padding
never reaches a loss, a gradient or a statistic: padded entries are replaced by 0 before use, so
even ``inf``/``nan`` there is harmless. Sequences with no real token are left out of every mean.

Gradient accumulation: a minibatch split into micro-batches gives exactly the full-batch gradient
when every micro-batch passes ``global_denominator=aggregation_denominator(full_mask, agg)`` and
the micro-batch losses are summed (not averaged).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rlexp.algos.masks import real_mask
from rlexp.runtime.registry import Registry

AGG_MODES = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
    "prompt-mean-token-mean",
)
PER_ROW_MODES = frozenset({"prompt-mean-token-mean"})  # denominators per row: prompt_denominators
LOG_RATIO_CLAMP = 20.0  # |log ρ| beyond 20 is a broken rollout, not a ratio; keeps exp finite


def _check_mode(mode: str) -> None:
    if mode not in AGG_MODES:
        raise ValueError(
            f"unknown loss aggregation {mode!r}; choose one of: {', '.join(AGG_MODES)}"
        )


def aggregation_denominator(mask: Tensor, mode: str) -> float:
    """The denominator ``aggregate`` uses for this mask: real tokens (token-mean) or non-empty
    sequences (seq-mean-*). Compute it on the FULL minibatch, pass it to every micro-batch.
    (prompt-mean-token-mean has one per row: ``prompt_denominators``.)"""
    _check_mode(mode)
    if mode in PER_ROW_MODES:
        raise ValueError(f"{mode} has a denominator per row: use prompt_denominators")
    real = real_mask(mask)
    count = real.sum() if mode == "token-mean" else real.any(dim=1).sum()
    return float(count)


def prompt_denominators(mask: Tensor, group_ids: Tensor, n_prompts: float | None = None) -> Tensor:
    """Per-row denominators ``[B]`` of prompt-mean-token-mean: P·N(g(b)), with N(g) the real
    tokens of prompt g's samples in the batch and P the prompts with a real token (``n_prompts``:
    their number over every data-parallel rank). Compute on the FULL minibatch; slice per
    micro-batch."""
    n_tok = real_mask(mask).sum(1).to(torch.float64)
    _, group = torch.unique(group_ids, return_inverse=True)
    per_group = torch.zeros(int(group.max()) + 1 if len(group) else 0, dtype=torch.float64)
    per_group = per_group.to(n_tok.device).index_add_(0, group, n_tok)
    prompts = float((per_group > 0).sum()) if n_prompts is None else n_prompts
    return (max(prompts, 1.0) * per_group[group].clamp(min=1)).to(torch.float32)


def aggregate(
    loss_mat: Tensor,
    mask: Tensor,
    mode: str,
    norm_len: float | None = None,
    global_denominator: float | Tensor | None = None,
) -> Tensor:
    """Reduce per-token losses ``[B, T]`` to a scalar (theory.md §3, "Loss aggregation").

    - token-mean: Σ_{b,t} mℓ / Σ_{b,t} m (DAPO)
    - seq-mean-token-mean: mean_b (Σ_t mℓ / Σ_t m) (GRPO)
    - seq-mean-token-sum: mean_b Σ_t mℓ
    - seq-mean-token-sum-norm: mean_b Σ_t mℓ / norm_len, norm_len defaults to the padded T (Dr.GRPO);
      pass it explicitly when micro-batches are padded to different lengths.
    - prompt-mean-token-mean: mean_g (Σ_{b∈g,t} mℓ / Σ_{b∈g,t} m) over prompts g (ScaleRL's
      prompt-level averaging); ``global_denominator`` must be ``prompt_denominators``' rows.
    Sequence means skip sequences with no real token. ``global_denominator`` replaces the local
    denominator (token count, or number of non-empty sequences) so micro-batch losses sum to the
    full-batch loss; see ``aggregation_denominator``. No real token at all gives 0 (with a graph).
    """
    _check_mode(mode)
    real = real_mask(mask)
    masked = torch.where(real, loss_mat, 0)
    if mode in PER_ROW_MODES:
        if not isinstance(global_denominator, Tensor):
            raise ValueError(f"{mode} needs per-row denominators (prompt_denominators)")
        return (masked.sum(dim=1) / global_denominator.to(masked.dtype)).sum()
    if mode == "token-mean":
        num = masked.sum()
        den = real.sum().clamp(min=1) if global_denominator is None else global_denominator
        return num / den
    seq_sum = masked.sum(dim=1)
    n_tok = real.sum(dim=1)
    if mode == "seq-mean-token-mean":
        per_seq = seq_sum / n_tok.clamp(min=1)
    elif mode == "seq-mean-token-sum":
        per_seq = seq_sum
    else:
        per_seq = seq_sum / (loss_mat.shape[1] if norm_len is None else norm_len)
    nonempty = n_tok > 0
    num = torch.where(nonempty, per_seq, 0).sum()
    den = nonempty.sum().clamp(min=1) if global_denominator is None else global_denominator
    return num / den


def _token_mean(x: Tensor, real: Tensor) -> Tensor:
    """Detached mean of ``x`` over real tokens (0 when there is none)."""
    return (torch.where(real, x, 0).sum() / real.sum().clamp(min=1)).detach()


def _ratio_stats(ratio: Tensor, log_ratio: Tensor, real: Tensor) -> dict[str, Tensor]:
    """approx_kl = mean of (ρ − 1) − log ρ, the k3 estimate of KL(π_old‖π_θ) on π_old's samples."""
    big = torch.where(real, ratio, float("-inf")).max() if real.any() else ratio.new_zeros(())
    return {
        "approx_kl": _token_mean(ratio - 1 - log_ratio, real),
        "ratio_mean": _token_mean(ratio, real),
        "ratio_max": big.detach(),
    }


def _check_dual_clip(dual_clip: float | None) -> None:
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")


def _clipped_surrogate(
    ratio: Tensor,
    tested: Tensor,
    adv: Tensor,
    real: Tensor,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token clipped surrogate −min(ρA, clip(ρ, 1−clip_low, 1+clip_high)A) ``[B, T]``, bounded
    by −c·A where A < 0 with ``dual_clip=c``, and the bool flags of where each clip is active.

    ``ratio`` is the per-token ratio that carries the gradient; ``tested`` the ratio the clip
    range is tested on (``ratio`` itself in PPO, the sequence ratio ``[B, 1]`` in GSPO). Flags,
    keyed by their stat names: clip_frac (either clip), clip_frac_low (A < 0, below the range),
    clip_frac_high (A > 0, above it), dual_clip_frac.
    """
    clipped_high = real & (adv > 0) & (tested > 1 + clip_high)
    clipped_low = real & (adv < 0) & (tested < 1 - clip_low)
    clipped = clipped_high | clipped_low
    # where the clip is active the clipped term is a constant: no gradient, as in min(…)
    clipped_ratio = ratio.clamp(1 - clip_low, 1 + clip_high).detach()
    loss_mat = -torch.where(clipped, clipped_ratio, ratio) * adv
    dual = torch.zeros_like(real)
    if dual_clip is not None:
        dual = real & (adv < 0) & (loss_mat > -dual_clip * adv)
        loss_mat = torch.where(dual, -dual_clip * adv, loss_mat)
    flags = {
        "clip_frac": clipped,
        "clip_frac_low": clipped_low,
        "clip_frac_high": clipped_high,
        "dual_clip_frac": dual,
    }
    return loss_mat, flags


def ppo_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    agg: str = "token-mean",
    norm_len: float | None = None,
    global_denominator: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate (Schulman et al. 2017; theory.md §1), to minimise. Inputs ``[B, T]``.

    ρ = exp(logp − old_logp), log ρ clamped to ±20; ℓ = −min(ρA, clip(ρ, 1−clip_low, 1+clip_high)A)
    (asymmetric clip: DAPO, Yu et al. 2025). ``dual_clip=c > 1`` (Ye et al. 2020) bounds ℓ by −c·A
    where A < 0. Aggregated by ``aggregate(…, agg, norm_len, global_denominator)``; differentiable
    in ``logp`` only. Stats are detached 0-d tensors over real tokens: clip_frac (either clip
    active), clip_frac_low (A < 0, ρ < 1−clip_low), clip_frac_high (A > 0, ρ > 1+clip_high),
    dual_clip_frac, approx_kl (mean (ρ − 1) − log ρ, k3 for KL(π_old‖π_θ)), ratio_mean, ratio_max.
    """
    _check_dual_clip(dual_clip)
    real = real_mask(mask)
    log_ratio = torch.where(real, logp - old_logp.detach(), 0).clamp(
        -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP
    )
    ratio = torch.exp(log_ratio)
    adv = torch.where(real, advantages.detach(), 0)
    loss_mat, flags = _clipped_surrogate(ratio, ratio, adv, real, clip_low, clip_high, dual_clip)
    loss = aggregate(loss_mat, real, agg, norm_len, global_denominator)
    stats = {k: _token_mean(flag.to(ratio.dtype), real) for k, flag in flags.items()}
    stats |= _ratio_stats(ratio, log_ratio, real)
    return loss, stats


def gspo_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
    dual_clip: float | None = None,
    agg: str = "seq-mean-token-mean",
    norm_len: float | None = None,
    global_denominator: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO (Zheng et al. 2025; theory.md §3): PPO clip on the sequence ratio. Inputs ``[B, T]``.

    s_i = exp(mean_t log ρ_{i,t}); token t uses s_{i,t} = sg[s_i]·π_θ(o_t)/sg[π_θ(o_t)] (value s_i,
    gradient s_i ∇log π_θ(o_t)), so every token carries the sequence's loss −min(s_i A_i,
    clip(s_i)A_i), never times |o_i|: with ``agg="seq-mean-token-mean"`` (the default; other modes
    reweight sequences by length) the gradient is the sequence-level one. ``advantages`` is
    ``[B, T]`` (constant per sequence) or ``[B]``. ``dual_clip`` bounds the sequence's loss by −c·A
    where A < 0, as in ``ppo_policy_loss``. Clip fractions count sequences; approx_kl,
    ratio_mean and ratio_max are over tokens' ρ as in ``ppo_policy_loss``.
    """
    _check_dual_clip(dual_clip)
    real = real_mask(mask)
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logp)
    log_ratio = torch.where(real, logp - old_logp.detach(), 0)
    n_tok = real.sum(dim=1)
    seq_log_ratio = (log_ratio.sum(dim=1) / n_tok.clamp(min=1)).detach()
    seq_log_ratio = seq_log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    logp_real = torch.where(real, logp, 0)
    s_tok = torch.exp(seq_log_ratio[:, None] + logp_real - logp_real.detach())
    adv = torch.where(real, advantages.detach(), 0)
    s = seq_log_ratio.exp()
    loss_mat, flags = _clipped_surrogate(
        s_tok, s[:, None], adv, real, clip_low, clip_high, dual_clip
    )
    loss = aggregate(loss_mat, real, agg, norm_len, global_denominator)

    nonempty = n_tok > 0

    def seq_frac(flag: Tensor) -> Tensor:
        return (flag.any(dim=1).sum() / nonempty.sum().clamp(min=1)).to(logp.dtype).detach()

    tok_log_ratio = log_ratio.detach().clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    stats = {k: seq_frac(flag) for k, flag in flags.items()}
    stats |= _ratio_stats(tok_log_ratio.exp(), tok_log_ratio, real)
    return loss, stats


# the stats each loss reports per sequence rather than per token (their weight in a mean)
gspo_policy_loss.sequence_stats = frozenset(  # type: ignore[attr-defined]
    {"clip_frac", "clip_frac_low", "clip_frac_high", "dual_clip_frac"}
)


def cispo_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 1.0,
    clip_high: float = 0.28,
    agg: str = "token-mean",
    norm_len: float | None = None,
    global_denominator: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """CISPO (MiniMax-M1, Chen et al. 2025; theory.md §3), to minimise. Inputs ``[B, T]``.

    ℓ = −sg[clip(ρ, 1−clip_low, 1+clip_high)]·A·log π_θ: a REINFORCE token loss weighted by the
    clipped, stop-gradient importance weight, so no token's gradient is dropped (PPO's min() zeroes
    the gradient of clipped tokens; here they keep the capped weight). ``clip_low ≥ 1`` leaves no
    lower bound (the paper's choice; the default). ρ = exp(logp − old_logp), log ρ clamped to ±20.
    Stats: clip_frac (weight capped either way), clip_frac_low (ρ < 1−clip_low), clip_frac_high
    (ρ > 1+clip_high), approx_kl, ratio_mean, ratio_max as in ``ppo_policy_loss``.
    """
    real = real_mask(mask)
    log_ratio = torch.where(real, logp - old_logp.detach(), 0).clamp(
        -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP
    )
    ratio = torch.exp(log_ratio.detach())
    weight = ratio.clamp(max(0.0, 1 - clip_low), 1 + clip_high)
    adv = torch.where(real, advantages.detach(), 0)
    loss_mat = -weight * adv * torch.where(real, logp, 0)
    loss = aggregate(loss_mat, real, agg, norm_len, global_denominator)
    low = real & (ratio < 1 - clip_low)
    high = real & (ratio > 1 + clip_high)
    flags = {"clip_frac": low | high, "clip_frac_low": low, "clip_frac_high": high}
    stats = {k: _token_mean(flag.to(ratio.dtype), real) for k, flag in flags.items()}
    stats |= _ratio_stats(ratio, log_ratio.detach(), real)
    return loss, stats


def gmpo_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.4,
    clip_high: float = 0.4,
    agg: str = "seq-mean-token-mean",
    norm_len: float | None = None,
    global_denominator: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GMPO (Zhao et al. 2025, Geometric-Mean Policy Optimization; theory.md §3). Inputs ``[B, T]``.

    The sequence objective is the geometric mean of the token terms, clipped per token in log
    space: with s = sign(A_i), c_t = clip(log ρ_t, −clip_low, clip_high) and
    l_t = s·min(s·log ρ_t, s·c_t) (the pessimistic side, as PPO's min), r_i = exp(mean_t l_t) and
    ℓ_i = −A_i·r_i. A clipped token has no gradient; the others get −A_i r_i ∇log π_θ(o_t)/|o_i|.
    ``advantages`` is ``[B, T]`` (A_i = its mean over real tokens, constant in outcome RL) or
    ``[B]``. Every token carries its sequence's loss, so ``agg="seq-mean-token-mean"`` (default)
    gives the mean over sequences; other modes reweight sequences by length. Clip fractions count
    tokens (clip_frac_high: A > 0 and log ρ > clip_high; clip_frac_low: A < 0 and log ρ <
    −clip_low); approx_kl, ratio_mean, ratio_max as in ``ppo_policy_loss``.
    """
    real = real_mask(mask)
    n_tok = real.sum(dim=1)
    if advantages.dim() == 1:
        seq_adv = advantages.detach()
    else:
        seq_adv = torch.where(real, advantages.detach(), 0).sum(dim=1) / n_tok.clamp(min=1)
    log_ratio = torch.where(real, logp - old_logp.detach(), 0).clamp(
        -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP
    )
    sign = torch.sign(seq_adv)[:, None]
    clamped = log_ratio.clamp(-clip_low, clip_high)
    pessimistic = sign * torch.minimum(sign * log_ratio, sign * clamped)
    seq_ratio = torch.exp(torch.where(real, pessimistic, 0).sum(dim=1) / n_tok.clamp(min=1))
    loss_mat = (-seq_adv * seq_ratio)[:, None].expand_as(logp)
    loss = aggregate(loss_mat, real, agg, norm_len, global_denominator)
    high = real & (sign > 0) & (log_ratio > clip_high)
    low = real & (sign < 0) & (log_ratio < -clip_low)
    flags = {"clip_frac": low | high, "clip_frac_low": low, "clip_frac_high": high}
    tok_log_ratio = log_ratio.detach()
    stats = {k: _token_mean(flag.to(logp.dtype), real) for k, flag in flags.items()}
    stats |= _ratio_stats(tok_log_ratio.exp(), tok_log_ratio, real)
    return loss, stats


PolicyLoss = Callable[..., tuple[Tensor, dict[str, Tensor]]]
POLICY_LOSSES: Registry[PolicyLoss] = Registry("policy loss")
POLICY_LOSSES.register("ppo_clip")(ppo_policy_loss)
POLICY_LOSSES.register("gspo")(gspo_policy_loss)
POLICY_LOSSES.register("cispo")(cispo_policy_loss)
POLICY_LOSSES.register("gmpo")(gmpo_policy_loss)
# the losses that clip ρ inside PPO's min(): they take ``dual_clip`` and need clip_low < 1
# (CISPO caps a weight, where clip_low ≥ 1 means no floor; GMPO clips log ρ)
RATIO_CLIP_LOSSES = frozenset({"ppo_clip", "gspo"})


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip_range: float | None = None,
    agg: str = "token-mean",
    norm_len: float | None = None,
    global_denominator: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Critic loss (theory.md §1), inputs ``[B, T]``: ½(V − R)², or with ``clip_range`` c
    ½·max((V − R)², (clip(V, V_old − c, V_old + c) − R)²) (PPO2's value clipping).

    Stats: vf_clip_frac, the fraction of real tokens where the clipped term is the larger one.
    """
    real = real_mask(mask)
    v = torch.where(real, values, 0)
    ret = torch.where(real, returns.detach(), 0)
    loss_mat = (v - ret).square()
    vf_clipped = torch.zeros_like(real)
    if clip_range is not None:
        old = torch.where(real, old_values.detach(), 0)
        # clamp (not old + clamp(v − old)) returns v bit-exactly inside the range
        v_clip = torch.clamp(v, old - clip_range, old + clip_range)
        loss_clip = (v_clip - ret).square()
        vf_clipped = real & (loss_clip > loss_mat)
        loss_mat = torch.where(vf_clipped, loss_clip, loss_mat)
    loss = aggregate(0.5 * loss_mat, real, agg, norm_len, global_denominator)
    return loss, {"vf_clip_frac": _token_mean(vf_clipped.to(v.dtype), real)}
