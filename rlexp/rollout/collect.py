"""One rollout batch: sample completions, score them, and attach everything the update needs.

Shapes: B = prompts_per_step × group_size samples, P = padded prompt length, T = longest
completion. Samples of one prompt share a ``group_ids`` entry; groups are always formed by id.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rlexp.algos.advantages import ADVANTAGES, AdvantageInputs, gae
from rlexp.algos.diagnostics import advantage_diagnostics, mc_advantages
from rlexp.algos.importance import truncated_is_weights
from rlexp.algos.kl import kl_estimate
from rlexp.algos.masks import real_mask
from rlexp.data.prompts import decode_completions, encode_prompts
from rlexp.data.tasks.base import Problem, Task
from rlexp.models.logprobs import completion_logprobs
from rlexp.models.value import completion_values
from rlexp.rollout.batch import RolloutBatch, last_token_rewards
from rlexp.rollout.engine import GenerationChunk, NativeEngine, RolloutEngine, row_chunks
from rlexp.rollout.rewards import is_correct, score_components, weighted_sum
from rlexp.runtime.distributed import all_reduce_scalar, global_mean_std, reduce_dict


@torch.no_grad()
def critic_values(critic, batch_like) -> Tensor:
    """V(s_t) for each completion token t (``completion_values``), 0 at padding."""
    values = completion_values(
        critic,
        batch_like.prompt_ids,
        batch_like.prompt_mask,
        batch_like.completion_ids,
        batch_like.completion_mask,
    )
    return values * batch_like.completion_mask


def score_samples(
    tokenizer,
    task: Task,
    problems: Sequence[Problem],
    out,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    group_ids: Tensor,
    reward_weights: dict[str, float],
    reward_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[RolloutBatch, dict[str, list[float]]]:
    """Decode sampled completions (``rollout.Samples``), score them with the weighted reward and
    the verifier, and pack a RolloutBatch; also returns each reward component's scores."""
    device = prompt_ids.device
    mask = out.completion_mask.float()
    texts = decode_completions(tokenizer, out.completion_ids, out.completion_mask)
    components = score_components(texts, problems, task, reward_weights, reward_params)
    scores = torch.tensor(
        weighted_sum(components, reward_weights), dtype=torch.float32, device=device
    )
    batch = RolloutBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=out.completion_ids,
        completion_mask=mask,
        old_logp=out.logp.float(),
        group_ids=group_ids.to(device),
        scores=scores,
        correct=torch.tensor(is_correct(texts, problems, task), device=device),
        truncated=out.truncated,
        token_rewards=last_token_rewards(scores, mask),
    )
    return batch, components


@dataclass
class Generated:
    """A batch's prompts and what the engine sampled for them, before scoring; ``seconds`` the
    generation's own time."""

    prompt_ids: Tensor
    prompt_mask: Tensor
    samples: Any  # rollout.sampler.Samples
    seconds: float


def generate(
    engine: RolloutEngine, tokenizer, problems: Sequence[Problem], rollout_cfg, generator, device
) -> Generated:
    """One completion per entry of ``problems`` from ``engine`` (``rollout.*`` settings)."""
    t0 = time.perf_counter()
    prompt_ids, prompt_mask = encode_prompts(tokenizer, [p.prompt for p in problems], device)
    out = engine.generate(
        prompt_ids,
        prompt_mask,
        generator,
        max_new_tokens=rollout_cfg.max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        temperature=rollout_cfg.temperature,
        top_p=rollout_cfg.top_p,
    )
    return Generated(prompt_ids, prompt_mask, out, time.perf_counter() - t0)


