"""Parameter updates from one rollout batch: epochs × minibatches × micro-batches.

Every micro-batch loss is normalised by its *minibatch's* denominator (token or sequence count),
so gradient accumulation gives the same gradient as one large batch. Old log-probs, reference
log-probs and values come from the batch (computed once per rollout) and are never recomputed.

Data parallelism (rlexp.runtime.distributed): each rank holds its shard of the rollout batch and shuffles
it on its own; the global minibatch is the union of the ranks' local minibatches. Denominators
are counted over all ranks and gradients are summed over ranks after accumulation (before
clipping), so every rank takes the single-process step of the global minibatch. Sharded models
(``distributed.strategy=fsdp``) sum them in FSDP2's reduce-scatter instead, and clip by the norm
of the whole (sharded) gradient.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import torch
from torch import Tensor

from rlexp.algos.diagnostics import explained_variance, explained_variance_from_moments
from rlexp.algos.kl import kl_estimate
from rlexp.algos.losses import (
    PER_ROW_MODES,
    POLICY_LOSSES,
    aggregate,
    aggregation_denominator,
    prompt_denominators,
    value_loss,
)
from rlexp.algos.masks import real_mask
from rlexp.models.logprobs import completion_logprobs
from rlexp.models.value import completion_values
from rlexp.rollout.batch import RolloutBatch
from rlexp.runtime.distributed import (
    all_gather_objects,
    all_reduce_gradients,
    all_reduce_scalar,
    global_mean_std,
    world_size,
)
from rlexp.runtime.guards import check_finite
from rlexp.runtime.sharding import full, is_sharded

BEFORE_STEP = ", before the optimizer step"  # the guards' context: no weight moved yet


def minibatches(
    n: int, size: int, micro: int, generator: torch.Generator
) -> Iterator[list[Tensor]]:
    """Shuffled minibatches of ``size`` samples, each split into micro-batches of ``micro``.

    Under data parallelism ``n`` and ``size`` are this rank's; every rank yields the same number
    of minibatches (the most any rank has; the extra ones are empty lists), so the ranks' gradient
    all-reduces pair up even when dynamic sampling left them with different shard sizes.
    """
    perm = torch.randperm(n, generator=generator)
    parts = list(perm.split(size)) if n else []
    count = int(all_reduce_scalar(len(parts), "max"))
    for mb in parts:
        yield list(mb.split(micro))
    for _ in range(count - len(parts)):
        yield []


def _local_minibatch_size(batch: RolloutBatch, algo) -> int:
    """This rank's share of ``algo.minibatch_size`` (global, in samples); null: the whole shard."""
    return (
        max(algo.minibatch_size // world_size(), 1) if algo.minibatch_size else max(len(batch), 1)
    )


def _minibatch_denominator(
    batch: RolloutBatch, micro_idx: list[Tensor], mode: str
) -> float | list[Tensor]:
    """``aggregation_denominator`` of the GLOBAL minibatch (every rank's part), at least 1; for
    prompt-mean-token-mean each micro-batch's rows of ``prompt_denominators`` (a prompt's
    samples are on one rank: its token count is local, the number of prompts global)."""
    if mode in PER_ROW_MODES:
        rows = torch.cat(micro_idx) if micro_idx else torch.zeros(0, dtype=torch.long)
        mask, groups = batch.completion_mask[rows], batch.group_ids[rows]
        local_prompts = float(torch.unique(groups[real_mask(mask).any(1)]).numel())
        den = prompt_denominators(mask, groups, max(all_reduce_scalar(local_prompts), 1.0))
        return list(den.split([len(idx) for idx in micro_idx])) if micro_idx else []
    local = (
        aggregation_denominator(batch.completion_mask[torch.cat(micro_idx)], mode)
        if micro_idx
        else 0.0
    )
    return max(all_reduce_scalar(local), 1.0)


class _Mean:
    """Scalar stats over micro-batches, minibatches and ranks: weighted means (a micro-batch's
    token stats weigh by its real tokens, sequence stats by its sequences, so the result does
    not depend on ``micro_batch_size``), and maxima for ``*_max`` keys."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.weights: dict[str, float] = defaultdict(float)
        self.maxima: dict[str, float] = {}

    def add(
        self,
        stats: dict[str, float | Tensor],
        weight: float = 1.0,
        seq_weight: float | None = None,
        seq_keys: frozenset[str] = frozenset(),
    ) -> None:
        for k, v in stats.items():
            if k.endswith("_max"):
                self.maxima[k] = max(self.maxima.get(k, float("-inf")), float(v))
                continue
            w = seq_weight if seq_weight is not None and k.split("/")[-1] in seq_keys else weight
            self.sums[k] += float(v) * w
            self.weights[k] += w

    def result(self) -> dict[str, float]:
        """Weighted means over every rank's entries; maxima over every rank's."""
        sums: dict[str, float] = defaultdict(float)
        weights: dict[str, float] = defaultdict(float)
        maxima: dict[str, float] = {}
        parts = all_gather_objects((dict(self.sums), dict(self.weights), self.maxima))
        for part_sums, part_weights, part_maxima in parts:
            for k, v in part_sums.items():
                sums[k] += v
                weights[k] += part_weights[k]
            for k, v in part_maxima.items():
                maxima[k] = max(maxima.get(k, float("-inf")), v)
        return {k: sums[k] / weights[k] for k in sums if weights[k] > 0} | maxima


def policy_update(
    policy, optimizer, batch: RolloutBatch, algo, temperature: float, generator: torch.Generator
) -> dict[str, float]:
    """Minimise the registered policy loss (+ β·KL in the loss, − entropy bonus) over the batch."""
    loss_fn = POLICY_LOSSES.get(algo.policy_loss)
    # seq-mean-token-sum-norm's default divisor, the padded T, must be one T for all ranks
    norm_len = algo.norm_len or int(all_reduce_scalar(batch.completion_mask.shape[1], "max"))
    params = {
        "clip_low": algo.clip_low,
        "clip_high": algo.clip_high,
        "agg": algo.loss_agg,
        "norm_len": norm_len,
    }
    if algo.dual_clip is not None:
        params["dual_clip"] = algo.dual_clip
    kl_in_loss = algo.kl.placement == "loss" and algo.kl.coef > 0
    means = _Mean()
    policy.train()
    for _ in range(algo.epochs):
        for micro_idx in minibatches(
            len(batch), _local_minibatch_size(batch, algo), algo.micro_batch_size, generator
        ):
            dens = _minibatch_denominator(batch, micro_idx, algo.loss_agg)
            optimizer.zero_grad(set_to_none=True)
            # micro-batch losses are partial sums of the minibatch loss (over micro-batches and
            # ranks): they add up
            sums: dict[str, float] = dict.fromkeys(_summed_keys(kl_in_loss), 0.0)
            for i, idx in enumerate(micro_idx):
                den = dens[i] if isinstance(dens, list) else dens
                agg = {"mode": algo.loss_agg, "norm_len": norm_len, "global_denominator": den}
                mb = batch.select(idx)
                logp, entropy = completion_logprobs(
                    policy,
                    mb.prompt_ids,
                    mb.prompt_mask,
                    mb.completion_ids,
                    mb.completion_mask,
                    temperature=temperature,
                    with_entropy=True,
                )
                loss, stats = loss_fn(
                    logp,
                    mb.old_logp,
                    mb.advantages,
                    mb.completion_mask,
                    global_denominator=den,
                    **params,
                )
                if algo.entropy_coef == 0:  # logged only: no backward through it
                    entropy = entropy.detach()
                ent = aggregate(entropy, mb.completion_mask, **agg)
                total = loss - algo.entropy_coef * ent
                if kl_in_loss:
                    kl = aggregate(
                        kl_estimate(logp, mb.ref_logp, algo.kl.estimator), mb.completion_mask, **agg
                    )
                    total = total + algo.kl.coef * kl
                    sums["loss/kl"] += float(kl.detach())
                check_finite(total.detach(), "policy loss", BEFORE_STEP)
                total.backward()
                sums["loss/policy"] += float(loss.detach())
                sums["train/entropy"] += float(ent.detach())
                means.add(
                    {f"train/{k}": v for k, v in stats.items()},
                    weight=float(real_mask(mb.completion_mask).sum()),
                    seq_weight=float((mb.completion_mask.sum(1) > 0).sum()),
                    seq_keys=getattr(loss_fn, "sequence_stats", frozenset()),
                )
            grad_norm = _step(policy, optimizer, algo.max_grad_norm, "policy")
            means.add(_summed_over_ranks(sums) | {"train/grad_norm": grad_norm})
    return means.result()


def _step(module, optimizer, max_grad_norm: float, name: str) -> Tensor:
    """The end of a minibatch: gradients summed over ranks, their norm clipped, and the optimizer
    step, unless the norm is NaN/inf (then ``FloatingPointError`` and no weight moves)."""
    if not is_sharded(module):  # FSDP2 has reduce-scattered them already (a sum)
        all_reduce_gradients(module.parameters())
    grad_norm = full(torch.nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm))
    check_finite(grad_norm, f"gradient norm of the {name}", BEFORE_STEP)
    optimizer.step()
    return grad_norm


def _summed_keys(kl_in_loss: bool) -> list[str]:
    return ["loss/policy", "train/entropy", *(["loss/kl"] if kl_in_loss else [])]


def _summed_over_ranks(sums: dict[str, float]) -> dict[str, float]:
    """A minibatch's loss terms: each rank holds a partial sum (global denominators), so the
    minibatch's value is their sum over ranks."""
    return {k: all_reduce_scalar(v) for k, v in sums.items()}


def critic_update(
    critic, optimizer, batch: RolloutBatch, algo, generator: torch.Generator
) -> dict[str, float]:
    """Fit V to the returns with the (optionally clipped) value loss, token-mean aggregated."""
    size = _local_minibatch_size(batch, algo)
    means = _Mean()
    critic.train()
    for _ in range(algo.critic.epochs or algo.epochs):
        for micro_idx in minibatches(len(batch), size, algo.micro_batch_size, generator):
            den = _minibatch_denominator(batch, micro_idx, "token-mean")
            optimizer.zero_grad(set_to_none=True)
            sums: dict[str, float] = {"critic/value_loss": 0.0}
            for idx in micro_idx:
                mb = batch.select(idx)
                values = completion_values(
                    critic, mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask
                )
                loss, stats = value_loss(
                    values,
                    mb.values,
                    mb.returns,
                    mb.completion_mask,
                    clip_range=algo.critic.value_clip,
                    global_denominator=den,
                )
                check_finite(loss.detach(), "value loss", BEFORE_STEP)
                (algo.vf_coef * loss).backward()
                sums["critic/value_loss"] += float(loss.detach())
                means.add(
                    {f"critic/{k}": v for k, v in stats.items()},
                    weight=float(real_mask(mb.completion_mask).sum()),
                )
            grad_norm = _step(critic, optimizer, algo.max_grad_norm, "critic")
            means.add(_summed_over_ranks(sums) | {"critic/grad_norm": grad_norm})
    out = means.result()
    out["critic/explained_variance"] = _explained_variance(
        batch.values, batch.returns, batch.completion_mask
    )
    return out


def _explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """``explained_variance`` over every rank's real tokens: the variances pooled over ranks,
    then the pure math of ``explained_variance_from_moments``."""
    if world_size() == 1:
        return explained_variance(values, returns, mask)
    real = real_mask(mask)
    r, v = returns[real].double(), values[real].double()
    n, _, std_r = global_mean_std(r)
    _, _, std_d = global_mean_std(r - v)
    return explained_variance_from_moments(n, std_r.square(), std_d.square())
