"""Parameter updates from one rollout batch: epochs × minibatches × micro-batches.

Every micro-batch loss is normalised by its *minibatch's* denominator (token or sequence count),
so gradient accumulation gives the same gradient as one large batch. Old log-probs, reference
log-probs and values come from the batch (computed once per rollout) and are never recomputed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import torch
from torch import Tensor

from rlexp.experience import RolloutBatch
from rlexp.kl import kl_estimate
from rlexp.logprobs import build_attention_inputs, completion_logprobs
from rlexp.losses import (
    POLICY_LOSSES,
    aggregate,
    aggregation_denominator,
    explained_variance,
    value_loss,
)


def minibatches(
    n: int, size: int, micro: int, generator: torch.Generator
) -> Iterator[list[Tensor]]:
    """Shuffled minibatches of ``size`` samples, each split into micro-batches of ``micro``."""
    perm = torch.randperm(n, generator=generator)
    for mb in perm.split(size):
        yield list(mb.split(micro))


class _Mean:
    """Running means of scalar stats over minibatches."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, stats: dict[str, float | Tensor]) -> None:
        for k, v in stats.items():
            self.sums[k] += float(v)
            self.counts[k] += 1

    def result(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


def policy_update(
    policy, optimizer, batch: RolloutBatch, algo, temperature: float, generator: torch.Generator
) -> dict[str, float]:
    """Minimise the registered policy loss (+ β·KL in the loss, − entropy bonus) over the batch."""
    loss_fn = POLICY_LOSSES.get(algo.policy_loss)
    params = {
        "clip_low": algo.clip_low,
        "clip_high": algo.clip_high,
        "agg": algo.loss_agg,
        "norm_len": algo.norm_len,
    }
    if algo.dual_clip is not None:
        params["dual_clip"] = algo.dual_clip
    kl_in_loss = algo.kl.placement == "loss" and algo.kl.coef > 0
    means = _Mean()
    policy.train()
    for _ in range(algo.epochs):
        for micro_idx in minibatches(
            len(batch), algo.minibatch_size or len(batch), algo.micro_batch_size, generator
        ):
            den = aggregation_denominator(
                batch.completion_mask[torch.cat(micro_idx)], algo.loss_agg
            )
            agg = {"mode": algo.loss_agg, "norm_len": algo.norm_len, "global_denominator": den}
            optimizer.zero_grad(set_to_none=True)
            # micro-batch losses are partial sums of the minibatch loss: they add up
            sums: dict[str, float] = defaultdict(float)
            for idx in micro_idx:
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
                _check_finite(total.detach(), "policy loss")
                total.backward()
                sums["loss/policy"] += float(loss.detach())
                sums["train/entropy"] += float(ent.detach())
                means.add({f"train/{k}": v for k, v in stats.items()})
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), algo.max_grad_norm)
            _check_finite(grad_norm, "gradient norm of the policy")
            optimizer.step()
            means.add(sums | {"train/grad_norm": grad_norm})
    return means.result()


def critic_update(
    critic, optimizer, batch: RolloutBatch, algo, generator: torch.Generator
) -> dict[str, float]:
    """Fit V to the returns with the (optionally clipped) value loss, token-mean aggregated."""
    size = algo.minibatch_size or len(batch)
    means = _Mean()
    critic.train()
    for _ in range(algo.epochs):
        for micro_idx in minibatches(len(batch), size, algo.micro_batch_size, generator):
            den = aggregation_denominator(batch.completion_mask[torch.cat(micro_idx)], "token-mean")
            optimizer.zero_grad(set_to_none=True)
            sums: dict[str, float] = defaultdict(float)
            for idx in micro_idx:
                mb = batch.select(idx)
                ids, attn, pos = build_attention_inputs(
                    mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask
                )
                p, t = mb.prompt_ids.shape[1], mb.completion_ids.shape[1]
                values = critic(ids, attn, pos)[:, p - 1 : p + t - 1].float()
                loss, stats = value_loss(
                    values,
                    mb.values,
                    mb.returns,
                    mb.completion_mask,
                    clip_range=algo.critic.value_clip,
                    global_denominator=den,
                )
                _check_finite(loss.detach(), "value loss")
                (algo.vf_coef * loss).backward()
                sums["critic/value_loss"] += float(loss.detach())
                means.add({f"critic/{k}": v for k, v in stats.items()})
            grad_norm = torch.nn.utils.clip_grad_norm_(critic.parameters(), algo.max_grad_norm)
            _check_finite(grad_norm, "gradient norm of the critic")
            optimizer.step()
            means.add(sums | {"critic/grad_norm": grad_norm})
    out = means.result()
    out["critic/explained_variance"] = explained_variance(
        batch.values, batch.returns, batch.completion_mask
    )
    return out


def _check_finite(x: Tensor, name: str) -> None:
    """Stop before a NaN/inf reaches the weights (the caller adds the step)."""
    if not torch.isfinite(x):
        raise FloatingPointError(f"non-finite {name} ({float(x)}), before the optimizer step")