def collect(
    policy,
    tokenizer,
    task: Task,
    problems: Sequence[Problem],
    group_ids: Tensor,
    *,
    reward_weights: dict[str, float],
    reward_params: Mapping[str, Mapping[str, Any]] | None = None,
    rollout_cfg,
    generator: torch.Generator,
    ref_model=None,
    critic=None,
    chunk_size: int = 128,
    gen_chunk: GenerationChunk | None = None,
    recompute_old_logp: bool = False,
    engine: RolloutEngine | None = None,
    old_logp_model=None,
    generated: Generated | None = None,
) -> tuple[RolloutBatch, dict[str, float]]:
    """Sample one completion per entry of ``problems`` (each prompt repeated group_size times),
    score it, and compute reference log-probs and values; returns the batch and rollout stats.
    ``engine`` samples (``rollout.engine``; default: the native sampler on ``policy``, in chunks
    of ``gen_chunk`` rows, halved on out-of-memory errors). With
    ``recompute_old_logp`` the behaviour log-probs are the training forward's (teacher-forced by
    the policy, or by ``old_logp_model``: the lagged behaviour policy of ``rollout.lag``), and the
    sampler's are kept as ``batch.sampler_logp`` (``algorithm.old_logp``). ``generated``: the
    completions sampled already (``rollout.mode=async``), scored here."""
    device = next(policy.parameters()).device
    gen_chunk = gen_chunk if gen_chunk is not None else GenerationChunk()
    retries_before = gen_chunk.retries
    policy.eval()
    if generated is None:
        engine = engine if engine is not None else NativeEngine(policy, gen_chunk)
        generated = generate(engine, tokenizer, problems, rollout_cfg, generator, device)
    prompt_ids, prompt_mask, out = generated.prompt_ids, generated.prompt_mask, generated.samples
    t_gen = generated.seconds
    batch, components = score_samples(
        tokenizer,
        task,
        problems,
        out,
        prompt_ids,
        prompt_mask,
        group_ids,
        reward_weights,
        reward_params,
    )
    mask = batch.completion_mask
    t1 = time.perf_counter()
    if recompute_old_logp:
        batch.sampler_logp = batch.old_logp
        batch.old_logp = _teacher_forced(
            old_logp_model if old_logp_model is not None else policy,
            batch,
            rollout_cfg.temperature,
            chunk_size,
        )
    if ref_model is not None:
        batch.ref_logp = _teacher_forced(ref_model, batch, rollout_cfg.temperature, chunk_size)
    if critic is not None:
        batch.values = torch.cat(
            [critic_values(critic, batch.select(r)) for r in row_chunks(len(batch), chunk_size)]
        )
    stats = {f"train/reward_{k}": sum(v) / len(v) for k, v in components.items()}
    stats |= {
        "time/generation": t_gen,
        "time/logprob_passes": time.perf_counter() - t1,
        "train/tokens_per_s": float(mask.sum()) / max(t_gen, 1e-9),
        "train/generated_tokens": float(mask.sum()),
        "train/gen_oom_retries": float(gen_chunk.retries - retries_before),
    }
    return batch, stats


@torch.no_grad()
def _teacher_forced(model, batch: RolloutBatch, temperature: float, chunk_size: int) -> Tensor:
    """Completion log-probs ``[B, T]`` of ``model`` on the batch, in chunks of rows."""
    return torch.cat(
        [
            completion_logprobs(
                model,
                batch.prompt_ids[rows],
                batch.prompt_mask[rows],
                batch.completion_ids[rows],
                batch.completion_mask[rows],
                temperature=temperature,
            ).float()
            for rows in row_chunks(len(batch), chunk_size)
        ]
    )


def trainer_logp_needed(
    setting: str,
    dtype: torch.dtype,
    top_p: float,
    rollout_is: str = "none",
    engine: str = "native",
) -> bool:
    """``algorithm.old_logp``: ``trainer`` recomputes the behaviour log-probs with the training
    forward, ``sampler`` keeps the sampler's; ``auto`` recomputes whenever the two can differ
    beyond float32 rounding (a separate engine such as vLLM, a non-fp32 dtype, or nucleus
    sampling with ``top_p < 1``), and whenever ``algorithm.rollout_is`` needs both."""
    if setting == "auto":
        return rollout_is != "none" or engine != "native" or dtype != torch.float32 or top_p < 1
    return setting == "trainer"


def logp_mismatch_stats(batch: RolloutBatch) -> dict[str, float]:
    """Sampler vs trainer log-probs of the sampled tokens (global batch): mean |Δ log p|, the
    k3 estimate of KL(π_sampler‖π_trainer) (theory.md §4, x = log π_trainer − log π_sampler) and
    the largest token ratio π_trainer / π_sampler. Empty without ``batch.sampler_logp``."""
    if batch.sampler_logp is None:
        return {}
    real = real_mask(batch.completion_mask)
    x = (batch.old_logp - batch.sampler_logp)[real].double()
    n = max(all_reduce_scalar(float(x.numel())), 1.0)
    ratio_max = float(x.max().exp()) if x.numel() else 0.0
    return {
        "rollout/logp_abs_diff": all_reduce_scalar(float(x.abs().sum())) / n,
        "rollout/logp_k3": all_reduce_scalar(float((x.exp() - 1 - x).sum())) / n,
        "rollout/ratio_max": all_reduce_scalar(ratio_max, "max"),
    }


def apply_rollout_is(batch: RolloutBatch, level: str, cap: float) -> dict[str, float]:
    """Scale the advantages by the truncated sampler/trainer importance weights
    (``rlexp.algos.importance``); returns the weights' mean and the fraction truncated."""
    w = truncated_is_weights(batch.old_logp, batch.sampler_logp, batch.completion_mask, level, cap)
    batch.advantages = batch.advantages * w
    real = real_mask(batch.completion_mask)
    n = max(all_reduce_scalar(float(real.sum())), 1.0)
    return {
        "rollout/is_weight_mean": all_reduce_scalar(float(w[real].sum())) / n,
        "rollout/is_truncated_frac": all_reduce_scalar(float((w[real] >= cap).sum())) / n,
    }


def add_kl_penalty(batch: RolloutBatch, coef: float, estimator: str) -> None:
    """PPO-style shaping: r_t ← r_t − β·KL_t on every real token (theory.md §1)."""
    kl = torch.where(
        real_mask(batch.completion_mask),
        kl_estimate(batch.old_logp, batch.ref_logp, estimator),
        0.0,
    )
    batch.token_rewards = batch.token_rewards - coef * kl


def compute_advantages(batch: RolloutBatch, adv_cfg: dict, critic_lam: float | None) -> None:
    """Fill ``batch.advantages`` and ``batch.returns`` with the configured estimator; with a
    critic and ``critic_lam`` set, the value targets use their own λ."""
    name, params = adv_cfg["name"], {k: v for k, v in adv_cfg.items() if k != "name"}
    inputs = AdvantageInputs(
        token_rewards=batch.token_rewards,
        scores=batch.scores,
        mask=batch.completion_mask,
        group_ids=batch.group_ids,
        values=batch.values,
        mean_std=global_mean_std,  # data parallel: moments of the global batch
    )
    batch.advantages, batch.returns = ADVANTAGES.get(name)(inputs, **params)
    if batch.values is not None and critic_lam is not None:
        _, batch.returns = gae(
            batch.token_rewards,
            batch.values,
            batch.completion_mask,
            params.get("gamma", 1.0),
            critic_lam,
        )


def rollout_stats(batch: RolloutBatch, gamma: float = 1.0) -> dict[str, float]:
    """Reward, accuracy, zero-variance groups, lengths, advantages of one batch; with a critic
    also the advantages' variance and agreement with Monte-Carlo advantages (discount ``gamma``).
    Under data parallelism the statistics are those of the global batch (every rank's shard;
    the Monte-Carlo agreement is the mean of the ranks' values)."""
    lengths = batch.completion_mask.sum(1)
    real = real_mask(batch.completion_mask)
    adv = batch.advantages[real] if batch.advantages is not None else real.new_zeros(1).float()
    _, reward_mean, reward_std = global_mean_std(batch.scores)
    flat_groups, n_groups = _flat_groups(batch)
    mc = _mc_agreement(batch, gamma)
    return (
        {
            "train/reward_mean": float(reward_mean),
            "train/reward_std": float(reward_std),
            "train/accuracy": float(global_mean_std(batch.correct.float())[1]),
            "train/zero_var_group_frac": all_reduce_scalar(flat_groups)
            / max(all_reduce_scalar(n_groups), 1),
            "train/response_length_mean": float(global_mean_std(lengths)[1]),
            "train/response_length_max": all_reduce_scalar(
                float(lengths.max()) if len(batch) else 0.0, "max"
            ),
            "train/truncated_frac": float(global_mean_std(batch.truncated.float())[1]),
            "adv/mean": float(global_mean_std(adv)[1]),
            "adv/std": float(global_mean_std(adv)[2]),
        }
        | reduce_dict(mc, "mean")
        | logp_mismatch_stats(batch)
    )


def _flat_groups(batch: RolloutBatch) -> tuple[int, int]:
    """(groups whose scores all agree within 1e-6, groups) of the batch."""
    if len(batch) == 0:
        return 0, 0
    ids = batch.group_ids
    _, inverse = torch.unique(ids, return_inverse=True)
    n_groups = int(inverse.max()) + 1
    lo = torch.full((n_groups,), float("inf"), device=ids.device).scatter_reduce(
        0, inverse, batch.scores, "amin"
    )
    hi = torch.full((n_groups,), float("-inf"), device=ids.device).scatter_reduce(
        0, inverse, batch.scores, "amax"
    )
    return int((hi - lo <= 1e-6).sum()), n_groups


def _mc_agreement(batch: RolloutBatch, gamma: float) -> dict[str, float]:
    """adv/var, adv/mc_var, adv/mc_corr, adv/mc_mse against λ = 1 returns minus V of the same
    rollouts (rlexp.algos.diagnostics); only with a critic, and an undefined value (NaN) is left out."""
    if batch.values is None or batch.advantages is None:
        return {}
    mask = batch.completion_mask
    mc = mc_advantages(batch.token_rewards, batch.values, mask, gamma)
    stats = advantage_diagnostics(batch.advantages, mc, mask)
    return {f"adv/{k}": float(v) for k, v in stats.items() if torch.isfinite(v)}
